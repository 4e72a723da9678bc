"""Run by tests/test_homeassistant.py with Home Assistant's own Python (.venv-ha): a real Home
Assistant core with its MQTT integration on the broker at 127.0.0.1:MQTT_PORT (its http
server on 127.0.0.1:HTTP_PORT), for SECONDS. Prints "ready" once MQTT is connected, then, at
the end, one JSON line: every edge-fer entity's states over the run, the attribute sets it had
while available, its registry entry, and every warning or error Home Assistant logged.

    python testkit/ha_live.py MQTT_PORT HTTP_PORT SECONDS
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import tempfile
import time


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(f"{record.levelname} {record.name}: {record.getMessage()}"[:600])


async def main(port: int, http_port: int, seconds: float) -> dict:
    from homeassistant import bootstrap, config_entries, core, loader
    from homeassistant import config as conf_util
    from homeassistant.const import __version__
    from homeassistant.helpers import entity_registry as er
    from homeassistant.setup import async_setup_component

    folder = tempfile.mkdtemp(prefix="ha-")
    with open(os.path.join(folder, "configuration.yaml"), "w") as f:
        f.write(
            "homeassistant:\n  name: test\n  unit_system: metric\n  time_zone: UTC\n"
            "  latitude: 0\n  longitude: 0\n  elevation: 0\n  country: DE\n"
        )
    os.makedirs(os.path.join(folder, ".storage"))
    entry = {
        "entry_id": "edgefermqtt", "version": 1, "minor_version": 1, "domain": "mqtt", "title": "broker",
        "data": {"broker": "127.0.0.1", "port": port, "discovery": True}, "options": {},
        "pref_disable_new_entities": False, "pref_disable_polling": False, "source": "user",
        "unique_id": None, "disabled_by": None,
    }  # fmt: skip
    with open(os.path.join(folder, ".storage", "core.config_entries"), "w") as f:
        json.dump(
            {"version": 1, "minor_version": 1, "key": "core.config_entries", "data": {"entries": [entry]}}, f
        )
    collect = Collect()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    logging.getLogger().addHandler(collect)
    # Home Assistant's core, its http server on loopback and MQTT, as bootstrap sets them up,
    # without the default integrations (frontend, backup, ...) that MQTT does not need.
    config = {
        "homeassistant": {"name": "test", "unit_system": "metric", "time_zone": "UTC",
                          "latitude": 0, "longitude": 0, "elevation": 0},
        "http": {"server_host": ["127.0.0.1"], "server_port": http_port},
    }  # fmt: skip
    hass = core.HomeAssistant(folder)
    loader.async_setup(hass)
    hass.config_entries = config_entries.ConfigEntries(hass, config)
    await bootstrap.async_load_base_functionality(hass)
    await conf_util.async_process_ha_core_config(hass, config["homeassistant"])
    for domain in (*bootstrap.CORE_INTEGRATIONS, "http", "mqtt"):
        assert await async_setup_component(hass, domain, config), f"{domain} did not set up"
    await hass.async_start()
    deadline = time.monotonic() + 60
    from homeassistant.components import mqtt

    while not mqtt.is_connected(hass) and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    print("ready" if mqtt.is_connected(hass) else "not connected", flush=True)
    history: dict[str, list[str]] = {}
    attributes: dict[str, list[dict]] = {}
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for state in hass.states.async_all("sensor"):
            if "edge_fer" in state.entity_id:
                seen = history.setdefault(state.entity_id, [])
                if not seen or seen[-1] != state.state:
                    seen.append(state.state)
                if state.state != "unavailable":  # an unavailable entity shows no extra attributes
                    attrs = {k: v for k, v in state.attributes.items() if k != "friendly_name"}
                    seen_attrs = attributes.setdefault(state.entity_id, [])
                    if attrs not in seen_attrs and len(seen_attrs) < 50:
                        seen_attrs.append(attrs)
        await asyncio.sleep(0.05)
    registry = er.async_get(hass)
    entries = {
        e.entity_id: {"unique_id": e.unique_id, "device_class": e.original_device_class}
        for e in registry.entities.values()
        if e.platform == "mqtt"
    }
    await hass.async_stop(force=True)
    return {
        "ha_version": __version__,
        "states": history,
        "attributes": json.loads(json.dumps(attributes, default=str)),
        "registry": entries,
        "log": collect.records,
    }


if __name__ == "__main__":
    result = asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])))
    print(json.dumps(result), flush=True)

"""Run by tests/test_homeassistant.py with Home Assistant's own Python (.venv-ha): validate
edge-fer's discovery configs with HA's MQTT sensor schema, render their templates with HA's
template engine on real published payloads, and put each value through HA's sensor state
checks (enum options, numeric values, device/state class and unit rules).

stdin: {"configs": {topic: payload}, "messages": {state_topic: [payload, ...]}}
stdout: one JSON report.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile


async def main() -> dict:
    from homeassistant.components.mqtt import sensor as mqtt_sensor
    from homeassistant.components.mqtt.const import PAYLOAD_NONE
    from homeassistant.components.sensor import (
        DEVICE_CLASS_STATE_CLASSES,
        DEVICE_CLASS_UNITS,
        SensorDeviceClass,
        SensorEntity,
    )
    from homeassistant.const import __version__ as ha_version
    from homeassistant.core import HomeAssistant
    from homeassistant.helpers.template import Template

    data = json.load(sys.stdin)
    report: dict = {"ha_version": ha_version, "sensors": {}, "errors": []}
    hass = HomeAssistant(tempfile.mkdtemp())
    try:
        for topic, payload in data["configs"].items():
            entry: dict = {"topic": topic}
            report["sensors"][payload.get("unique_id", topic)] = entry
            try:
                config = mqtt_sensor.DISCOVERY_SCHEMA(dict(payload))
            except Exception as exc:  # voluptuous.Invalid and friends: the report says which
                report["errors"].append(f"{topic}: schema: {exc}")
                continue
            entry["dropped_keys"] = sorted(set(payload) - set(config))
            device_class = config.get("device_class")
            state_class = config.get("state_class")
            unit = config.get("unit_of_measurement")
            if device_class is not None and device_class in DEVICE_CLASS_UNITS:
                if unit not in DEVICE_CLASS_UNITS[device_class]:
                    report["errors"].append(f"{topic}: unit {unit!r} is not one of {device_class}'s")
            if device_class is not None and state_class is not None:
                allowed = DEVICE_CLASS_STATE_CLASSES.get(device_class, set())
                if state_class not in allowed:
                    report["errors"].append(
                        f"{topic}: state class {state_class} not allowed for {device_class}"
                    )

            class Probe(SensorEntity):
                pass

            probe = Probe()
            probe.hass = hass
            probe.entity_id = payload.get("default_entity_id", "sensor.probe")
            probe._attr_device_class = device_class
            probe._attr_state_class = state_class
            probe._attr_native_unit_of_measurement = unit
            # What releases that know `options` (newer than this schema, if it dropped it) use.
            probe._attr_options = payload.get("options") if device_class == SensorDeviceClass.ENUM else None
            numeric = device_class not in (None, SensorDeviceClass.ENUM) or state_class is not None or unit
            template = Template(config["value_template"].template, hass)
            attrs = config.get("json_attributes_template")
            attr_template = Template(attrs.template, hass) if attrs is not None else None
            states, unknown = [], 0
            messages = data["messages"].get(config["state_topic"], [])
            entry["messages"] = len(messages)
            for message in messages:
                rendered = str(template.async_render_with_possible_json_value(message, ""))
                # The MQTT sensor's own rule (current releases for every sensor, 2024.3 for
                # numeric ones): "None" is unknown; anything else is the state.
                value = None if rendered == PAYLOAD_NONE else rendered
                if value is None:
                    unknown += 1
                    continue
                if value == "":
                    report["errors"].append(f"{topic}: empty state from {message}")
                    continue
                probe._attr_native_value = float(value) if numeric else value
                try:
                    states.append(probe.state)
                except ValueError as exc:
                    report["errors"].append(f"{topic}: {exc}")
                if attr_template is not None:
                    attributes = json.loads(
                        attr_template.async_render_with_possible_json_value(message, "{}")
                    )
                    if not isinstance(attributes, dict):
                        report["errors"].append(f"{topic}: attributes {attributes!r} are not a mapping")
                    entry.setdefault("attributes", attributes)
            entry["states"] = sorted({str(s) for s in states})[:20]
            entry["unknown"] = unknown
    finally:
        await hass.async_stop(force=True)
    return report


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main())))

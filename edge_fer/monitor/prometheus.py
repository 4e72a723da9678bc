"""`edge-fer-monitor --metrics-port`: the monitor's latest figures as Prometheus metrics, so
one scrape config covers a Pi (the daemon's own endpoint has the pipeline's figures)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

from edge_fer.core.metrics_server import serve_registry
from edge_fer.monitor.sensors import THROTTLE_BITS

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

# (metric name, help, row key, scale to base units)
GAUGES: tuple[tuple[str, str, str, float], ...] = (
    ("edge_fer_soc_power_watts", "SoC power: Pi 5 PMIC rails summed (else hwmon/RAPL)", "power_w", 1),
    ("edge_fer_core_power_watts", "VDD_CORE rail power", "core_power_w", 1),
    ("edge_fer_cpu_percent", "CPU use over all cores, percent", "cpu_percent", 1),
    ("edge_fer_memory_available_bytes", "Memory available", "mem_available_mb", 2**20),
    ("edge_fer_soc_temperature_celsius", "SoC temperature", "temp_c", 1),
    ("edge_fer_cpu_frequency_hertz", "ARM clock", "cpu_mhz", 1e6),
    ("edge_fer_daemon_cpu_percent", "The daemon's CPU use, percent of one core", "daemon_cpu_percent", 1),
    ("edge_fer_daemon_resident_bytes", "The daemon's RSS", "daemon_rss_mb", 2**20),
    ("edge_fer_daemon_threads", "The daemon's threads", "daemon_threads", 1),
)


class MonitorCollector:
    """Reports the last sampled row; a figure that is n/a is left out."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._row: dict = {}

    def update(self, row: dict) -> None:
        with self._lock:
            self._row = dict(row)

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import GaugeMetricFamily

        with self._lock:
            row = dict(self._row)
        if not row:
            return
        for name, help_text, key, scale in GAUGES:
            if row.get(key) is not None:
                yield GaugeMetricFamily(name, help_text, value=float(row[key]) * scale)
        flags = GaugeMetricFamily(
            "edge_fer_throttle_flag", "vcgencmd get_throttled bits (1: set)", labels=["flag"]
        )
        seen = set(row.get("throttle_flags") or [])
        if row.get("throttled") is not None:
            for name in THROTTLE_BITS.values():
                flags.add_metric([name], 1.0 if name in seen else 0.0)
            yield flags
        yield GaugeMetricFamily(
            "edge_fer_daemon_up",
            "1 when the daemon is running",
            value=1.0 if row.get("daemon_running") else 0.0,
        )


class MonitorExporter:
    """A /metrics endpoint over `MonitorCollector`."""

    def __init__(self, port: int, bind: str) -> None:
        from prometheus_client import CollectorRegistry

        self.collector = MonitorCollector()
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self.collector)
        self.server = serve_registry(self.registry, port, bind, "--metrics-port")

    def update(self, row: dict) -> None:
        self.collector.update(row)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

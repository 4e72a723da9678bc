"""Prometheus `/metrics` (`metrics.port`, `--metrics-port`): counters, gauges and latency
histograms read from the run's own counters at scrape time, so the frame loop does no extra
work per frame and the figures carry on across config reloads."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from edge_fer.runtime.results import FrameResult

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from edge_fer.outputs.listeners import Listeners
    from edge_fer.runtime.stats import RunStats

log = logging.getLogger(__name__)

# Bucket bounds in seconds: the stages take 0.05 ms (classify) to ~100 ms (a slow capture).
LATENCY_BUCKETS_S = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


# model_info labels that stay the same across restarts (no run id, no full path): a restart
# continues the same series.
STABLE_INFO = ("name", "runtime", "threads")


def stable_model_info(model_info: dict[str, str], camera: str) -> dict[str, str]:
    """The model's info labels: its file name (not the path), name, runtime, threads, camera."""
    info = {k: str(model_info[k]) for k in STABLE_INFO if k in model_info}
    if "file" in model_info:
        info["file"] = Path(str(model_info["file"])).name
    info["camera"] = camera
    return info


class RunStatsCollector:
    """A prometheus_client collector over `RunStats` (and the model's description). Every
    series carries `camera` (the instance name, `default` for a lone daemon), so several
    daemons on one Pi (edge-fer@cam0, @cam1) stay apart on a dashboard."""

    def __init__(
        self, stats: RunStats, model_info: dict[str, str], classes: tuple[str, ...], camera: str = "default"
    ) -> None:
        self.stats, self.classes, self.camera = stats, classes, camera
        self.model_info = stable_model_info(model_info, camera)

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
            InfoMetricFamily,
        )

        s = self.stats
        cam = [self.camera]

        def one(family: type, name: str, doc: str, value: float) -> Metric:
            metric = family(name, doc, labels=["camera"])
            metric.add_metric(cam, value)
            return metric

        yield one(CounterMetricFamily, "edge_fer_frames", "Frames classified", s.frames)
        yield one(
            CounterMetricFamily, "edge_fer_dropped_frames", "Frames the source failed to give", s.bad_frames
        )
        yield one(CounterMetricFamily, "edge_fer_reconnects", "Times the source was reopened", s.reconnects)
        yield one(GaugeMetricFamily, "edge_fer_faces", "Faces in the last frame", s.faces_now)
        yield one(
            GaugeMetricFamily, "edge_fer_fps", "Frames per second over the stats window", s.latency.fps()
        )
        yield one(
            GaugeMetricFamily,
            "edge_fer_start_time_seconds",
            "When this daemon started (unix time)",
            s.started,
        )
        emotions = CounterMetricFamily(
            "edge_fer_emotion", "Smoothed labels, per frame and face", labels=["camera", "label"]
        )
        counts = dict(s.labels)
        for label in (*self.classes, *sorted(set(counts) - set(self.classes))):
            emotions.add_metric([self.camera, label], counts.get(label, 0))
        yield emotions
        latency = HistogramMetricFamily(
            "edge_fer_stage_latency_seconds",
            "Per-frame time of each pipeline stage",
            labels=["camera", "stage"],
        )
        for stage, hist in s.latency.histograms.items():
            cumulative = hist.cumulative([b * 1e3 for b in LATENCY_BUCKETS_S])
            buckets = [(f"{b:g}", c) for b, c in zip(LATENCY_BUCKETS_S, cumulative, strict=True)]
            buckets.append(("+Inf", hist.total))
            latency.add_metric([self.camera, stage], buckets, sum_value=hist.sum_ms / 1e3)
        yield latency
        info = InfoMetricFamily("edge_fer_model", "The emotion model being run")
        info.add_metric([], self.model_info)
        yield info


class MetricsEndpoint:
    """Serves /metrics from a background thread for as long as the output is open, on the
    pipeline's server for `bind:port` (`listeners`: shared with the web page when it asks for
    the same port)."""

    name = "metrics"

    def __init__(
        self,
        stats: RunStats,
        model_info: dict[str, str],
        classes: tuple[str, ...],
        port: int,
        bind: str,
        instance: str | None = None,
        listeners: Listeners | None = None,
    ) -> None:
        from prometheus_client import CollectorRegistry

        from edge_fer.core.metrics_server import add_metrics
        from edge_fer.outputs.listeners import Listeners

        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(RunStatsCollector(stats, model_info, classes, instance or "default"))
        self.listeners = listeners or Listeners()
        self.server = self.listeners.acquire(port, bind, "metrics")
        self.route = add_metrics(self.server, self.registry)
        log.info("Prometheus metrics on http://%s:%d/metrics", bind, self.server.port)

    def on_frame(self, result: FrameResult, stats: RunStats) -> None:
        pass

    def close(self) -> None:
        if self.server.routes.get("/metrics") is self.route:
            del self.server.routes["/metrics"]
        self.listeners.release(self.server)


# The output's registration (edge_fer.outputs.registration), kept last.
from edge_fer.emotions.labels import published_labels  # noqa: E402
from edge_fer.outputs.registration import register_output  # noqa: E402

if TYPE_CHECKING:
    from collections.abc import Sequence

    from edge_fer.outputs.base import Output, OutputContext


@register_output("metrics", section="metrics", order=80)
def metrics_output(ctx: OutputContext, earlier: Sequence[Output]) -> MetricsEndpoint | None:
    """`metrics.port` turns the Prometheus endpoint on; every label is a series from the start."""
    m = ctx.config.metrics
    if m.port is None:
        return None
    labels = published_labels(ctx.config.smoothing.groups)
    return MetricsEndpoint(
        ctx.stats, ctx.model_info, labels, m.port, m.bind, ctx.config.instance, ctx.listeners
    )

"""The outputs a config turns on.

To add an output, write a class with `name`, `on_frame(result, stats)` and `close()`, and
register its factory in `FACTORIES` below: a factory reads its own config section and
returns the output, or None when that output is off.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from edge_fer.display.screen import DisplayError, make_display
from edge_fer.emotions.labels import published_labels
from edge_fer.outputs.base import Output, OutputClosed, OutputContext, OutputError, PreviewHost
from edge_fer.outputs.console import ConsoleStatus, LogSummary
from edge_fer.outputs.events import EventsLog
from edge_fer.outputs.recorder import Recorder
from edge_fer.outputs.run_report import RunReport
from edge_fer.outputs.stats_file import StatsFile
from edge_fer.outputs.systemd import SystemdStatus


def _display(ctx: OutputContext) -> Output | None:
    return make_display(ctx.config.display, ctx.preview, ctx.classes)


def _recorder(ctx: OutputContext) -> Output | None:
    c = ctx.config
    return Recorder(c.record, c.camera.fps, ctx.classes, c.display.top3) if c.record else None


def _events(ctx: OutputContext) -> Output | None:
    path = ctx.config.events.path
    return EventsLog(path) if path else None


def _stats(ctx: OutputContext) -> Output | None:
    s = ctx.config.stats
    return StatsFile(s.path, s.interval_s) if s.path is not None else None


def _systemd(ctx: OutputContext) -> Output | None:
    return SystemdStatus(ctx.notifier, ctx.source_name, ctx.config.stats.interval_s)


def _report(ctx: OutputContext) -> Output | None:
    path = ctx.config.report.path
    return RunReport(path, ctx.stats) if path is not None else None


def _mqtt(ctx: OutputContext) -> Output | None:
    if ctx.config.mqtt.url is None:
        return None
    from edge_fer.outputs.mqtt import MqttPublisher, published_labels  # paho only when MQTT is on

    c = ctx.config
    labels = published_labels(c.smoothing.groups)
    return MqttPublisher(c.mqtt, c.stats.interval_s, ctx.model_info, c.instance, labels, ctx.stats)


def _metrics(ctx: OutputContext) -> Output | None:
    m = ctx.config.metrics
    if m.port is None:
        return None
    from edge_fer.outputs.prometheus import MetricsEndpoint  # prometheus_client only when on

    labels = published_labels(ctx.config.smoothing.groups)  # every label is a series from the start
    return MetricsEndpoint(
        ctx.stats, ctx.model_info, labels, m.port, m.bind, ctx.config.instance, ctx.listeners
    )


def _web(ctx: OutputContext) -> Output | None:
    w = ctx.config.web
    if not w.enabled:
        return None
    from edge_fer.outputs.web import WebPage, load_token

    token = load_token(w.token_file) if w.token_file is not None else None
    labels = published_labels(ctx.config.smoothing.groups)
    return WebPage(
        w, ctx.classes, labels, ctx.model_info, ctx.source_name, ctx.config.display.top3, ctx.listeners, token
    )


def _console(ctx: OutputContext, headless: bool) -> Output | None:
    from edge_fer.runtime.service import under_systemd

    mode = ctx.config.console
    on_terminal = sys.stdout.isatty() and not under_systemd() and ctx.config.events.path != "-"
    if mode == "on" or (mode == "auto" and headless and on_terminal):
        return ConsoleStatus(sys.stdout)
    return None


# In the order they see each frame: the screen first, then files, then the network.
FACTORIES: list[Callable[[OutputContext], Output | None]] = [
    _display,
    _recorder,
    _events,
    _stats,
    _systemd,
    _report,
    _mqtt,
    _metrics,
    _web,
]


def build_outputs(ctx: OutputContext) -> list[Output]:
    """Every output the config turns on. Raises OutputError / DisplayError for bad settings."""
    outputs: list[Output] = []
    try:
        for factory in FACTORIES:
            output = factory(ctx)
            if output is not None:
                outputs.append(output)
        headless = not any(o.name in ("drm", "window") for o in outputs)
        console = _console(ctx, headless)
        if console is not None:
            outputs.append(console)
        elif ctx.config.log_summary_s > 0:  # systemd's journal, nohup, a log file
            outputs.append(LogSummary(ctx.config.log_summary_s, ctx.stats))
    except BaseException:
        for output in outputs:
            output.close()
        raise
    return outputs


__all__ = [
    "DisplayError",
    "Output",
    "OutputClosed",
    "OutputContext",
    "OutputError",
    "PreviewHost",
    "build_outputs",
]

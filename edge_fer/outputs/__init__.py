"""Outputs: where each frame's result goes. One `Output` class per destination.

To add an output, write a class with `name`, `on_frame(result, stats)` and `close()`, and
register its factory in `FACTORIES` below: a factory reads its own config section and
returns the output, or None when that output is off.
"""

from __future__ import annotations

from collections.abc import Callable

from edge_fer.outputs.base import Output, OutputClosed, OutputContext, OutputError, PreviewHost
from edge_fer.outputs.display import DisplayError, make_display
from edge_fer.outputs.events import EventsLog
from edge_fer.outputs.recorder import Recorder
from edge_fer.outputs.report import RunReport
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


# In the order they see each frame: the screen first, then files, then the network.
FACTORIES: list[Callable[[OutputContext], Output | None]] = [
    _display, _recorder, _events, _stats, _systemd, _report,
]


def build_outputs(ctx: OutputContext) -> list[Output]:
    """Every output the config turns on. Raises OutputError / DisplayError for bad settings."""
    outputs = []
    try:
        for factory in FACTORIES:
            output = factory(ctx)
            if output is not None:
                outputs.append(output)
    except BaseException:
        for output in outputs:
            output.close()
        raise
    return outputs


__all__ = ["DisplayError", "Output", "OutputClosed", "OutputContext", "OutputError",
           "PreviewHost", "build_outputs"]

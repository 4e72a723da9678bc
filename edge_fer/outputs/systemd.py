"""systemd's view of the daemon: READY=1 after the first classified frame, WATCHDOG=1 after
good frames only (a hung camera stops the pings), and a STATUS= line with fps and faces."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from edge_fer.outputs.base import Every
from edge_fer.outputs.registration import register_output
from edge_fer.runtime.results import FrameResult
from edge_fer.runtime.service import Notifier
from edge_fer.runtime.summary import fps_text

if TYPE_CHECKING:
    from collections.abc import Sequence

    from edge_fer.outputs.base import Output, OutputContext
    from edge_fer.runtime.stats import RunStats

log = logging.getLogger(__name__)


class SystemdStatus:
    """sd_notify readiness, watchdog and status (no-ops when not run by systemd)."""

    name = "systemd"

    def __init__(self, notifier: Notifier, source_name: str, interval_s: float) -> None:
        self.notifier, self.source_name = notifier, source_name
        self.every = Every(interval_s)
        self.ready = False

    def on_frame(self, result: FrameResult, stats: RunStats) -> None:
        now = time.monotonic()
        if not self.ready:
            self.notifier.ready(f"first frame classified from {self.source_name}")
            log.info("ready: first frame classified from %s", self.source_name)
            self.ready = True
        self.notifier.frame_done(now)
        if self.every.due(now):
            fps = fps_text(stats.latency.rate())
            self.notifier.status(
                f"{fps + ', ' if fps else ''}{stats.faces_now} face(s), {stats.frames} frames"
            )

    def close(self) -> None:
        pass


@register_output("systemd", section="stats", order=50)
def systemd_output(ctx: OutputContext, earlier: Sequence[Output]) -> SystemdStatus:
    """Always on: it only speaks when systemd runs the daemon (every `stats.interval_s`)."""
    return SystemdStatus(ctx.notifier, ctx.source_name, ctx.config.stats.interval_s)

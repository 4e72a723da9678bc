"""What a daemon says about its results while it runs (the words are `edge_fer.runtime.summary`'s).

On a terminal, one status line a second, so a headless first run visibly works:

    46.0 fps | 2 faces | #3 happy 0.91 | #4 neutral 0.55 | detect 14.2 ms (1/2 frames) | classify 0.31 ms

On by default only when there is no display, the output is a TTY and systemd did not start
the daemon. Without it (journald, nohup, a log file; with or without a display) a summary goes
to the log instead: the first a few seconds after the first frame, then one every
`log_summary_s` seconds; the CLI logs the final one when the daemon stops.

Times mean what they mean everywhere (`edge_fer.runtime.stats.LatencyWindow`): medians over the last
second (console) or the stats window (log), detection over the frames that ran it.
"""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING, TextIO

from edge_fer.outputs.base import Every, OutputError
from edge_fer.outputs.registration import register_output
from edge_fer.runtime.results import FrameResult
from edge_fer.runtime.summary import FIRST_SUMMARY_S, interval_line, status_line

if TYPE_CHECKING:
    from collections.abc import Sequence

    from edge_fer.outputs.base import Output, OutputContext
    from edge_fer.runtime.stats import RunStats, Tally

log = logging.getLogger("edge_fer.runtime.summary")

__all__ = ["ConsoleStatus", "LogSummary", "status_line"]


class ConsoleStatus:
    """Prints `status_line` about once a second."""

    name = "console"

    def __init__(self, stream: TextIO = sys.stdout, interval_s: float = 1.0) -> None:
        self.stream = stream
        self.every = Every(interval_s)

    def on_frame(self, result: FrameResult, stats: RunStats) -> None:
        if self.every.due():
            try:
                print(status_line(result, stats), file=self.stream, flush=True)
            except OSError as exc:
                raise OutputError(f"console: cannot write to the terminal ({exc.strerror})") from None

    def close(self) -> None:
        pass


class LogSummary:
    """Logs `summary.interval_line`: the first `first_s` seconds after the first frame it sees
    (FIRST_SUMMARY_S, or `interval_s` if shorter), then every `interval_s` seconds, each over
    the frames since the previous line. Times are the frames' own (`RunStats`), so a line
    says what its frames did, however late the next frame comes."""

    name = "log_summary"

    def __init__(self, interval_s: float, stats: RunStats, first_s: float = FIRST_SUMMARY_S) -> None:
        self.interval_s = interval_s
        self.first_s = min(first_s, interval_s)
        # Counts start here (after a reload, the frames before it were summarised already);
        # the rate starts at the first frame this output sees, the first with a known time.
        self._before: Tally = stats.tally()
        self._rate_from: Tally | None = None
        self._due = 0.0
        self._span = self.first_s  # what the next line covers
        self._first_of_run = stats.frames == 0

    def on_frame(self, result: FrameResult, stats: RunStats) -> None:
        if self._rate_from is None:
            self._rate_from = stats.tally()
            self._due = stats.last_frame_mono + self.first_s
            return
        if stats.last_frame_mono < self._due:
            return
        now = stats.tally()
        title = f"{'first' if self._first_of_run else 'last'} {self._span:g} s"
        log.info("%s", interval_line(title, self._before, self._rate_from, now, result, stats))
        self._first_of_run = False
        self._before = self._rate_from = now
        self._span = self.interval_s
        self._due = now.last_frame_mono + self.interval_s

    def close(self) -> None:
        pass


@register_output("console", section="console", order=100)
def console_output(ctx: OutputContext, earlier: Sequence[Output]) -> Output | None:
    """The terminal's status line when `console: on`, or `auto` with no screen showing the
    frames on an interactive terminal; otherwise a periodic log summary (systemd's journal,
    nohup, a log file) unless `log_summary_s: 0`."""
    from edge_fer.runtime.service import under_systemd

    mode = ctx.config.console
    headless = not any(o.name in ("drm", "window") for o in earlier)
    on_terminal = sys.stdout.isatty() and not under_systemd() and ctx.config.events.path != "-"
    if mode == "on" or (mode == "auto" and headless and on_terminal):
        return ConsoleStatus(sys.stdout)
    if ctx.config.log_summary_s > 0:
        return LogSummary(ctx.config.log_summary_s, ctx.stats)
    return None

"""What a headless daemon says about its results.

On a terminal, one status line a second, so a headless first run visibly works:

    46.0 fps | 2 faces | #3 happy 0.91 | #4 neutral 0.55 | detect 14.2 ms (1/2 frames) | classify 0.31 ms

On by default only when there is no display, the output is a TTY and systemd did not start
the daemon. Without it (journald, nohup, a log file; with or without a display) a one-line
summary of the last `log_summary_s` seconds goes to the log instead:

    last 60 s: 1799 frames, 29.9 fps, faces in 96% | happy 61%, neutral 27%, sad 12% |
    now #3 happy 0.91 | detect 14.2 ms (1/2 frames) | classify 0.31 ms

Times mean what they mean everywhere (`edge_fer.stats.LatencyWindow`): medians over the last
second (console) or the stats window (log), detection over the frames that ran it.
"""

from __future__ import annotations

import logging
import sys
from collections import Counter
from typing import TYPE_CHECKING, TextIO

from edge_fer.outputs.base import Every, OutputError
from edge_fer.results import FrameResult
from edge_fer.stats import detection_rate

if TYPE_CHECKING:
    from edge_fer.stats import RunStats

log = logging.getLogger("edge_fer.summary")


def _faces_now(result: FrameResult) -> list[str]:
    return [f"#{f.id} {f.smoothed} {f.smoothed_score:.2f}" for f in result.faces]


def _times(stats: RunStats, seconds: float | None) -> str:
    p = stats.latency.window_percentiles(seconds)
    rate = detection_rate(*stats.latency.window_detection_frames(seconds))
    return f"detect {p['detect']['p50']:.1f} ms ({rate}) | classify {p['classify']['p50']:.2f} ms"


def status_line(result: FrameResult, stats: RunStats) -> str:
    """The one-line status of the latest frame, with fps and stage times over the last second."""
    faces = len(result.faces)
    seconds = min(1.0, stats.latency.window_s)
    parts = [f"{stats.latency.fps(seconds):.1f} fps", f"{faces} face{'s' if faces != 1 else ''}"]
    return " | ".join([*parts, *_faces_now(result), _times(stats, seconds)])


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
    """Logs one line every `interval_s` seconds: frames, fps and how often a face was in view
    since the last line, the smoothed labels' shares over those frames' faces, the faces now
    and the stage times over the stats window."""

    name = "log_summary"

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self.every = Every(interval_s)
        self.every.due()  # the first line comes after one interval, not at the first frame
        self._reset()

    def _reset(self) -> None:
        self.frames = 0
        self.frames_with_faces = 0
        self.labels: Counter[str] = Counter()
        self.first_t: float | None = None

    def line(self, result: FrameResult, stats: RunStats) -> str:
        span = result.t - self.first_t if self.first_t is not None else 0.0
        fps = (self.frames - 1) / span if span > 0 and self.frames > 1 else 0.0
        share = 100 * self.frames_with_faces / self.frames if self.frames else 0.0
        parts = [f"last {self.interval_s:g} s: {self.frames} frames, {fps:.1f} fps, faces in {share:.0f}%"]
        total = sum(self.labels.values())
        if total:
            parts.append(", ".join(f"{k} {100 * n / total:.0f}%" for k, n in self.labels.most_common()))
        now = _faces_now(result)
        parts.append("now " + ", ".join(now) if now else "no face now")
        parts.append(_times(stats, None))
        return " | ".join(parts)

    def on_frame(self, result: FrameResult, stats: RunStats) -> None:
        if self.first_t is None:
            self.first_t = result.t
        self.frames += 1
        self.frames_with_faces += bool(result.faces)
        self.labels.update(f.smoothed for f in result.faces)
        if self.every.due():
            log.info("%s", self.line(result, stats))
            self._reset()

    def close(self) -> None:
        pass

"""One status line a second on a terminal, so a headless first run visibly works:

    60.1 fps | 2 faces | #3 happy 0.91 | #4 neutral 0.55 | classify 0.12 ms

On by default only when there is no display, the output is a TTY and systemd did not start
the daemon (its journal keeps the usual log)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, TextIO

from edge_fer.outputs.base import Every, OutputError
from edge_fer.results import FrameResult

if TYPE_CHECKING:
    from edge_fer.stats import RunStats


def status_line(result: FrameResult, stats: RunStats) -> str:
    """The one-line summary of the latest frame and the live fps."""
    faces = len(result.faces)
    parts = [f"{stats.latency.fps():.1f} fps", f"{faces} face{'s' if faces != 1 else ''}"]
    parts += [f"#{f.id} {f.smoothed} {f.smoothed_score:.2f}" for f in result.faces]
    parts.append(f"classify {result.timing_ms['classify']:.2f} ms")
    return " | ".join(parts)


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

"""The live stats file edge-fer-monitor reads (`stats.path`), rewritten about once a second."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from edge_fer.outputs.base import Every, OutputError
from edge_fer.results import FrameResult
from edge_fer.stats import write_json_atomic

if TYPE_CHECKING:
    from edge_fer.stats import RunStats

log = logging.getLogger(__name__)


class StatsFile:
    """Atomic rewrites (a reader never sees half a file), 0640, removed when the daemon stops
    so the monitor never mistakes a stale file for a live daemon."""

    name = "stats"

    def __init__(self, path: Path, interval_s: float) -> None:
        self.path = Path(path)
        self.every = Every(interval_s)

    def on_frame(self, result: FrameResult, stats: RunStats) -> None:
        if not self.every.due():
            return
        try:
            write_json_atomic(self.path, stats.live())
        except OSError as exc:
            raise OutputError(
                f"stats: cannot write {self.path} ({exc.strerror}); set stats.path "
                "to a writable place; not publishing stats"
            ) from None

    def close(self) -> None:
        try:
            self.path.unlink(missing_ok=True)
        except OSError as exc:
            log.warning("cannot remove stats file %s: %s", self.path, exc.strerror)

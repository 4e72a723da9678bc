"""The live stats file edge-fer-monitor reads (`stats.path`), rewritten about once a second."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from edge_fer.outputs.base import Every, OutputError
from edge_fer.results import FrameResult
from edge_fer.safe_io import PathRefused, check_replaceable
from edge_fer.stats import write_json_atomic

if TYPE_CHECKING:
    from edge_fer.stats import RunStats

log = logging.getLogger(__name__)


class StatsFile:
    """Atomic rewrites (a reader never sees half a file), 0640, removed when the daemon stops
    so the monitor never mistakes a stale file for a live daemon. A target that is a
    directory, FIFO or device is refused at start (it would be replaced, or never written)."""

    name = "stats"

    def __init__(self, path: Path, interval_s: float) -> None:
        self.path = Path(path)
        try:
            check_replaceable(self.path)
        except PathRefused as exc:
            raise OutputError(f"stats: {exc}; set stats.path (--stats-path) to a file path") from None
        self.every = Every(interval_s)
        self._written = False

    def on_frame(self, result: FrameResult, stats: RunStats) -> None:
        if not self.every.due():
            return
        try:
            write_json_atomic(self.path, stats.live())
        except PathRefused as exc:
            raise OutputError(f"stats: {exc}; not publishing stats") from None
        except OSError as exc:
            raise OutputError(
                f"stats: cannot write {self.path} ({exc.strerror or exc}); set stats.path "
                "to a writable place; not publishing stats"
            ) from None
        self._written = True

    def close(self) -> None:
        if not self._written:
            return  # never remove a file this output did not write
        try:
            self.path.unlink(missing_ok=True)
        except OSError as exc:
            log.warning("cannot remove stats file %s: %s", self.path, exc.strerror)

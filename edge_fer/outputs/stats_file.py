"""The live stats file edge-fer-monitor reads (`stats.path`), rewritten about once a second."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from edge_fer.core.safe_io import PathRefused, check_replaceable, read_bounded
from edge_fer.outputs.base import Every, OutputError
from edge_fer.runtime.results import FrameResult
from edge_fer.runtime.stats import write_json_atomic

if TYPE_CHECKING:
    from edge_fer.runtime.stats import RunStats

log = logging.getLogger(__name__)
# Every stats document has these (RunStats.live): how a file left by a crashed edge-fer is
# told from someone else's file that happens to sit at stats.path.
STATS_KEYS = frozenset({"pid", "run_id", "time", "frames", "uptime_s"})
MAX_STATS_BYTES = 1 << 20


def is_stats_file(path: Path) -> bool:
    """True when `path` holds a stats document edge-fer wrote (e.g. before a crash)."""
    try:
        doc = json.loads(read_bounded(path, MAX_STATS_BYTES))
    except (OSError, ValueError):  # PathRefused, bad JSON, bad UTF-8
        return False
    return isinstance(doc, dict) and STATS_KEYS <= doc.keys()


class StatsFile:
    """Atomic rewrites (a reader never sees half a file), 0640, removed when the daemon stops
    so the monitor never mistakes a stale file for a live daemon. A target that is a
    directory, FIFO or device is refused at start (it would be replaced, or never written),
    and so is an existing file that is not an edge-fer stats document (it would be replaced,
    then removed). Only the file this output last wrote is ever removed."""

    name = "stats"

    def __init__(self, path: Path, interval_s: float) -> None:
        self.path = Path(path)
        try:
            check_replaceable(self.path)
        except PathRefused as exc:
            raise OutputError(f"stats: {exc}; set stats.path (--stats-path) to a file path") from None
        if os.path.exists(self.path) and not is_stats_file(self.path):
            raise OutputError(
                f"stats: {self.path} exists and is not an edge-fer stats file (edge-fer rewrites its "
                "stats file and removes it at exit); set stats.path (--stats-path) to another path"
            )
        self.every = Every(interval_s)
        self._written: tuple[int, int] | None = None  # (st_dev, st_ino) of the file we wrote last

    def on_frame(self, result: FrameResult, stats: RunStats) -> None:
        if not self.every.due():
            return
        try:
            self._written = write_json_atomic(self.path, stats.live())
        except PathRefused as exc:
            raise OutputError(f"stats: {exc}; not publishing stats") from None
        except OSError as exc:
            raise OutputError(
                f"stats: cannot write {self.path} ({exc.strerror or exc}); set stats.path "
                "to a writable place; not publishing stats"
            ) from None

    def close(self) -> None:
        if self._written is None or file_id_lstat(self.path) != self._written:
            return  # never remove a file this output did not write (or that was replaced since)
        try:
            self.path.unlink(missing_ok=True)
        except OSError as exc:
            log.warning("cannot remove stats file %s: %s", self.path, exc.strerror)


def file_id_lstat(path: Path) -> tuple[int, int] | None:
    """(st_dev, st_ino) of the directory entry itself (a symlink is not followed)."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino

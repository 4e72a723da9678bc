"""The live stats file edge-fer-monitor reads (`stats.path`), rewritten about once a second in
the format of `edge_fer.contracts.live_stats`."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from edge_fer.contracts import live_stats
from edge_fer.core.safe_io import PathRefused, check_replaceable
from edge_fer.outputs.base import Every, OutputError
from edge_fer.runtime.results import FrameResult

if TYPE_CHECKING:
    from edge_fer.runtime.stats import RunStats

log = logging.getLogger(__name__)


class StatsFile:
    """Atomic rewrites (a reader never sees half a file), 0640, removed when the daemon stops
    so the monitor never mistakes a stale file for a live daemon. A target that is a
    directory, FIFO or device is refused at start (it would be replaced, or never written),
    and so is an existing file that is not an edge-fer stats document, of this format or an
    older one (it would be replaced, then removed). Only the file this output last wrote is
    ever removed."""

    name = "stats"

    def __init__(self, path: Path, interval_s: float) -> None:
        self.path = Path(path)
        try:
            check_replaceable(self.path)
        except PathRefused as exc:
            raise OutputError(f"stats: {exc}; set stats.path (--stats-path) to a file path") from None
        if os.path.exists(self.path) and not live_stats.is_live_stats(self.path):
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
            self._written = live_stats.write(self.path, stats.snapshot())
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


# The output's registration (edge_fer.outputs.registration), kept last.
from edge_fer.outputs.registration import register_output  # noqa: E402

if TYPE_CHECKING:
    from collections.abc import Sequence

    from edge_fer.outputs.base import Output, OutputContext


@register_output("stats", section="stats", order=40)
def stats_output(ctx: OutputContext, earlier: Sequence[Output]) -> StatsFile | None:
    """`stats.path` turns the live stats file on."""
    s = ctx.config.stats
    return StatsFile(s.path, s.interval_s) if s.path is not None else None

"""The end-of-run summary (`report.path`, `--report-json`): frames, fps, per-stage latency
percentiles, faces seen, label counts, peak memory. Written when the output closes."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from edge_fer.outputs.base import OutputError
from edge_fer.results import FrameResult
from edge_fer.stats import write_json_atomic

if TYPE_CHECKING:
    from edge_fer.stats import RunStats

log = logging.getLogger(__name__)


class RunReport:
    """Keeps a reference to the run's counters and writes their report at close."""

    name = "report"

    def __init__(self, path: Path, stats: RunStats) -> None:
        self.path = Path(path).expanduser()
        if self.path.is_dir():
            raise OutputError(f"report: {self.path} is a directory; give a file path for --report-json")
        if not self.path.parent.is_dir():
            raise OutputError(
                f"report: folder {self.path.parent} does not exist; create it or "
                "choose another --report-json path"
            )
        self.stats = stats

    def on_frame(self, result: FrameResult, stats: RunStats) -> None:
        pass

    def close(self) -> None:
        try:
            write_json_atomic(self.path, self.stats.report())
        except OSError as exc:
            log.error("report: cannot write %s (%s)", self.path, exc.strerror)

"""The end-of-run summary (`report.path`, `--report-json`): frames, fps, per-stage latency
percentiles, faces seen, label counts, peak memory. Written when the output closes."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from edge_fer.core.safe_io import PathRefused, check_replaceable, write_json_atomic
from edge_fer.outputs.base import OutputError
from edge_fer.outputs.registration import register_output
from edge_fer.runtime.results import FrameResult

if TYPE_CHECKING:
    from collections.abc import Sequence

    from edge_fer.outputs.base import Output, OutputContext
    from edge_fer.runtime.stats import RunStats

log = logging.getLogger(__name__)


class RunReport:
    """Keeps a reference to the run's counters and writes their report at close (valid JSON,
    replaced atomically; a directory, FIFO or device as the target is refused at start)."""

    name = "report"

    def __init__(self, path: Path, stats: RunStats) -> None:
        self.path = Path(path)
        try:
            check_replaceable(self.path)
        except PathRefused as exc:
            raise OutputError(f"report: {exc}; give a file path for --report-json") from None
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
        except PathRefused as exc:
            log.error("report: not written: %s", exc)
        except OSError as exc:
            log.error("report: cannot write %s (%s)", self.path, exc.strerror or exc)


@register_output("report", section="report", order=60)
def report_output(ctx: OutputContext, earlier: Sequence[Output]) -> RunReport | None:
    """`report.path` turns the end-of-run report on."""
    path = ctx.config.report.path
    return RunReport(path, ctx.stats) if path is not None else None

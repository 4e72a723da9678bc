"""Writes the rendered overlay video to a file: only when the user sets `record`."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import cv2

from edge_fer.core.safe_io import PathRefused, check_replaceable
from edge_fer.display.overlay import render
from edge_fer.display.screen import hud_for
from edge_fer.outputs.base import OutputError
from edge_fer.outputs.registration import register_output
from edge_fer.runtime.results import FrameResult

if TYPE_CHECKING:
    from collections.abc import Sequence

    from edge_fer.outputs.base import Output, OutputContext
    from edge_fer.runtime.stats import RunStats

log = logging.getLogger(__name__)


class Recorder:
    """An mp4 of what the display shows (boxes, labels, HUD)."""

    name = "record"

    def __init__(self, path: Path, fps: float, classes: tuple[str, ...], top3: bool) -> None:
        try:
            check_replaceable(Path(path))  # OpenCV would write through a FIFO or device
        except PathRefused as exc:
            raise OutputError(f"record: {exc}; set record to a video file path") from None
        if not Path(path).parent.is_dir():
            raise OutputError(
                f"record: folder {Path(path).parent} does not exist; create it or "
                "set record to a path in an existing folder"
            )
        self.path, self.fps, self.classes, self.top3 = Path(path), fps, classes, top3
        self.writer: cv2.VideoWriter | None = None
        log.warning("recording the overlay video to %s (record is set)", path)

    def on_frame(self, result: FrameResult, stats: RunStats) -> None:
        image = render(result.image, result.faces, hud_for(result, stats), self.classes, self.top3)
        if self.writer is None:
            h, w = image.shape[:2]
            self.writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (w, h))
            if not self.writer.isOpened():
                raise OutputError(f"record: cannot write a video to {self.path}")
        self.writer.write(image)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.release()
            self.writer = None


@register_output("recorder", section="record", order=20)
def recorder_output(ctx: OutputContext, earlier: Sequence[Output]) -> Recorder | None:
    """`record: PATH` turns the annotated video on."""
    c = ctx.config
    return Recorder(c.record, c.camera.fps, ctx.classes, c.display.top3) if c.record else None

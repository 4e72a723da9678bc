"""USB webcams (V4L2) through OpenCV.

Source kind `webcam` (`source: webcam` or `webcam:INDEX`; config section `camera`): second in
`auto`, after picamera2, when the webcam at `camera.index` gives a frame.
"""

from __future__ import annotations

import glob
import logging

import cv2

from edge_fer.sources.base import FrameSource, SourceKind, SourceSettings, quiet_opencv, register_source
from edge_fer.sources.video import OpenCVSource

log = logging.getLogger(__name__)


def _webcam_works(index: int, devices: str = "/dev/video*") -> bool:
    """Whether webcam `index` gives a frame, probed without OpenCV's warnings; with no video
    device at all it is not opened."""
    if not glob.glob(devices):
        return False
    with quiet_opencv():
        cap = cv2.VideoCapture(index)
        try:
            return bool(cap.isOpened() and cap.read()[0])
        finally:
            cap.release()


def _build(spec: str, settings: SourceSettings) -> FrameSource:
    index = int(spec.split(":", 1)[1]) if ":" in spec else 0
    return OpenCVSource(index, size=settings.camera.webcam_size, fps=settings.camera.fps)


def _find(settings: SourceSettings) -> tuple[FrameSource | None, str]:
    cam = settings.camera
    if _webcam_works(cam.index):
        log.info("source auto: no picamera2 camera, using webcam %d", cam.index)
        return OpenCVSource(cam.index, size=cam.webcam_size, fps=cam.fps), ""
    return None, f"webcam {cam.index} (none that gives frames)"


register_source(
    SourceKind(
        name="webcam",
        forms=("webcam", "webcam:INDEX"),
        reads=("camera",),
        matches=lambda spec: spec == "webcam" or spec.startswith("webcam:"),
        build=_build,
        find=_find,
        auto_rank=20,
    )
)

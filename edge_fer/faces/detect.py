"""Face detectors (OpenCV): YuNet (the default) and the Haar cascade.

Both take a gray or BGR detection image, convert it to what they need themselves, and
return boxes in that image's pixels; the pipeline scales them to the main frame.

Each detector class registers itself (`@register_detector(kind)`) under the `detector.kind`
that names it, and builds itself from the config's `detector` section (`from_config`);
`make_detector` looks the kind up, so adding a detector is one class in this package.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, TypeVar

import cv2
import numpy as np

from edge_fer.config import DetectorConfig
from edge_fer.core.user_input import InputRefused, user_file
from edge_fer.emotions.preprocess import to_gray
from edge_fer.runtime.results import Box

MAX_YUNET_BYTES = 64 << 20  # the shipped model is 0.2 MB; OpenCV reads the whole file


class DetectorError(RuntimeError):
    """A detector that cannot be created; the message names the fix."""


class FaceDetector(Protocol):
    """Finds faces in a gray or BGR image."""

    name: str

    def detect(self, image: np.ndarray) -> list[Box]: ...


class DetectorKind(Protocol):
    """A registered detector class: built from the config's `detector` section."""

    name: str

    @classmethod
    def from_config(cls, config: DetectorConfig) -> FaceDetector: ...


# detector.kind -> detector class, filled by @register_detector as this module is imported.
_DETECTORS: dict[str, DetectorKind] = {}
K = TypeVar("K", bound=DetectorKind)


def register_detector(kind: str) -> Callable[[K], K]:
    """Class decorator: `detector.kind: <kind>` builds this class with its `from_config`."""

    def register(cls: K) -> K:
        if kind in _DETECTORS and _DETECTORS[kind] is not cls:
            raise ValueError(f"detector kind {kind!r} is registered twice")
        _DETECTORS[kind] = cls
        return cls

    return register


def detector_kinds() -> tuple[str, ...]:
    """Every registered `detector.kind`, sorted."""
    return tuple(sorted(_DETECTORS))


@register_detector("haar")
class HaarDetector:
    """OpenCV's frontal-face Haar cascade (ships with opencv-python 4.x)."""

    name = "haar"
    # The cascade's smallest search window, in the pixels it is given (detector.min_face, in
    # main-frame pixels, is applied to the boxes afterwards, where the scale is known).
    MIN_WINDOW = 24

    def __init__(self, min_face: int = MIN_WINDOW) -> None:
        data = getattr(cv2, "data", None)
        if data is None:
            raise DetectorError(
                "this OpenCV has no bundled Haar cascades (OpenCV 5 dropped "
                "them); install opencv-python-headless<5 or use detector yunet"
            )
        path = Path(data.haarcascades) / "haarcascade_frontalface_default.xml"
        self.cascade = cv2.CascadeClassifier(str(path))
        if self.cascade.empty():
            raise DetectorError(f"cannot load Haar cascade {path}; reinstall opencv-python-headless")
        self.min_face = min_face

    @classmethod
    def from_config(cls, config: DetectorConfig) -> HaarDetector:
        """The cascade has no settings of its own in the `detector` section."""
        return cls()

    def detect(self, image: np.ndarray) -> list[Box]:
        faces = self.cascade.detectMultiScale(
            to_gray(image), scaleFactor=1.15, minNeighbors=5, minSize=(self.min_face, self.min_face)
        )
        return [tuple(int(v) for v in f) for f in faces]


@register_detector("yunet")
class YuNetDetector:
    """YuNet (cv2.FaceDetectorYN): a small CNN detector, far more robust to pose than Haar.

    Its boxes are returned as the square FER2013 would have cropped: YuNet's own box is 9%
    larger than a FER2013 crop and centred 3% of it lower (medians over 1,793 train faces,
    `tools/measure_face_boxes.py`; Haar's boxes match FER2013's to within 0.1%).
    """

    name = "yunet"
    FER_SIDE = 1.09  # YuNet box side / FER2013 crop side
    FER_CENTRE_DY = 0.030  # (YuNet box centre - FER2013 crop centre) / crop side, downwards

    def __init__(self, model: Path, score_threshold: float, min_face: int) -> None:
        model = Path(model)
        try:  # before OpenCV's C++ sees the path: UTF-8, a regular file, a sane size
            user_file(model, "YuNet model", MAX_YUNET_BYTES)
        except InputRefused as exc:
            missing = "does not exist" in str(exc)
            raise DetectorError(
                f"YuNet model {model} does not exist; set detector.yunet_model "
                "to a face_detection_yunet_*.onnx file"
                if missing
                else f"{exc}; set detector.yunet_model to a face_detection_yunet_*.onnx file"
            ) from None
        try:
            self.net = cv2.FaceDetectorYN.create(str(model), "", (320, 240), score_threshold, 0.3, 5000)
        except cv2.error as exc:
            raise DetectorError(f"OpenCV cannot load YuNet model {model}: {exc}") from None
        self.size: tuple[int, int] | None = None
        self.min_face = min_face

    @classmethod
    def from_config(cls, config: DetectorConfig) -> YuNetDetector:
        """`detector.yunet_model` (or the shipped model) at `detector.score_threshold`, keeping
        every face it finds: `detector.min_face` is in main-frame pixels, which only the
        caller that scaled the input knows (`edge_fer.faces.finder`)."""
        return cls(config.yunet_file, config.score_threshold, min_face=1)

    def detect(self, image: np.ndarray) -> list[Box]:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR) if image.ndim == 2 else image
        h, w = image.shape[:2]
        if self.size != (w, h):
            self.net.setInputSize((w, h))
            self.size = (w, h)
        _, faces = self.net.detect(image)
        if faces is None:
            return []
        boxes = []
        for f in faces:
            x, y, bw, bh = (float(v) for v in f[:4])
            if not np.isfinite((x, y, bw, bh)).all():  # what YuNet gives on a sliver of an image
                continue
            side = max(bw, bh) / self.FER_SIDE
            # YuNet gives NaN boxes on images of a few pixels: never a face
            if not (math.isfinite(x) and math.isfinite(y) and math.isfinite(side)) or side < self.min_face:
                continue
            cx, cy = x + bw / 2, y + bh / 2 - self.FER_CENTRE_DY * side
            boxes.append(
                (int(round(cx - side / 2)), int(round(cy - side / 2)), int(round(side)), int(round(side)))
            )
        return boxes


def make_detector(config: DetectorConfig) -> FaceDetector:
    """The detector `detector.kind` names, built from the `detector` section by its
    registered class (DetectorError for a kind no class registered)."""
    cls = _DETECTORS.get(config.kind)
    if cls is None:
        raise DetectorError(
            f"no face detector {config.kind!r}; set detector.kind to one of {', '.join(detector_kinds())}"
        )
    return cls.from_config(config)


def detection_image(image: np.ndarray, width: int) -> tuple[np.ndarray, float]:
    """`image` scaled down to `width` pixels across for detection (never up, never to zero
    rows), and how many `image` pixels one detection-image pixel spans."""
    h, w = image.shape[:2]
    target = min(width, w)
    if target == w:
        return image, 1.0
    rows = max(1, round(h * target / w))
    return cv2.resize(image, (target, rows), interpolation=cv2.INTER_AREA), w / target

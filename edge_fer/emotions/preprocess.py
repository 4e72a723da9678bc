"""Face preprocessing shared by training, evaluation and the daemon.

One function turns a face (a crop, or a box in a frame) into the model's input, so the
three can never drift apart: crop with margin -> grayscale -> resize -> normalize.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import cv2
import numpy as np

MARGIN_RANGE = (-0.25, 1.0)  # a crop between half and three times the detector's box


@dataclass(frozen=True)
class PreprocessSpec:
    """How a face becomes a model input; stored in the model's metadata."""

    input_size: int = 48
    # Box growth on each side, as a fraction of its size (negative: shrink), within
    # MARGIN_RANGE. The detectors' boxes are mapped onto FER2013's crop square
    # (tools/measure_face_boxes.py); training stores its --crop-margin here (default -0.05).
    margin: float = 0.0
    mean: float = 0.5
    std: float = 0.5

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: object) -> PreprocessSpec:
        """The spec stored in a checkpoint or model card (SpecError if any value cannot work)."""
        return cls(**check_spec(data))


class SpecError(ValueError):
    """Stored preprocessing that cannot work; the message names the value and its range."""


def check_spec(data: object) -> dict:
    """A stored `preprocess` section with every value checked against a range that can work
    (missing keys take PreprocessSpec's defaults; what older model cards left out meant is
    edge_fer.contracts.model_card's migration)."""
    if not isinstance(data, dict):
        raise SpecError("'preprocess' must be an object with input_size, margin, mean and std")

    def number(key: str, default: float) -> float:
        value = data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise SpecError(f"preprocess.{key} is {str(value)[:40]!r}, not a number")
        return float(value)

    default = PreprocessSpec()
    size, margin = number("input_size", default.input_size), number("margin", default.margin)
    mean, std = number("mean", default.mean), number("std", default.std)
    if not 0 <= mean <= 1:
        raise SpecError(f"preprocess.mean {mean:g} must be in [0, 1] (pixels are on a 0-1 scale)")
    if size != int(size) or not 8 <= size <= 512:
        raise SpecError(f"preprocess.input_size {size:g} must be a whole number of pixels between 8 and 512")
    lo, hi = MARGIN_RANGE
    if not lo <= margin <= hi:
        raise SpecError(f"preprocess.margin {margin:g} must be in [{lo:g}, {hi:g}]")
    if not 1e-2 <= std <= 10:
        raise SpecError(
            f"preprocess.std {std:g} must be positive, 0.01 to 10 (every face would get the same label)"
        )
    return {"input_size": int(size), "margin": margin, "mean": mean, "std": std}


def to_gray(image: np.ndarray) -> np.ndarray:
    """Return a 2-D uint8 grayscale view of a gray, BGR or BGRA image."""
    if image.ndim == 2:
        return image
    if image.ndim == 3 and image.shape[2] == 1:
        return image[:, :, 0]
    if image.ndim == 3 and image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2GRAY)
    raise ValueError(f"unsupported image shape {image.shape}: expected HxW, HxWx1, HxWx3 or HxWx4")


def crop_face(image: np.ndarray, box: tuple[int, int, int, int], margin: float) -> np.ndarray:
    """Cut a square face crop (box grown by `margin`) from a gray or color image, padding with
    edge pixels at borders."""
    x, y, w, h = box
    side = max(w, h) * (1.0 + 2.0 * margin)
    cx, cy = x + w / 2.0, y + h / 2.0
    x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
    x1, y1 = x0 + int(round(side)), y0 + int(round(side))
    height, width = image.shape[:2]
    pad = max(0, -x0, -y0, x1 - width, y1 - height)
    if pad:
        image = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        x0, y0, x1, y1 = x0 + pad, y0 + pad, x1 + pad, y1 + pad
    return image[y0:y1, x0:x1]


def resize_face(gray_face: np.ndarray, size: int) -> np.ndarray:
    """Resize a gray face crop to size x size (area filter when shrinking)."""
    if gray_face.shape[0] == size and gray_face.shape[1] == size:
        return gray_face
    interp = cv2.INTER_AREA if gray_face.shape[0] > size else cv2.INTER_LINEAR
    return cv2.resize(gray_face, (size, size), interpolation=interp)


def normalize(faces_u8: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """uint8 faces (N, S, S) -> float32 model input (N, 1, S, S)."""
    x = faces_u8.astype(np.float32) * (1.0 / 255.0)
    x = (x - spec.mean) / spec.std
    # reshape, not x[:, None]: a zero stride on the new axis is rejected by ExecuTorch.
    return x.reshape(x.shape[0], 1, x.shape[1], x.shape[2])


def prepare_face(
    image: np.ndarray,
    spec: PreprocessSpec,
    box: tuple[int, int, int, int] | None = None,
) -> np.ndarray:
    """One face -> uint8 (S, S) gray crop. `box=None` means the image already is the face.

    Crops before converting to gray (the same pixels either way), so a color frame is never
    converted whole for a few small faces.
    """
    if box is not None:
        image = crop_face(image, box, spec.margin)
    return resize_face(to_gray(image), spec.input_size)


def faces_to_input(
    image: np.ndarray,
    boxes: list[tuple[int, int, int, int]] | None,
    spec: PreprocessSpec,
) -> np.ndarray:
    """All faces of a frame (or one whole-image face when boxes is None) -> (N, 1, S, S)."""
    if boxes is None:
        crops = [prepare_face(image, spec)]
    else:
        crops = [prepare_face(image, spec, b) for b in boxes]
    if not crops:
        return np.zeros((0, 1, spec.input_size, spec.input_size), np.float32)
    return normalize(np.stack(crops), spec)

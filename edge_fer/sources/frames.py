"""Frames are checked once, where they enter: every source (camera, video file, network
stream) hands what it read to a `FrameCheck` before anything else sees it, and photos can use
`check_frame` the same way.

A frame the pipeline cannot use is dropped (the frame loop counts it as a bad frame) or
made usable, with one logged warning per kind of problem and source:

* not an image (not an array, no pixels, more than 3 dimensions) -> dropped;
* 16-bit -> scaled to 8-bit; float, bool, signed or other types -> dropped;
* gray (2-D, or one channel) -> BGR; BGRA -> BGR; 2 or more than 4 channels -> dropped;
* a side shorter than `frames.min_side`, or one side more than `frames.max_aspect` times the
  other (a 2000x2 frame would make a detection image of zero rows) -> dropped;
* more than `frames.max_pixels` -> scaled down to that many, aspect kept.

`decode_size_refusal` is the matching check for a decoder before it runs (a video's or
stream's frame size against `frames.max_decode_pixels`), and `jpeg_size` reads a JPEG's size
from its header so a decompression bomb is refused before it is decoded.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import cv2
import numpy as np

from edge_fer.config import FramesConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Checked:
    """The outcome for one frame: the usable image (None when dropped), what was wrong with
    it (a short kind for counting) and the sentence for the log."""

    image: np.ndarray | None
    kind: str | None = None
    why: str = ""


def _size(image: np.ndarray) -> str:
    h, w = image.shape[:2]
    return f"{w}x{h}"


def check_frame(image: object, limits: FramesConfig) -> Checked:
    """`image` as a contiguous uint8 BGR (H, W, 3) array within `limits`, or why not."""
    if not isinstance(image, np.ndarray):
        return Checked(None, "not-array", f"the source gave a {type(image).__name__}, not an image")
    if image.size == 0 or image.ndim not in (2, 3):
        return Checked(None, "shape", f"the source gave an array of shape {image.shape}, not an image")
    if image.ndim == 3 and image.shape[2] not in (1, 3, 4):
        return Checked(None, "channels", f"frames have {image.shape[2]} channels (1, 3 or 4 work)")
    h, w = image.shape[:2]
    if min(h, w) < limits.min_side:
        return Checked(None, "small", f"frames are {w}x{h}: a side under frames.min_side={limits.min_side}")
    if max(h, w) > limits.max_aspect * min(h, w):
        return Checked(
            None,
            "aspect",
            f"frames are {w}x{h}: longer than frames.max_aspect={limits.max_aspect:g} times their other side",
        )
    kind, why = None, ""
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
        kind, why = "16-bit", "frames are 16-bit: scaled to 8-bit"
    elif image.dtype != np.uint8:
        return Checked(None, "dtype", f"frames are {image.dtype}, not 8-bit pixels")
    if image.ndim == 2 or image.shape[2] == 1:
        image = cv2.cvtColor(np.ascontiguousarray(image.reshape(h, w)), cv2.COLOR_GRAY2BGR)
    elif image.shape[2] == 4:
        image = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_BGRA2BGR)
    if h * w > limits.max_pixels:
        scale = math.sqrt(limits.max_pixels / (h * w))
        size = (max(1, int(w * scale)), max(1, int(h * scale)))
        why = f"frames are {w}x{h}, over frames.max_pixels={limits.max_pixels}: scaled to {size[0]}x{size[1]}"
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        kind = "scaled"
    return Checked(np.ascontiguousarray(image), kind, why)


def check_lores(lores: object, main: np.ndarray) -> np.ndarray | None:
    """A camera's low-resolution gray plane for detection, or None (detection then uses the
    main frame) when it is not a 2-D uint8 plane of at least 16x16 with the main frame's
    aspect within 25%."""
    if not isinstance(lores, np.ndarray) or lores.ndim != 2 or lores.dtype != np.uint8:
        return None
    h, w = lores.shape
    mh, mw = main.shape[:2]
    if min(h, w) < 16 or abs((w / h) / (mw / mh) - 1) > 0.25:
        return None
    return lores


class FrameCheck:
    """`check_frame` for one source, logging each kind of problem once (with the source's
    name); `dropped` counts frames dropped by kind."""

    def __init__(self, limits: FramesConfig | None = None, source: str = "source") -> None:
        self.limits = limits or FramesConfig()
        self.source = source
        self.dropped: dict[str, int] = {}
        self.last = ""  # why the last frame was dropped ("" when it was used)
        self._warned: set[str] = set()

    def warn(self, kind: str, why: str) -> None:
        """Count a frame dropped before it was an image (a stream part), logging the first of
        each kind."""
        self.dropped[kind] = self.dropped.get(kind, 0) + 1
        self.last = why
        if kind not in self._warned:
            self._warned.add(kind)
            log.warning("source %s: %s; such parts are dropped", self.source, why)

    def __call__(self, image: object) -> np.ndarray | None:
        checked = check_frame(image, self.limits)
        if checked.image is None:
            self.dropped[checked.kind or "?"] = self.dropped.get(checked.kind or "?", 0) + 1
            self.last = checked.why
        else:
            self.last = ""
        if checked.kind is not None and checked.kind not in self._warned:
            self._warned.add(checked.kind)
            action = "" if checked.image is not None else "; such frames are dropped"
            log.warning("source %s: %s%s", self.source, checked.why, action)
        return checked.image


def decode_size_refusal(width: float, height: float, limits: FramesConfig, what: str) -> str | None:
    """Why a decoder of (width x height) frames must not run (their size is past
    frames.max_decode_pixels, or degenerate), else None. `what` names the video or stream."""
    try:
        w, h = int(width), int(height)
    except (TypeError, ValueError, OverflowError):
        return None
    if w <= 0 or h <= 0:
        return None  # unknown until the first frame: the frame check has the last word
    if w * h > limits.max_decode_pixels:
        return (
            f"{what} is {w}x{h}, more than frames.max_decode_pixels={limits.max_decode_pixels} "
            "(decoding it would pass the memory the service may use); scale it down, e.g. "
            "ffmpeg -i IN -vf scale=1920:-2 OUT.mp4, or lower the camera's resolution"
        )
    return None


# JPEG start-of-frame markers (baseline, progressive, lossless...): not DHT, JPG or DAC.
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def jpeg_size(data: bytes | memoryview) -> tuple[int, int] | None:
    """(width, height) from a JPEG's frame header, or None when `data` is not a JPEG with one.
    Reads only the markers, never the image data."""
    view = memoryview(data)
    n = len(view)
    if n < 4 or view[0] != 0xFF or view[1] != 0xD8:
        return None
    i = 2
    while i + 4 <= n:
        if view[i] != 0xFF:
            return None
        marker = view[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image or start of scan before any frame header
            return None
        length = (view[i + 2] << 8) | view[i + 3]
        if length < 2:
            return None
        if marker in _SOF:
            if i + 9 > n:
                return None
            height = (view[i + 5] << 8) | view[i + 6]
            width = (view[i + 7] << 8) | view[i + 8]
            return width, height
        i += 2 + length
    return None


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(data: bytes | memoryview) -> tuple[int, int] | None:
    """(width, height) from a PNG's IHDR chunk, or None when `data` is not a PNG."""
    head = bytes(data[:24])
    if len(head) < 24 or not head.startswith(PNG_SIGNATURE) or head[12:16] != b"IHDR":
        return None
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def decode_jpeg(data: bytes, limits: FramesConfig) -> tuple[np.ndarray | None, str]:
    """A BGR image from JPEG (or PNG) bytes, refusing before decoding one whose header says
    it is larger than frames.max_decode_pixels: (image, "") or (None, why). Anything else
    is refused undecoded (a stream's parts are JPEG)."""
    size = jpeg_size(data) or png_size(data)
    if size is None:
        return None, "not a JPEG or PNG image"
    if size is not None and size[0] * size[1] > limits.max_decode_pixels:
        return None, (
            f"a {size[0]}x{size[1]} JPEG, more than frames.max_decode_pixels={limits.max_decode_pixels}"
        )
    if size is not None and (size[0] == 0 or size[1] == 0):
        return None, "a JPEG with no pixels"
    buffer = np.frombuffer(data, np.uint8)
    if buffer.size == 0:
        return None, "an empty part"
    try:
        image = cv2.imdecode(buffer, cv2.IMREAD_COLOR)
    except cv2.error as exc:
        return None, f"an image OpenCV cannot decode ({str(exc).strip()[:80]})"
    if image is None:
        return None, "not an image"
    return image, ""

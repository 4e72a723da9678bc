"""Drawing: face boxes with smoothed label and confidence, top-3 bars, and a HUD.

Everything is drawn at the resolution it is shown at (the frame scaled to the screen, aspect
kept), with text and lines sized to that resolution, so a 640x480 camera frame on a 1080p TV
reads as well as on a small window.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from edge_fer.runtime.results import Box, FaceResult

# BGR colours per emotion, chosen to be told apart on a TV across a room.
COLOURS: dict[str, tuple[int, int, int]] = {
    "angry": (40, 40, 230),
    "disgust": (40, 140, 60),
    "fear": (170, 60, 170),
    "happy": (40, 210, 250),
    "neutral": (200, 200, 200),
    "sad": (200, 120, 40),
    "surprise": (40, 160, 255),
}
OTHER = (235, 235, 235)  # any other label (e.g. 'uncertain')
FONT = cv2.FONT_HERSHEY_SIMPLEX


@dataclass
class Hud:
    """The figures in the top-left corner, over the last second: stage times are medians (p50)
    over the frames that ran the stage (detection runs on `detect_rate` of them, e.g.
    '1/2 frames'); `frame_ms` is the mean time of a whole frame (capture + detect + classify);
    `outputs_ms` the mean time the outputs (this screen, files, network) then take."""

    fps: float | None  # None until two frames give a rate (then the line is left out)
    frame_ms: float
    capture_ms: float
    detect_ms: float
    detect_rate: str
    classify_ms: float
    outputs_ms: float = 0.0

    def lines(self) -> list[str]:
        return [
            *([f"{self.fps:.1f} fps"] if self.fps is not None else []),
            f"detect {self.detect_ms:.1f} ms ({self.detect_rate})",
            f"classify {self.classify_ms:.2f} ms",
            f"capture {self.capture_ms:.1f} ms",
            f"frame {self.frame_ms:.1f} ms avg",
            f"outputs {self.outputs_ms:.1f} ms avg",
        ]


def fit_rect(frame_size: tuple[int, int], screen_size: tuple[int, int]) -> tuple[int, int, int, int]:
    """Where a frame (w, h) goes on a screen (w, h), scaled to fill it with its aspect ratio
    kept (black bars on the sides or top and bottom): (x, y, w, h) on the screen."""
    fw, fh = frame_size
    sw, sh = screen_size
    scale = min(sw / fw, sh / fh)
    w, h = max(1, round(fw * scale)), max(1, round(fh * scale))
    return (sw - w) // 2, (sh - h) // 2, w, h


def scale_box(box: Box, scale: float) -> Box:
    """A face box in frame pixels -> the same box on an image `scale` times as large."""
    return tuple(int(round(v * scale)) for v in box)  # type: ignore[return-value]


class _Pen:
    """Font scale, thickness and line height for an image of this height."""

    def __init__(self, height: int, channels: int, rgb: bool) -> None:
        self.unit = max(height, 240) / 720  # 1.0 on a 720-line image
        self.channels, self.rgb = channels, rgb

    def colour(self, bgr: tuple[int, int, int]) -> tuple[int, ...]:
        c = bgr[::-1] if self.rgb else bgr
        return (*c, 255)[: self.channels]

    def size(self, base: float) -> float:
        return base * self.unit

    def px(self, base: float) -> int:
        return max(1, int(round(base * self.unit)))

    def text(
        self, img: np.ndarray, text: str, org: tuple[int, int], base: float, bgr: tuple = (255, 255, 255)
    ) -> None:
        scale, thick = self.size(base), self.px(2 * base)
        cv2.putText(img, text, org, FONT, scale, self.colour((0, 0, 0)), thick + self.px(2), cv2.LINE_AA)
        cv2.putText(img, text, org, FONT, scale, self.colour(bgr), thick, cv2.LINE_AA)

    def text_size(self, text: str, base: float) -> tuple[int, int]:
        (w, h), _ = cv2.getTextSize(text, FONT, self.size(base), self.px(2 * base))
        return w, h


def draw_faces(
    img: np.ndarray,
    faces: list[FaceResult],
    classes: tuple[str, ...],
    top3: bool = True,
    scale: float = 1.0,
    rgb: bool = False,
) -> None:
    """Draw each face's box and smoothed label (whatever string it is) with its score, and its
    three most likely emotions as bars, onto a BGR(A) image (RGB(A) if `rgb`); boxes are in
    frame pixels and the image is `scale` times the frame."""
    pen = _Pen(img.shape[0], img.shape[2], rgb)
    ih, iw = img.shape[:2]
    for face in faces:
        x, y, w, h = scale_box(face.box, scale)
        colour = COLOURS.get(face.smoothed, OTHER)
        cv2.rectangle(img, (x, y), (x + w, y + h), pen.colour(colour), pen.px(3))
        label = f"#{face.id} {face.smoothed} {face.smoothed_score * 100:.0f}%"
        _, th = pen.text_size(label, 0.9)
        pen.text(img, label, (x, max(th + pen.px(4), y - pen.px(8))), 0.9, colour)
        if not top3:
            continue
        row = pen.px(26)
        top = y + h + pen.px(6)
        if top + 3 * row > ih:  # no room below the face: draw inside the box's bottom
            top = max(0, y + h - 3 * row - pen.px(4))
        width = max(w, pen.text_size("surprise 100%", 0.6)[0] + pen.px(10))
        width = min(width, iw - x)
        shade = img[top : top + 3 * row, x : x + width]
        shade[...] = (shade * 0.35).astype(img.dtype)
        if img.shape[2] == 4:
            shade[..., 3] = 160
        for i, k in enumerate(np.argsort(face.probs)[::-1][:3]):
            by = top + i * row
            p = float(face.probs[k])
            bar = pen.colour(COLOURS.get(classes[k], OTHER))
            cv2.rectangle(img, (x, by + pen.px(3)), (x + int(width * p), by + row - pen.px(3)), bar, -1)
            pen.text(img, f"{classes[k]} {p * 100:.0f}%", (x + pen.px(6), by + row - pen.px(7)), 0.6)


def draw_hud(img: np.ndarray, hud: Hud, rgb: bool = False) -> None:
    """The HUD figures in the top-left corner on a translucent dark panel, sized to the image
    (drawn before the faces, so a face's label near the corner stays on top)."""
    pen = _Pen(img.shape[0], img.shape[2], rgb)
    lines = hud.lines()
    line, margin = pen.px(30), pen.px(12)
    width = max(pen.text_size(text, 0.7)[0] for text in lines) + 2 * margin
    height = min(img.shape[0], line * len(lines) + pen.px(12))
    panel = img[:height, : min(width, img.shape[1])]
    panel[...] = (panel * 0.5).astype(img.dtype)
    if img.shape[2] == 4:
        panel[..., 3] = np.maximum(panel[..., 3], 110)
    for i, text in enumerate(lines):
        pen.text(img, text, (margin, pen.px(30) + line * i), 0.7)


def render(
    frame: np.ndarray,
    faces: list[FaceResult],
    hud: Hud,
    classes: tuple[str, ...],
    top3: bool = True,
    size: tuple[int, int] | None = None,
    rgb: bool = False,
) -> np.ndarray:
    """The BGR frame scaled to `size` (w, h; default: its own size), aspect kept, with HUD and
    faces drawn on the picture at that resolution; letterbox bars are black. `rgb`: return RGB (the
    small frame is converted before it is scaled up, which is cheaper)."""
    h, w = frame.shape[:2]
    size = size or (w, h)
    x, y, fw, fh = fit_rect((w, h), size)
    if rgb:
        frame = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    if (fw, fh) == (w, h):
        picture = frame.copy() if not rgb else frame
    else:
        interpolation = cv2.INTER_AREA if fw < w else cv2.INTER_LINEAR
        picture = cv2.resize(frame, (fw, fh), interpolation=interpolation)
    draw_hud(picture, hud, rgb)
    draw_faces(picture, faces, classes, top3, fw / w, rgb)
    if (fw, fh) == tuple(size):
        return picture
    right, bottom = size[0] - fw - x, size[1] - fh - y
    return cv2.copyMakeBorder(picture, y, bottom, x, right, cv2.BORDER_CONSTANT, value=(0, 0, 0))


def render_overlay_rgba(
    frame_size: tuple[int, int],
    faces: list[FaceResult],
    hud: Hud,
    classes: tuple[str, ...],
    top3: bool = True,
    size: tuple[int, int] | None = None,
) -> np.ndarray:
    """A transparent RGBA layer (for picamera2's DRM preview) with the same drawings, `size`
    (w, h) pixels with the frame's aspect ratio (the preview stretches it over the picture),
    default the frame's own size."""
    fw, fh = frame_size
    w, h = size or frame_size
    layer = np.zeros((h, w, 4), np.uint8)
    draw_hud(layer, hud, rgb=True)
    draw_faces(layer, faces, classes, top3, w / fw, rgb=True)
    return layer

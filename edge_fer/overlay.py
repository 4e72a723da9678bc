"""Drawing: face boxes with smoothed label and confidence, optional top-3 bars, and a HUD."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from edge_fer.results import FaceResult

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
FONT = cv2.FONT_HERSHEY_SIMPLEX


@dataclass
class Hud:
    """The figures in the top-left corner."""

    frame_ms: float
    detect_ms: float
    classify_ms: float
    fps: float


def _text(
    img: np.ndarray,
    text: str,
    org: tuple[int, int],
    scale: float,
    colour: tuple[int, int, int],
    thickness: int = 1,
) -> None:
    cv2.putText(img, text, org, FONT, scale, (0, 0, 0), thickness + 2, cv2.LINE_AA)
    cv2.putText(img, text, org, FONT, scale, colour, thickness, cv2.LINE_AA)


def draw_faces(
    img: np.ndarray, faces: list[FaceResult], classes: tuple[str, ...], top3: bool = False
) -> None:
    """Draw each face's box and smoothed label (with its confidence) onto a BGR(A) image."""
    scale = max(0.45, img.shape[0] / 900)
    for face in faces:
        x, y, w, h = face.box
        colour = COLOURS.get(face.smoothed, (255, 255, 255))
        colour4 = (*colour, 255)[: img.shape[2]]
        cv2.rectangle(img, (x, y), (x + w, y + h), colour4, 2)
        confidence = float(face.probs[classes.index(face.smoothed)])
        _text(
            img, f"#{face.id} {face.smoothed} {confidence * 100:.0f}%", (x, max(14, y - 6)), scale, colour4, 1
        )
        if top3:
            order = np.argsort(face.probs)[::-1][:3]
            for row, k in enumerate(order):
                by = y + h + 6 + row * 14
                length = int(w * float(face.probs[k]))
                cv2.rectangle(
                    img, (x, by), (x + length, by + 10), (*COLOURS[classes[k]], 255)[: img.shape[2]], -1
                )
                _text(img, classes[k], (x + w + 4, by + 9), 0.35, (255, 255, 255, 255)[: img.shape[2]])


def draw_hud(img: np.ndarray, hud: Hud) -> None:
    """Frame time, detection and inference time and FPS in the top-left corner."""
    lines = [
        f"FPS {hud.fps:5.1f}",
        f"frame {hud.frame_ms:5.1f} ms",
        f"detect {hud.detect_ms:5.1f} ms",
        f"infer {hud.classify_ms:5.2f} ms",
    ]
    white = (255, 255, 255, 255)[: img.shape[2]]
    for i, line in enumerate(lines):
        _text(img, line, (8, 20 + 18 * i), 0.5, white, 1)


def render(
    frame: np.ndarray, faces: list[FaceResult], hud: Hud, classes: tuple[str, ...], top3: bool = False
) -> np.ndarray:
    """A copy of the BGR frame with faces and HUD drawn on it."""
    out = frame.copy()
    draw_faces(out, faces, classes, top3)
    draw_hud(out, hud)
    return out


def render_overlay_rgba(
    size: tuple[int, int], faces: list[FaceResult], hud: Hud, classes: tuple[str, ...], top3: bool = False
) -> np.ndarray:
    """A transparent RGBA layer (for picamera2's DRM preview) with the same drawings."""
    w, h = size
    layer = np.zeros((h, w, 4), np.uint8)
    draw_faces(layer, faces, classes, top3)
    draw_hud(layer, hud)
    # Drawn in BGR order like everything else; the preview wants RGBA.
    return layer[:, :, [2, 1, 0, 3]]

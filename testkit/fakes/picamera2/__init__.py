"""A stand-in for picamera2 with the same API surface edge-fer uses.

It follows picamera2's real interfaces: `Picamera2(camera_num)`, the static
`global_camera_info()`, `create_preview_configuration(main=, lores=, controls=,
buffer_count=)`, `configure`, `start_preview(Preview.DRM, x=, y=, width=, height=)` (the
DrmPreview's window, default 640x480 at the top left, recorded in STATE["preview_window"]),
`stop_preview`, `start` (which runs the NULL preview when no preview runs: only one preview
at a time, as picamera2's event loop), `capture_request()` returning a request with
`make_array(stream)` and `release()`, `set_overlay(rgba)`, `stop`, `close`. "RGB888" arrays
are HxWx3 in BGR byte order; "YUV420" arrays are (H*3/2)xW planes with luminance first.
Frames come from the video named by FAKE_PICAMERA2_VIDEO (looped) or a moving synthetic
pattern. FAKE_PICAMERA2_HANG_AFTER=N makes the N+1th capture hang (a stuck driver);
FAKE_PICAMERA2_UNPLUG_AFTER=N makes it fail and the camera vanish from global_camera_info()
(a pulled ribbon cable).
"""

from __future__ import annotations

import enum
import os

import cv2
import numpy as np

__all__ = ["Picamera2", "Preview"]

STATE = {
    "opened": 0,
    "overlays": 0,
    "fail_after": None,
    "captured": 0,
    "preview": None,
    "preview_window": None,
    "unplugged": False,
}
# The keyword arguments picamera2's preview classes take (start_preview forwards its own).
_PREVIEW_ARGS = {"x", "y", "width", "height", "transform"}


def _unplugged_by_file() -> bool:
    """FAKE_PICAMERA2_UNPLUG_FILE=PATH: the camera is unplugged while PATH exists (fault runs)."""
    path = os.environ.get("FAKE_PICAMERA2_UNPLUG_FILE")
    return bool(path) and os.path.exists(path)


class Preview(enum.Enum):
    NULL = 0
    DRM = 1
    QT = 2
    QTGL = 3


class _Request:
    def __init__(self, arrays: dict[str, np.ndarray]) -> None:
        self._arrays = arrays
        self.released = False

    def make_array(self, name: str) -> np.ndarray:
        if self.released:
            raise RuntimeError("request already released")
        return self._arrays[name]

    def release(self) -> None:
        self.released = True


class Picamera2:
    @staticmethod
    def global_camera_info() -> list[dict]:
        count = int(os.environ.get("FAKE_PICAMERA2_CAMERAS", "1"))
        if STATE["unplugged"] or _unplugged_by_file():
            count = 0
        return [
            {
                "Model": "imx708",
                "Location": 2,
                "Rotation": 180,
                "Id": "/base/axi/pcie@120000/rp1/i2c@88000/imx708@1a",
                "Num": i,
            }
            for i in range(count)
        ]

    def __init__(self, camera_num: int = 0) -> None:
        if camera_num >= len(self.global_camera_info()):
            raise IndexError("list index out of range")
        self.camera_num = camera_num
        self.config: dict | None = None
        self.started = False
        self.overlay: np.ndarray | None = None
        self._preview: object | None = None  # the running preview (its event loop)
        video = os.environ.get("FAKE_PICAMERA2_VIDEO")
        self._video = cv2.VideoCapture(video) if video else None
        self._t = 0
        STATE["opened"] += 1

    def create_preview_configuration(
        self,
        main: dict | None = None,
        lores: dict | None = None,
        raw: dict | None = None,
        controls: dict | None = None,
        buffer_count: int = 4,
        **_: object,
    ) -> dict:
        main = {"format": "XBGR8888", "size": (640, 480), **(main or {})}
        if lores is not None:
            lores = {"format": "YUV420", **lores}
            if lores["size"][0] > main["size"][0] or lores["size"][1] > main["size"][1]:
                raise RuntimeError("lores stream dimensions may not exceed main stream")
        return {
            "use_case": "preview",
            "main": main,
            "lores": lores,
            "raw": raw,
            "controls": controls or {},
            "buffer_count": buffer_count,
        }

    def configure(self, config: dict) -> None:
        if self.started:
            raise RuntimeError("Camera must be stopped before configuring")
        self.config = config

    def start_preview(self, preview: Preview | bool = False, **kwargs: object) -> None:
        if self._preview is not None:
            raise RuntimeError("An event loop is already running")
        unknown = set(kwargs) - _PREVIEW_ARGS
        if unknown:  # the preview class's constructor refuses them
            raise TypeError(f"__init__() got an unexpected keyword argument {sorted(unknown)[0]!r}")
        preview = Preview.NULL if not preview else preview
        if preview is Preview.DRM:
            # DrmPreview(x=0, y=0, width=640, height=480): the window it letterboxes into.
            STATE["preview_window"] = (
                kwargs.get("x", 0),
                kwargs.get("y", 0),
                kwargs.get("width", 640),
                kwargs.get("height", 480),
            )
        self._preview = preview
        STATE["preview"] = preview

    def stop_preview(self) -> None:
        if self._preview is None:
            raise RuntimeError("No preview specified.")
        self._preview = None

    def start(self) -> None:
        if self.config is None:
            raise RuntimeError("Camera has not been configured")
        if self._preview is None:  # picamera2 runs a NULL preview's event loop by default
            self.start_preview(Preview.NULL)
        self.started = True

    def _frame(self, size: tuple[int, int]) -> np.ndarray:
        if self._video is not None:
            ok, image = self._video.read()
            if not ok:
                self._video.set(cv2.CAP_PROP_POS_FRAMES, 0)
                ok, image = self._video.read()
            return cv2.resize(image, size)
        w, h = size
        image = np.full((h, w, 3), 90, np.uint8)
        cv2.circle(image, ((self._t * 7) % w, h // 2), 40, (200, 180, 160), -1)
        return image

    def capture_request(self) -> _Request:
        if not self.started:
            raise RuntimeError("Camera is not running")
        STATE["captured"] += 1
        hang_after = os.environ.get("FAKE_PICAMERA2_HANG_AFTER")
        if hang_after is not None and STATE["captured"] > int(hang_after):
            import time

            time.sleep(3600)  # a hung camera: capture_request never returns
        if _unplugged_by_file():
            raise RuntimeError("Camera frontend has timed out!")
        unplug_after = os.environ.get("FAKE_PICAMERA2_UNPLUG_AFTER")
        if unplug_after is not None and STATE["captured"] > int(unplug_after):
            STATE["unplugged"] = True  # the ribbon cable came out: gone until the process ends
            raise RuntimeError("Camera frontend has timed out!")
        if STATE["fail_after"] is not None and STATE["captured"] > STATE["fail_after"]:
            raise RuntimeError("Camera frontend has timed out!")
        self._t += 1
        main_cfg = self.config["main"]
        bgr = self._frame(tuple(main_cfg["size"]))
        arrays = {
            "main": bgr
            if main_cfg["format"] in ("RGB888", "BGR888")
            else np.dstack([bgr, np.full(bgr.shape[:2], 255, np.uint8)])
        }
        if self.config["lores"] is not None:
            w, h = self.config["lores"]["size"]
            y = cv2.cvtColor(cv2.resize(bgr, (w, h)), cv2.COLOR_BGR2GRAY)
            arrays["lores"] = np.vstack([y, np.full((h // 2, w), 128, np.uint8)])
        return _Request(arrays)

    def set_overlay(self, overlay: np.ndarray | None) -> None:
        if overlay is not None and (overlay.ndim != 3 or overlay.shape[2] != 4):
            raise RuntimeError("Overlay must be a 4-channel image")
        self.overlay = overlay
        STATE["overlays"] += 1

    def stop(self) -> None:
        self.started = False

    def close(self) -> None:
        if self._preview is not None:
            self.stop_preview()
        self.started = False
        if self._video is not None:
            self._video.release()

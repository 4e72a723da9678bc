"""The Camera Module 3 (IMX708) through picamera2, and its DRM preview's geometry.

Source kind `picamera2` (config section `camera`): `auto` tries it first, when picamera2 is
installed and sees a camera at `camera.index`.
"""

from __future__ import annotations

import contextlib
import logging
import operator
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edge_fer.sources.base import (
    CaptureError,
    FrameSource,
    RawFrame,
    SourceKind,
    SourceSettings,
    register_source,
)
from edge_fer.sources.frames import FrameCheck, check_lores

log = logging.getLogger(__name__)


Window = tuple[int, int, int, int]  # (x, y, w, h) on the screen
# picamera2's DrmPreview window when start_preview is given none: 640x480 at the top left.
DRM_DEFAULT_WINDOW: Window = (0, 0, 640, 480)
DRM_MAX_SIDE = 8192  # larger than any mode the Pi 5 drives (4Kp60 is 3840x2160)


def drm_screen_size(drm: Path = Path("/sys/class/drm")) -> tuple[int, int] | None:
    """The preferred mode (w, h) of the first connected screen (HDMI 0 first), or None."""
    for connector in sorted(drm.glob("card*-*")):
        try:
            if (connector / "status").read_text().strip() != "connected":
                continue
            mode = (connector / "modes").read_text().split()[0]
            w, h = (int(v) for v in mode.split("x")[:2])
        except (OSError, ValueError, IndexError):
            continue
        if w > 0 and h > 0:
            return w, h
    return None


def drm_window(window: object, screen: tuple[int, int] | None = None) -> Window | None:
    """`window` (x, y, w, h) as four ints the DRM preview can use, clipped to `screen` (w, h)
    when that is known; None when it is unusable (not four integers, a negative position, a
    zero or negative size, off the screen)."""
    try:
        x, y, w, h = (operator.index(v) for v in window)  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        return None
    if x < 0 or y < 0 or w <= 0 or h <= 0:
        return None
    if screen is not None and screen[0] > 0 and screen[1] > 0:
        sw, sh = screen
        if x >= sw or y >= sh:
            return None
        w, h = min(w, sw - x), min(h, sh - y)
    if w > DRM_MAX_SIDE or h > DRM_MAX_SIDE:
        return None
    return x, y, w, h


def drm_picture_rect(frame_size: tuple[int, int], window: Window) -> Window:
    """Where picamera2's DRM preview shows a (w, h) frame inside `window`: scaled to fit with
    its aspect ratio kept, centred (DrmPreview.render_drm letterboxes with this integer
    arithmetic, and stretches the overlay over the same rectangle)."""
    fw, fh = frame_size
    x, y, w, h = window
    if fw <= 0 or fh <= 0:
        return window
    if fw * h > w * fh:
        new_h = w * fh // fw
        y, h = y + (h - new_h) // 2, new_h
    else:
        new_w = h * fw // fh
        x, w = x + (w - new_w) // 2, new_w
    return x, y, max(1, w), max(1, h)


class Picamera2Source:
    """Camera Module 3 (IMX708) through picamera2: a BGR main stream for the overlay and
    classification, a YUV420 low-resolution stream whose Y plane feeds face detection."""

    def __init__(
        self,
        index: int,
        main_size: tuple[int, int],
        lores_size: tuple[int, int],
        fps: float,
        screen: Callable[[], tuple[int, int] | None] = drm_screen_size,
    ) -> None:
        self.name = f"picamera2:{index}"
        self.index, self.main_size, self.lores_size, self.fps = index, main_size, lores_size, fps
        self.camera: Any = None
        self.check = FrameCheck(source=self.name)  # the registry gives it the config's limits
        self._drm_preview = False
        self._screen = screen  # the HDMI screen's size, to keep the preview's window on it
        # Where the DRM preview letterboxes the main stream (x, y, w, h); None: no preview.
        self.preview_window: Window | None = None

    @staticmethod
    def available(index: int = 0) -> bool:
        try:
            from picamera2 import Picamera2
        except ImportError:
            return False
        return len(Picamera2.global_camera_info()) > index

    def open(self) -> None:
        try:
            from picamera2 import Picamera2
        except ImportError:
            raise CaptureError(
                "picamera2 is not installed; on Raspberry Pi OS run "
                "'sudo apt install python3-picamera2' and create the venv with "
                "--system-site-packages"
            ) from None
        if len(Picamera2.global_camera_info()) <= self.index:
            raise CaptureError(
                f"no libcamera camera at index {self.index}; check the ribbon "
                "cable and 'rpicam-hello --list-cameras'"
            )
        camera = Picamera2(self.index)
        # "RGB888" is BGR byte order in memory, which is what OpenCV expects.
        config = camera.create_preview_configuration(
            main={"size": tuple(self.main_size), "format": "RGB888"},
            lores={"size": tuple(self.lores_size), "format": "YUV420"},
            controls={"FrameRate": float(self.fps)},
            buffer_count=4,
        )
        camera.configure(config)
        if self._drm_preview:
            self._start_drm_preview(camera)
        camera.start()
        self.camera = camera

    def preview_host(self) -> Picamera2Source:
        return self

    def enable_drm_preview(self, window: Window | None = None) -> None:
        """Show the camera's frames on the HDMI screen through DRM/KMS (from the next open, or
        now by restarting an open camera), letterboxed into `window` (x, y, w, h; e.g. the
        whole screen). A window off the screen is clipped to it; an unusable one (zero size,
        negative, not numbers) is logged and picamera2's default 640x480 is used."""
        checked = None
        if window is not None:
            screen = self._screen()
            checked = drm_window(window, screen)
            if checked is None:
                log.warning(
                    "picamera2: DRM preview window %r is unusable%s; using the default %dx%d",
                    window,
                    f" on a {screen[0]}x{screen[1]} screen" if screen else "",
                    *DRM_DEFAULT_WINDOW[2:],
                )
            elif checked != tuple(window):
                log.warning("picamera2: DRM preview window %r clipped to the screen: %r", window, checked)
        self._drm_preview = True
        self.preview_window = checked or DRM_DEFAULT_WINDOW
        if self.camera is not None:
            self.camera.stop()
            # start() runs picamera2's NULL preview (its event loop); only one can run.
            with contextlib.suppress(RuntimeError):
                self.camera.stop_preview()
            self._start_drm_preview(self.camera)
            self.camera.start()

    def _start_drm_preview(self, camera: Any) -> None:
        from picamera2 import Preview

        x, y, w, h = self.preview_window or DRM_DEFAULT_WINDOW
        camera.start_preview(Preview.DRM, x=x, y=y, width=w, height=h)

    def set_overlay(self, rgba: np.ndarray) -> None:
        """Put an RGBA layer over the DRM preview: picamera2 stretches it over the picture's
        rectangle (`drm_picture_rect`), so drawn at that size it is shown pixel for pixel."""
        if self.camera is not None:
            self.camera.set_overlay(rgba)

    def read(self) -> RawFrame | None:
        request = self.camera.capture_request()
        try:
            main = request.make_array("main")
            lores = request.make_array("lores")
        finally:
            request.release()
        image = self.check(main)
        if image is None:
            return None
        h = self.lores_size[1]
        # YUV420 arrives as a (h * 3/2, w) plane stack; the first h rows are luminance.
        lores_gray = check_lores(lores[:h, : self.lores_size[0]], image) if lores is not None else None
        return RawFrame(image, lores_gray)

    def close(self) -> None:
        if self.camera is not None:
            try:
                self.camera.stop()
                self.camera.close()
            finally:
                self.camera = None


def _build(spec: str, settings: SourceSettings) -> FrameSource:
    cam = settings.camera
    return Picamera2Source(cam.index, cam.main_size, cam.lores, cam.fps)


def _find(settings: SourceSettings) -> tuple[FrameSource | None, str]:
    if Picamera2Source.available(settings.camera.index):
        log.info("source auto: found a libcamera camera, using picamera2")
        return _build("picamera2", settings), ""
    return None, "picamera2 (not installed or no camera)"


register_source(
    SourceKind(
        name="picamera2",
        forms=("picamera2",),
        reads=("camera",),
        matches=lambda spec: spec == "picamera2",
        build=_build,
        find=_find,
        auto_rank=10,
    )
)

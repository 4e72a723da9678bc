"""Frame sources: the IMX708 via picamera2, USB webcams and video files via OpenCV.

`open_source` picks one from the `source` setting; `auto` tries picamera2, then a webcam,
then the fallback video, and logs what it found. `ReconnectingSource` reopens a source
that drops out, with exponential back-off, so a loose cable is never fatal.
"""

from __future__ import annotations

import logging
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from edge_fer.config import CameraConfig

log = logging.getLogger(__name__)


class CaptureError(RuntimeError):
    """No usable source; the message says what was tried and what to do."""


class EndOfStream(Exception):
    """A non-looping video file ran out of frames: a clean stop."""


@dataclass
class RawFrame:
    image: np.ndarray  # BGR, HxWx3
    lores_gray: np.ndarray | None = None  # the camera's own low-resolution stream, if any


class FrameSource(Protocol):
    """Where frames come from: open, read until closed."""

    name: str

    def open(self) -> None: ...

    def read(self) -> RawFrame | None:
        """The next frame, or None when a grab failed (the caller counts and skips it)."""
        ...

    def close(self) -> None: ...

    def preview_host(self) -> Picamera2Source | None:
        """The source itself when it can show its own DRM preview with an overlay, else None."""
        ...


class Picamera2Source:
    """Camera Module 3 (IMX708) through picamera2: a BGR main stream for the overlay and
    classification, a YUV420 low-resolution stream whose Y plane feeds face detection."""

    def __init__(
        self, index: int, main_size: tuple[int, int], lores_size: tuple[int, int], fps: float
    ) -> None:
        self.name = f"picamera2:{index}"
        self.index, self.main_size, self.lores_size, self.fps = index, main_size, lores_size, fps
        self.camera: Any = None
        self._drm_preview = False

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
            from picamera2 import Preview

            camera.start_preview(Preview.DRM)
        camera.start()
        self.camera = camera

    def preview_host(self) -> Picamera2Source:
        return self

    def enable_drm_preview(self) -> None:
        """Show the camera's frames on the HDMI screen through DRM/KMS (from the next open, or
        now by restarting an open camera)."""
        self._drm_preview = True
        if self.camera is not None:
            from picamera2 import Preview

            self.camera.stop()
            self.camera.start_preview(Preview.DRM)
            self.camera.start()

    def set_overlay(self, rgba: np.ndarray) -> None:
        """Put an RGBA layer over the DRM preview (the same size as the main stream)."""
        if self.camera is not None:
            self.camera.set_overlay(rgba)

    def read(self) -> RawFrame | None:
        request = self.camera.capture_request()
        try:
            main = request.make_array("main")
            lores = request.make_array("lores")
        finally:
            request.release()
        if main is None or main.ndim != 3:
            return None
        h = self.lores_size[1]
        # YUV420 arrives as a (h * 3/2, w) plane stack; the first h rows are luminance.
        lores_gray = lores[:h, : self.lores_size[0]] if lores is not None else None
        return RawFrame(main[:, :, :3], lores_gray)

    def close(self) -> None:
        if self.camera is not None:
            try:
                self.camera.stop()
                self.camera.close()
            finally:
                self.camera = None


class OpenCVSource:
    """A USB webcam (integer index) or a video file (path), read with cv2.VideoCapture."""

    def __init__(
        self,
        target: int | Path,
        loop: bool = False,
        size: tuple[int, int] | None = None,
        fps: float | None = None,
    ) -> None:
        self.target, self.loop, self.size, self.fps = target, loop, size, fps
        self.is_file = not isinstance(target, int)
        self.name = f"file:{target}" if self.is_file else f"webcam:{target}"
        self.capture: cv2.VideoCapture | None = None

    def _check_file(self) -> None:
        path = Path(self.target)
        try:
            mode = path.stat().st_mode
        except FileNotFoundError:
            raise CaptureError(
                f"video file {path} does not exist; set source to file:PATH with an existing video"
            ) from None
        except OSError as exc:
            raise CaptureError(
                f"video file {path} cannot be read ({exc.strerror}); check its permissions"
            ) from None
        if stat.S_ISDIR(mode):
            raise CaptureError(f"video source {path} is a directory; set source to file:PATH of a video file")
        if not stat.S_ISREG(mode):
            raise CaptureError(
                f"video source {path} is not a regular file (a FIFO or device); "
                "use a video file, or webcam:INDEX for a camera"
            )

    def open(self) -> None:
        if self.is_file:
            self._check_file()
        cap = cv2.VideoCapture(str(self.target) if self.is_file else self.target)
        if not cap.isOpened():
            cap.release()
            what = "video file" if self.is_file else "webcam"
            raise CaptureError(f"cannot open {what} {self.target}; check it is connected/readable")
        if not self.is_file and self.size:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.size[0])
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.size[1])
            if self.fps:
                cap.set(cv2.CAP_PROP_FPS, self.fps)
        if self.is_file:
            ok, first = cap.read()
            if not ok or first is None or first.ndim != 3:
                cap.release()
                raise CaptureError(
                    f"video file {self.target} has no readable frames; check it "
                    "plays (e.g. with ffprobe) or make one with "
                    "tools/make_demo_video.py"
                )
            cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
        self.capture = cap

    def read(self) -> RawFrame | None:
        assert self.capture is not None, "open() first"
        ok, image = self.capture.read()
        if not ok and self.is_file:
            if not self.loop:
                raise EndOfStream(self.name)
            self.capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, image = self.capture.read()
            if not ok:  # it played before: the file changed or went away; reconnect logic
                raise CaptureError(f"video file {self.target} stopped giving frames")
        if not ok or image is None or image.ndim != 3 or image.size == 0:
            return None
        return RawFrame(image)

    def preview_host(self) -> None:
        return None

    def close(self) -> None:
        if self.capture is not None:
            self.capture.release()
            self.capture = None


def _webcam_works(index: int) -> bool:
    cap = cv2.VideoCapture(index)
    try:
        return cap.isOpened() and cap.read()[0]
    finally:
        cap.release()


def make_source(
    spec: str, cam: CameraConfig, fallback_video: Path | None = None, loop_video: bool = True
) -> FrameSource:
    """Choose the frame source named by `spec` (auto: camera, webcam, then fallback video)."""
    if spec == "picamera2":
        return Picamera2Source(cam.index, cam.main_size, cam.lores_size, cam.fps)
    if spec.startswith("webcam"):
        index = int(spec.split(":", 1)[1]) if ":" in spec else 0
        return OpenCVSource(index, size=cam.main_size, fps=cam.fps)
    if spec.startswith("file:"):
        return OpenCVSource(Path(spec[5:]).expanduser(), loop=loop_video)
    tried = []
    if Picamera2Source.available(cam.index):
        log.info("source auto: found a libcamera camera, using picamera2")
        return Picamera2Source(cam.index, cam.main_size, cam.lores_size, cam.fps)
    tried.append("picamera2 (not installed or no camera)")
    if _webcam_works(cam.index):
        log.info("source auto: no picamera2 camera, using webcam %d", cam.index)
        return OpenCVSource(cam.index, size=cam.main_size, fps=cam.fps)
    tried.append(f"webcam {cam.index} (none that gives frames)")
    video = fallback_video
    if video is not None and Path(video).is_file():
        log.info("source auto: no camera found, playing fallback video %s", video)
        return OpenCVSource(Path(video), loop=loop_video)
    tried.append(f"fallback video {video} (missing)")
    raise CaptureError(
        "no frame source found; tried " + ", ".join(tried) + ". Connect a camera, "
        "or set source: file:PATH (python tools/make_demo_video.py makes one)"
    )


class ReconnectingSource:
    """Wraps a source: after `max_failures` failed grabs or an error it closes and reopens the
    source, waiting 0.5 s, 1 s, 2 s ... up to `max_backoff_s` between attempts. `should_stop`
    ends the waiting at once (SIGTERM during a reconnect); `wait(seconds)` is the sleep."""

    def __init__(
        self,
        source: FrameSource,
        max_backoff_s: float = 10.0,
        max_failures: int = 10,
        wait: Callable[[float], object] = time.sleep,
        should_stop: Callable[[], bool] = lambda: False,
        on_reconnect: Callable[[], None] = lambda: None,
    ) -> None:
        self.source = source
        self.name = source.name
        self.max_backoff_s, self.max_failures = max_backoff_s, max_failures
        self._wait, self._should_stop, self._on_reconnect = wait, should_stop, on_reconnect
        self.failures = 0
        self.reconnects = 0

    def open(self) -> None:
        self.source.open()

    def preview_host(self) -> Picamera2Source | None:
        return self.source.preview_host()

    def _reopen(self) -> None:
        delay = 0.5
        logged = False
        while not self._should_stop():
            self.source.close()
            if not logged:  # once per outage, not once per attempt
                log.warning(
                    "source %s dropped out; reopening with back-off up to %.1f s",
                    self.name,
                    self.max_backoff_s,
                )
                logged = True
            self._wait(delay)
            if self._should_stop():
                return
            try:
                self.source.open()
            except CaptureError as exc:
                log.debug("reopen failed: %s", exc)
                delay = min(delay * 2, self.max_backoff_s)
                continue
            self.reconnects += 1
            self.failures = 0
            self._on_reconnect()
            log.info("source %s reopened", self.name)
            return

    def read(self) -> RawFrame | None:
        try:
            frame = self.source.read()
        except EndOfStream:
            raise
        except Exception as exc:  # a driver error mid-stream: reconnect, never crash
            log.warning("source %s failed: %s", self.name, exc)
            frame = None
            self.failures = self.max_failures
        if frame is None:
            self.failures += 1
            if self.failures >= self.max_failures:
                self._reopen()
            return None
        self.failures = 0
        return frame

    def close(self) -> None:
        self.source.close()

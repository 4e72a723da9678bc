"""Frame sources: the IMX708 via picamera2, USB webcams, video files and network streams
(RTSP, HTTP MJPEG/HLS) via OpenCV.

`make_source` picks one from the `source` setting; `auto` tries picamera2, then a webcam,
then the fallback video, and logs what it found. `ReconnectingSource` reopens a source
that drops out, with exponential back-off, so a loose cable or a rebooting IP camera is never
fatal. Video files play at their own frame rate unless `pace: fast`.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import operator
import os
import stat
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote, urlsplit, urlunsplit

import cv2
import numpy as np

from edge_fer.config import (
    STREAM_SCHEMES,
    CameraConfig,
    ConfigError,
    FramesConfig,
    StreamConfig,
    checked_path,
)
from edge_fer.core.paths import SHIPPED_DEMO_VIDEO
from edge_fer.core.secrets import SecretError, read_secret
from edge_fer.core.user_input import InputRefused, user_url
from edge_fer.sources.frames import FrameCheck, check_lores, decode_jpeg, decode_size_refusal
from edge_fer.sources.http_stream import HttpCamera, HttpStreamError

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


class CaptureError(RuntimeError):
    """No usable source; the message says what was tried and what to do."""


class EndOfStream(Exception):
    """A non-looping video file ran out of frames: a clean stop."""


# Still images: the daemon refuses them (edge-fer-classify is for photos).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".pgm", ".ppm")


def mask_url(url: str) -> str:
    """`url` with any password replaced by ***, for logs and messages."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        user = parts.username or ""
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    except ValueError:
        return url.split("://", 1)[0] + "://***"


@contextlib.contextmanager
def quiet_opencv() -> Iterator[None]:
    """Silence OpenCV's own warnings (e.g. "can't open camera by index") for a probe."""
    logging_mod = getattr(getattr(cv2, "utils", None), "logging", None)
    if logging_mod is None:  # pragma: no cover - every OpenCV >= 4.5 has it
        yield
        return
    before = logging_mod.getLogLevel()
    logging_mod.setLogLevel(logging_mod.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        logging_mod.setLogLevel(before)


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
        self.check = FrameCheck(source=self.name)  # make_source gives it the config's limits
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


class OpenCVSource:
    """A USB webcam (integer index) or a video file (path), read with cv2.VideoCapture."""

    def __init__(
        self,
        target: int | Path,
        loop: bool = False,
        size: tuple[int, int] | None = None,
        fps: float | None = None,
        realtime: bool = False,
        sleep: Callable[[float], object] = time.sleep,
    ) -> None:
        self.target, self.loop, self.size, self.fps = target, loop, size, fps
        self.is_file = not isinstance(target, int)
        self.name = f"file:{target}" if self.is_file else f"webcam:{target}"
        self.capture: cv2.VideoCapture | None = None
        self.check = FrameCheck(source=self.name)  # make_source gives it the config's limits
        # A file plays at its own frame rate when `realtime` (a live camera paces itself).
        self.realtime = realtime and self.is_file
        self._sleep = sleep
        self._period = 0.0
        self._due: float | None = None
        self.paced_wait_s = 0.0  # how long the last read slept to keep the file's pace

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
            raise CaptureError(
                f"video source {path} is a directory; set source to file:PATH of a video file "
                f"(for a folder of photos: edge-fer-classify {path})"
            )
        if path.suffix.lower() in IMAGE_SUFFIXES:
            raise CaptureError(
                f"source file:{path} is a still image, not a video; classify photos with "
                f"edge-fer-classify {path}"
            )
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
            # Before a frame is decoded: a video too large to decode within the memory budget.
            refusal = decode_size_refusal(
                cap.get(cv2.CAP_PROP_FRAME_WIDTH),
                cap.get(cv2.CAP_PROP_FRAME_HEIGHT),
                self.check.limits,
                f"video file {self.target}",
            )
            if refusal is not None:
                cap.release()
                raise CaptureError(refusal)
            ok, first = cap.read()
            if not ok or first is None or first.ndim != 3:
                cap.release()
                raise CaptureError(
                    f"video file {self.target} has no readable frames; check it "
                    "plays (e.g. with ffprobe) or pick another video"
                )
            cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            fps = cap.get(cv2.CAP_PROP_FPS)
            self._period = 1.0 / fps if 0 < fps <= 1000 else 1.0 / 30
            self._due = None
        self.capture = cap

    def _pace(self) -> None:
        """Wait until this frame is due at the file's frame rate; a late frame restarts the
        clock instead of rushing the next ones."""
        now = time.monotonic()
        self.paced_wait_s = 0.0
        if self._due is None or now - self._due > self._period:
            self._due = now
        elif self._due > now:
            self.paced_wait_s = self._due - now
            self._sleep(self.paced_wait_s)
        self._due += self._period

    def read(self) -> RawFrame | None:
        assert self.capture is not None, "open() first"
        if self.realtime:
            self._pace()
        ok, image = self.capture.read()
        if not ok and self.is_file:
            if not self.loop:
                raise EndOfStream(self.name)
            self.capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, image = self.capture.read()
            if not ok:  # it played before: the file changed or went away; reconnect logic
                raise CaptureError(f"video file {self.target} stopped giving frames")
        image = self.check(image) if ok else None
        return RawFrame(image) if image is not None else None

    def preview_host(self) -> None:
        return None

    def close(self) -> None:
        if self.capture is not None:
            self.capture.release()
            self.capture = None


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


class NetworkSource:
    """An RTSP or HTTP(S) stream (IP camera, phone app, go2rtc/Frigate restream, MJPEG, HLS)
    through OpenCV's FFmpeg backend.

    A reader thread keeps only the newest frame, so a slow pipeline never falls behind a live
    camera; `read` waits at most `read_timeout_s` for a new one and then raises CaptureError
    (the reconnect loop takes over), so a stalled or vanished stream is never a hang. The
    password comes from `stream.password_file`; `name` and every message show the URL with
    no password.
    """

    def __init__(self, url: str, stream: StreamConfig) -> None:
        self.url = url
        self.name = mask_url(url)
        self.stream = stream
        self.interrupted: Callable[[], bool] = lambda: False
        self._lock = threading.Condition()
        self._frame: np.ndarray | None = None
        self._fresh = False
        self._error: str | None = None
        self._thread: threading.Thread | None = None
        self._http: HttpCamera | None = None
        self._stop = threading.Event()
        self._credentialed = self._with_credentials()
        self.check = FrameCheck(source=self.name)  # make_source gives it the config's limits

    def _with_credentials(self) -> str:
        """The URL to open: with stream.username and the password file's password inserted."""
        if self.stream.username is None:
            return self.url
        password = ""
        if self.stream.password_file is not None:
            try:
                password = read_secret(self.stream.password_file, "stream.password_file")
            except SecretError as exc:  # the config names a bad file: a config error (exit 2)
                raise ConfigError(str(exc)) from None
        parts = urlsplit(self.url)
        userinfo = quote(self.stream.username, safe="") + (":" + quote(password, safe="") if password else "")
        netloc = f"{userinfo}@{parts.netloc}"
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))

    def _capture(self) -> cv2.VideoCapture:
        if urlsplit(self.url).scheme.startswith("rtsp"):
            # Read at open time by OpenCV's FFmpeg backend: TCP survives lossy Wi-Fi, UDP is
            # what some old cameras speak.
            os.environ["OPENCV_FFMPEG_CAPTURE_OPTIONS"] = f"rtsp_transport;{self.stream.transport}"
        params = [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
            int(self.stream.open_timeout_s * 1000),
            cv2.CAP_PROP_READ_TIMEOUT_MSEC,
            int(self.stream.read_timeout_s * 1000),
        ]
        with quiet_opencv():
            return cv2.VideoCapture(self._credentialed, cv2.CAP_FFMPEG, params)

    def _fail(self, why: str, ready: threading.Event, stop: threading.Event) -> None:
        with self._lock:
            if not stop.is_set():  # a reader closed meanwhile speaks for a session that is over
                self._error = why
                self._lock.notify_all()
        ready.set()

    def _publish(self, image: np.ndarray, ready: threading.Event, stop: threading.Event) -> None:
        with self._lock:
            if not stop.is_set():
                self._frame, self._fresh = image, True
                self._lock.notify_all()
        ready.set()

    def _reader(self, ready: threading.Event, stop: threading.Event) -> None:
        """The reader thread of one open: `stop` is that open's own event, so a reader that
        outlives its close (blocked in a read) ends instead of feeding the next session."""
        if urlsplit(self.url).scheme.lower() in ("http", "https") and self._read_http(ready, stop):
            return
        cap = self._capture()
        try:
            if not cap.isOpened():
                self._fail("cannot connect", ready, stop)
                return
            refusal = decode_size_refusal(
                cap.get(cv2.CAP_PROP_FRAME_WIDTH),
                cap.get(cv2.CAP_PROP_FRAME_HEIGHT),
                self.check.limits,
                "the stream",
            )
            if refusal is not None:
                self._fail(refusal, ready, stop)
                return
            while not stop.is_set():
                ok, image = cap.read()
                if stop.is_set():
                    return
                if not ok or image is None:
                    self._fail("the stream ended or stopped sending frames", ready, stop)
                    return
                image = self.check(image)
                if image is not None:  # a degenerate frame is dropped; the stall timer runs on
                    self._publish(image, ready, stop)
        finally:
            cap.release()

    def _read_http(self, ready: threading.Event, stop: threading.Event) -> bool:
        """Read an MJPEG or snapshot camera with bounded memory (`HttpCamera`); False when
        the stream is of a kind FFmpeg reads (HLS, MPEG-TS...)."""
        camera = HttpCamera(
            self._credentialed,
            self.check.limits.max_part_bytes,
            self.stream.open_timeout_s,
            self.stream.read_timeout_s,
        )
        try:
            if not camera.open():
                return False
        except HttpStreamError as exc:
            self._fail(str(exc), ready, stop)
            return True
        with self._lock:
            if not stop.is_set():  # close() closes it, which ends a read blocked in it
                self._http = camera
        try:
            for part in camera.parts():
                if stop.is_set():
                    return True
                if part.body is None:
                    self.check.warn("part", f"dropped {part.dropped}")
                    continue
                image, why = decode_jpeg(part.body, self.check.limits)
                if image is None:
                    self.check.warn("decode", f"dropped {why}")
                    continue
                image = self.check(image)
                if image is not None:
                    self._publish(image, ready, stop)
            self._fail("the stream ended or stopped sending frames", ready, stop)
        except HttpStreamError as exc:
            self._fail(str(exc), ready, stop)
        except Exception as exc:  # noqa: BLE001 - a reader thread never dies with a traceback
            self._fail(f"reading the stream failed ({type(exc).__name__}: {exc})", ready, stop)
        finally:
            camera.close()
        return True

    def _wait(self, event: threading.Event, timeout_s: float) -> bool:
        """Wait for `event` in short slices so a stop request is seen within 0.1 s."""
        deadline = time.monotonic() + timeout_s
        while not event.is_set():
            left = deadline - time.monotonic()
            if left <= 0 or self.interrupted():
                return False
            event.wait(min(0.1, left))
        return True

    def open(self) -> None:
        self.close()
        # OpenCV's own FFmpeg warnings ("Stream timeout triggered ...") come from the reader
        # thread and repeat, unformatted, what this module logs once per outage.
        logging_mod = getattr(getattr(cv2, "utils", None), "logging", None)
        if logging_mod is not None and logging_mod.getLogLevel() > logging_mod.LOG_LEVEL_ERROR:
            logging_mod.setLogLevel(logging_mod.LOG_LEVEL_ERROR)
        self._stop = threading.Event()
        self._frame, self._fresh, self._error = None, False, None
        ready = threading.Event()
        self._thread = threading.Thread(
            target=self._reader, args=(ready, self._stop), name="stream-reader", daemon=True
        )
        self._thread.start()
        # FFmpeg's own timeouts bound the open; this bounds it again if FFmpeg ignores them.
        got = self._wait(ready, self.stream.open_timeout_s + self.stream.read_timeout_s)
        with self._lock:
            error, has_frame = self._error, self._frame is not None
        if not got or error is not None or not has_frame:
            self.close()
            if self.interrupted():
                raise CaptureError(f"stream {self.name}: opening was interrupted by a stop request")
            why = error or f"no frame within {self.stream.open_timeout_s + self.stream.read_timeout_s:g} s"
            if "max_decode_pixels" in why:  # the camera works: it is too large, and says the fix
                raise CaptureError(f"stream {self.name}: {why}")
            raise CaptureError(
                f"stream {self.name}: {why}; check the URL, that the camera is on and reachable, "
                "and stream.username / stream.password_file"
            )

    def read(self) -> RawFrame | None:
        deadline = time.monotonic() + self.stream.read_timeout_s
        with self._lock:
            while not self._fresh and self._error is None:
                if self.interrupted():
                    return None
                left = deadline - time.monotonic()
                if left <= 0:
                    why = f"; its frames are dropped: {self.check.last}" if self.check.last else ""
                    raise CaptureError(
                        f"stream {self.name}: no frame for {self.stream.read_timeout_s:g} s (stalled){why}"
                    )
                self._lock.wait(min(0.1, left))
            if self._fresh:
                self._fresh = False
                return RawFrame(self._frame)  # type: ignore[arg-type]
            raise CaptureError(f"stream {self.name}: {self._error}")

    def preview_host(self) -> None:
        return None

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            http, self._http = self._http, None
        if http is not None:  # unblocks a read waiting on the socket
            http.close()
        thread, self._thread = self._thread, None
        if thread is not None:
            # A read blocked in FFmpeg returns within its timeout and releases the capture
            # itself; the stop is not held up for it.
            thread.join(timeout=0.2)


def checked_url(url: str) -> str:
    """A stream URL through the user-input boundary (ConfigError otherwise): nothing that
    would crash OpenCV's bindings reaches FFmpeg, whoever built the source."""
    try:
        return user_url(url, "config key 'source':")
    except InputRefused as exc:
        raise ConfigError(str(exc)) from None


def make_source(
    spec: str,
    cam: CameraConfig,
    fallback_video: Path | None = None,
    loop_video: bool = True,
    stream: StreamConfig | None = None,
    realtime: bool = True,
    frames: FramesConfig | None = None,
    shipped_demo: Path = SHIPPED_DEMO_VIDEO,
) -> FrameSource:
    """Choose the frame source named by `spec` (auto: camera, webcam, then `fallback_chain`).
    `realtime`: video files play at their own frame rate (False: as fast as they decode).
    `frames`: the limits every frame is checked against where it enters."""
    source = _pick_source(spec, cam, fallback_video, loop_video, stream, realtime, shipped_demo)
    source.check = FrameCheck(frames, source.name)  # type: ignore[attr-defined]
    return source


def _pick_source(
    spec: str,
    cam: CameraConfig,
    fallback_video: Path | None,
    loop_video: bool,
    stream: StreamConfig | None,
    realtime: bool,
    shipped_demo: Path,
) -> FrameSource:
    if spec == "picamera2":
        return Picamera2Source(cam.index, cam.main_size, cam.lores, cam.fps)
    if spec.startswith("webcam"):
        index = int(spec.split(":", 1)[1]) if ":" in spec else 0
        return OpenCVSource(index, size=cam.webcam_size, fps=cam.fps)
    if spec.startswith("file:"):
        return OpenCVSource(checked_path("source", spec[5:]), loop=loop_video, realtime=realtime)
    if spec.split("://", 1)[0] in STREAM_SCHEMES:
        return NetworkSource(checked_url(spec), stream or StreamConfig())
    tried = []
    if Picamera2Source.available(cam.index):
        log.info("source auto: found a libcamera camera, using picamera2")
        return Picamera2Source(cam.index, cam.main_size, cam.lores, cam.fps)
    tried.append("picamera2 (not installed or no camera)")
    if _webcam_works(cam.index):
        log.info("source auto: no picamera2 camera, using webcam %d", cam.index)
        return OpenCVSource(cam.index, size=cam.webcam_size, fps=cam.fps)
    tried.append(f"webcam {cam.index} (none that gives frames)")
    if fallback_video is None:
        tried.append("no fallback video (fallback_video: null)")
    for video in fallback_chain(fallback_video, shipped_demo):
        if Path(video).is_file():
            what = "the shipped demo video" if video == shipped_demo else "fallback video"
            log.info("source auto: no camera found, playing %s %s", what, video)
            return OpenCVSource(Path(video), loop=loop_video, realtime=realtime)
        tried.append(f"fallback video {video} (missing)")
    raise CaptureError(
        "no frame source found; tried " + ", ".join(tried) + ". Connect a camera, "
        "or set source: file:PATH to a video"
    )


def fallback_chain(fallback_video: Path | None, shipped_demo: Path = SHIPPED_DEMO_VIDEO) -> list[Path]:
    """The videos `auto` plays when there is no camera, first found first: the configured
    `fallback_video` (by default the FER2013 demo, when it was built), then the demo that
    ships in the package. `fallback_video: null` turns both off."""
    if fallback_video is None:
        return []
    chain = [Path(fallback_video)]
    if Path(shipped_demo) != chain[0]:
        chain.append(Path(shipped_demo))
    return chain


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
        if isinstance(source, NetworkSource):
            source.interrupted = should_stop  # a stop request cuts a stream's waits short

    def open(self) -> None:
        self.source.open()

    def preview_host(self) -> Picamera2Source | None:
        return self.source.preview_host()

    @property
    def paced_wait_s(self) -> float:
        """The wrapped source's pacing sleep in the last read (a file played at its own
        frame rate), which the frame loop does not count as capture time."""
        return getattr(self.source, "paced_wait_s", 0.0)

    def _reopen(self) -> None:
        delay = 0.5
        logged = False
        started = time.monotonic()
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
                log.debug("reopen failed (next try in %.1f s): %s", min(delay * 2, self.max_backoff_s), exc)
                delay = min(delay * 2, self.max_backoff_s)
                continue
            self.reconnects += 1
            self.failures = 0
            self._on_reconnect()
            log.info("source %s reopened after %.1f s", self.name, time.monotonic() - started)
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

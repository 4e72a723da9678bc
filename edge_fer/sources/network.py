"""Network cameras: RTSP and HTTP(S) streams (IP cameras, phone apps, go2rtc/Frigate
restreams, MJPEG, HLS) through OpenCV's FFmpeg backend or this package's MJPEG reader.

Source kind `stream` (`source: rtsp://...`, `rtsps://`, `http://`, `https://`; config
section `stream`). Never picked by `auto`: a stream is always named.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from urllib.parse import quote, urlsplit, urlunsplit

import cv2
import numpy as np

from edge_fer.config import STREAM_SCHEMES, ConfigError, StreamConfig
from edge_fer.core.secrets import SecretError, read_secret
from edge_fer.core.user_input import InputRefused, user_url
from edge_fer.sources.base import (
    CaptureError,
    FrameSource,
    RawFrame,
    SourceKind,
    SourceSettings,
    quiet_opencv,
    register_source,
)
from edge_fer.sources.frames import FrameCheck, decode_jpeg, decode_size_refusal
from edge_fer.sources.http_stream import HttpCamera, HttpStreamError


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
        self.check = FrameCheck(source=self.name)  # the registry gives it the config's limits

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


def _build(spec: str, settings: SourceSettings) -> FrameSource:
    return NetworkSource(checked_url(spec), settings.stream)


register_source(
    SourceKind(
        name="stream",
        forms=tuple(f"{scheme}://..." for scheme in STREAM_SCHEMES),
        reads=("stream",),
        matches=lambda spec: spec.split("://", 1)[0] in STREAM_SCHEMES,
        build=_build,
        auto_rank=50,  # only orders the list of forms: a stream has no `find`
    )
)

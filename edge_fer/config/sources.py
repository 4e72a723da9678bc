"""Config sections of where frames come from: the camera, network streams, and the limits on
every frame where it enters; and the `source` key's own checks."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_fer.config.base import ConfigError, checked_path
from edge_fer.core.safe_io import PathRefused, check_text
from edge_fer.core.schema import setting, shown
from edge_fer.core.user_input import InputRefused, user_url

SOURCE_PATTERN = re.compile(
    r"^(auto|picamera2|webcam(:\d+)?|file:.+|(rtsps?|https?)://.+)$", re.ASCII | re.DOTALL
)
MAX_CAMERA_INDEX = 1023  # /dev/video numbers and libcamera indices stay far below this


@dataclass
class CameraConfig:
    """The Camera Module (picamera2) or USB webcam settings."""

    index: int = setting(0, "libcamera camera / webcam number (0: the CAM/DISP 0 port)", ge=0)
    main_size: tuple[int, int] = setting(
        (2304, 1296),
        "picamera2 stream faces are read from and the overlay shows (the IMX708's 2x2-binned mode:"
        " a face 5 m away still has ~48 px)",
    )
    lores_size: tuple[int, int] | None = setting(
        None,
        "picamera2 stream the coarse face search runs on, the same shape as main_size (null:"
        " main_size scaled to 576 px wide)",
    )
    webcam_size: tuple[int, int] | None = setting(
        (1920, 1080), "size asked of a USB webcam; it gives the nearest it has (null: its default)"
    )
    fps: float = setting(30.0, "frames per second asked of the camera", gt=0, le=240)

    @property
    def lores(self) -> tuple[int, int]:
        """The lores stream's size: `lores_size`, or `main_size` scaled to 576 px wide (even
        sides, as YUV420 needs)."""
        if self.lores_size is not None:
            return self.lores_size
        w, h = self.main_size
        lw = min(576, w) // 2 * 2
        return max(2, lw), max(2, round(h * lw / w / 2) * 2)


@dataclass
class StreamConfig:
    """Network camera streams (source: rtsp://, rtsps://, http://, https://)."""

    username: str | None = setting(None, "user name for the camera (null: none, or the one in the URL)")
    password_file: Path | None = setting(
        None, "file holding the camera's password, mode 0600 (never the password in the URL or here)"
    )
    transport: str = setting("tcp", "RTSP over tcp (survives lossy Wi-Fi) | udp", choices=("tcp", "udp"))
    open_timeout_s: float = setting(5.0, "longest wait to connect before a retry", ge=0.5, le=120)
    read_timeout_s: float = setting(5.0, "a stream with no frame for this long is reopened", ge=0.5, le=120)


@dataclass
class FramesConfig:
    """Limits on every frame where it enters (camera, video, stream), and on decoding."""

    max_pixels: int = setting(
        8_294_400,
        "a frame with more pixels is scaled down to this many (one warning); 3840x2160 by default",
        ge=76_800,
        le=33_177_600,
    )
    max_aspect: float = setting(
        8.0, "a frame longer than this many times its other side is dropped (one warning)", ge=1.5, le=64
    )
    min_side: int = setting(16, "a frame with a side shorter than this many pixels is dropped", ge=1, le=4096)
    max_decode_pixels: int = setting(
        8_294_400,
        "a video file or stream decoded larger than this many pixels is refused when opened (its "
        "decoder would pass the unit's MemoryMax: 8K H.264 needs over 700 MB)",
        ge=76_800,
        le=33_177_600,
    )
    max_part_bytes: int = setting(
        8_388_608,
        "an HTTP (MJPEG) part or snapshot larger than this many bytes is dropped unread",
        ge=65_536,
        le=67_108_864,
    )


def check_source(spec: Any) -> str:
    """The source spec's boundary: the forms SOURCE_PATTERN allows, a webcam index within
    MAX_CAMERA_INDEX, a file path that is usable (`~` expands, length within limits)."""

    def bad(why: str = "") -> ConfigError:
        return ConfigError(
            f"config key 'source': {shown(spec)} is not valid{why}; expected auto, "
            "picamera2, webcam, webcam:INDEX, file:PATH, rtsp://HOST/PATH or http(s)://HOST/PATH"
        )

    if not isinstance(spec, str) or not SOURCE_PATTERN.match(spec) or "\0" in spec:
        raise bad()
    try:
        check_text(spec)
    except PathRefused as exc:
        raise bad(f" ({str(exc).replace('the path', 'it')})") from None
    if spec.startswith("webcam:"):
        digits = spec.split(":", 1)[1]
        if len(digits) > 4 or int(digits) > MAX_CAMERA_INDEX:
            raise bad(f" (a webcam number is 0 to {MAX_CAMERA_INDEX})")
    if spec.startswith("file:"):
        checked_path("source", spec[5:])
    return spec


def check_stream_url(url: str) -> None:
    """A network source URL: a known scheme, a host, no password (that lives in a file)."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        parts = None
    if parts is None or not parts.hostname or any(c in url for c in " \0\n\r\t"):
        raise ConfigError(
            "config key 'source': not a valid stream URL; expected e.g. rtsp://HOST:554/PATH "
            "or http://HOST:8080/video.mjpg"
        )
    try:
        user_url(url, "config key 'source':")
    except InputRefused as exc:
        raise ConfigError(
            f"{exc}; expected e.g. rtsp://HOST:554/PATH or http://HOST:8080/video.mjpg"
        ) from None
    if parts.password is not None:
        raise ConfigError(
            "config key 'source' must not hold a password; put the user in stream.username and "
            "the password in a file named by stream.password_file (chmod 600)"
        )

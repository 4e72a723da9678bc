"""Typed daemon configuration, loaded from YAML and validated at start.

Each section is a dataclass; each field carries its one-line description and its limits
(`setting(...)`), so validation, the CLI's choices and `deploy/config.example.yaml` all come
from one definition. A bad key raises ConfigError naming the key, the bad value and what is
allowed. CLI flags are applied on top with `apply_overrides`.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import reprlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from edge_fer.core.paths import (
    DEFAULT_CONFIG,
    DEFAULT_STATS,
    PACKAGE_DIR,
    PROJECT_ROOT,
    SHIPPED_YUNET,
)
from edge_fer.core.safe_io import PathLock, PathRefused, check_distinct, check_text, read_bounded
from edge_fer.core.user_input import STREAM_SCHEMES, InputRefused, user_path, user_url
from edge_fer.core.user_input import shown as shown_input
from edge_fer.emotions.labels import LABEL_GROUPS

DEFAULT_CONFIG_PATH = DEFAULT_CONFIG
DEFAULT_MODEL = PACKAGE_DIR / "models" / "edge_fer_student.pte"
DEFAULT_DEMO_VIDEO = PROJECT_ROOT / "runs" / "demo" / "faces_640x480.mp4"
SOURCE_PATTERN = re.compile(
    r"^(auto|picamera2|webcam(:\d+)?|file:.+|(rtsps?|https?)://.+)$", re.ASCII | re.DOTALL
)
# An instance (edge-fer@NAME): part of file names, MQTT topics and ids, and a Prometheus label.
INSTANCE_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
MAX_THREADS = 16  # the Pi 5 has 4 cores; thousands of threads only slow start-up or crash
MAX_CAMERA_INDEX = 1023  # /dev/video numbers and libcamera indices stay far below this
# The config file's boundary: what a config may be before it is refused.
MAX_CONFIG_BYTES = 1 << 20
MAX_CONFIG_DEPTH = 32  # mappings and lists nested deeper than this are not a config
MAX_CONFIG_NODES = 10_000  # values after expanding YAML aliases (refuses "billion laughs")


class ConfigError(ValueError):
    """An invalid configuration value; the message names key, value and what is allowed."""


_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 80
_REPR.maxlevel = 3


def shown(value: Any) -> str:
    """A short repr for error messages (long strings, huge ints and deep lists cut)."""
    try:
        return _REPR.repr(value)
    except Exception:  # noqa: BLE001 - e.g. ints past Python's digit limit
        return f"<{type(value).__name__}>"


def checked_path(key: str, value: str | Path) -> Path:
    """A path from the config or a flag, through the user-input boundary (`user_path`): `~`
    expanded safely, UTF-8, no control characters, within the OS's length limits."""
    where = key if key.startswith("--") else f"config key '{key}':"
    try:
        return user_path(value, where)
    except InputRefused as exc:
        raise ConfigError(str(exc)) from None


def setting(
    default: Any = None,
    doc: str = "",
    *,
    factory: Any = None,
    gt: float | None = None,
    ge: float | None = None,
    lt: float | None = None,
    le: float | None = None,
    choices: tuple[str, ...] | None = None,
    example: Any = None,
) -> Any:
    """A config field with its description and limits (checked by `validate`)."""
    meta = {"doc": doc, "gt": gt, "ge": ge, "lt": lt, "le": le, "choices": choices, "example": example}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


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
class DetectorConfig:
    """Face detection."""

    kind: str = setting(
        "yunet",
        "yunet (CNN, finds more faces, faster) | haar (OpenCV's cascade)",
        choices=("haar", "yunet"),
    )
    yunet_model: Path | None = setting(
        None, "YuNet .onnx file; null: the one shipped inside the package (OpenCV Zoo, MIT)"
    )
    every_n_frames: int = setting(
        2, "detect every N frames; the IoU tracker carries faces between", ge=1, le=1000
    )
    detect_width: int = setting(
        480, "webcam/file frames are scaled to this width for detection", ge=32, le=8192
    )
    min_face: int = setting(
        16, "smallest face to track, in main-frame pixels (the side of its square box)", ge=1, le=4096
    )
    score_threshold: float = setting(0.6, "YuNet confidence threshold", gt=0, lt=1)
    track_zoom_px: int = setting(
        64,
        "each tracked face is looked for again in a window around it, scaled so the face is this"
        " many pixels (small faces zoomed in, big ones shrunk); 0: tracked faces are only found"
        " again by the coarse pass and the tiles",
        ge=0,
        le=256,
    )
    tile_zoom: float = setting(
        2.0,
        "one full-resolution tile per frame, in rotation over the frame, is scaled by this before"
        " detection: 2 finds faces from ~24 px, 1.5 from ~32 px, 1 from ~48 px; 0 turns tiles off"
        " (only faces of ~150 px and up on a 1080p frame are then found)",
        ge=0,
        le=4,
    )
    tile_size: int = setting(
        256,
        "side of a tile in main-frame pixels; smaller tiles cost less per frame but take more"
        " frames to sweep the frame",
        ge=64,
        le=4096,
    )

    @property
    def yunet_file(self) -> Path:
        """The YuNet model to load: `yunet_model`, or the shipped one."""
        return self.yunet_model if self.yunet_model is not None else SHIPPED_YUNET


@dataclass
class TrackerConfig:
    """Stable face ids between detections."""

    iou_threshold: float = setting(
        0.3, "overlap that keeps a face's id from one detection to the next", gt=0, lt=1
    )
    max_missed: int = setting(
        5, "detection rounds a face may be missed before its id is dropped", ge=1, le=10000
    )


@dataclass
class ModelConfig:
    """The emotion classifier."""

    path: Path | None = setting(
        None, "the int8 .pte program (metadata .json beside it); null: the model shipped inside the package"
    )
    threads: int = setting(
        1, "XNNPACK threads for the classifier (faces are tiny: 1 is best)", ge=1, le=MAX_THREADS
    )
    runtime: str = setting(
        "auto",
        "auto | native (torch-free C++ runner) | pybind (executorch's Python extension, imports torch)",
        choices=("auto", "native", "pybind"),
    )

    @property
    def file(self) -> Path:
        """The model file to load: `path`, or the shipped one."""
        return self.path if self.path is not None else DEFAULT_MODEL


@dataclass
class SmoothingConfig:
    """Per-face label smoothing."""

    window: int = setting(
        30,
        "rolling majority over the mean calibrated probabilities of each face's last K frames",
        ge=1,
        le=1000,
    )
    hysteresis: float = setting(
        0.3,
        "a face's label changes only when another label's mean probability beats it by this much",
        ge=0,
        le=0.5,
    )
    uncertain_below: float = setting(
        0.3,
        "a face is 'uncertain' while its label's mean probability is under this (0: always name a label)",
        ge=0,
        le=0.95,
    )
    groups: str = setting(
        "none",
        "publish coarser labels: none (the 7 emotions) | valence (positive, neutral, negative) | "
        "four (angry+disgust, fear+sad, happy+surprise, neutral)",
        choices=tuple(LABEL_GROUPS),
    )
    min_readable_px: int = setting(
        24,
        "faces smaller than this (main-frame pixels) are tracked and drawn but published as"
        " 'uncertain': the model reads them more than 10 points worse than 48 px faces"
        " (benchmarks/bench_range.py; 0: always name a label)",
        ge=0,
        le=512,
    )
    restart_below: float = setting(
        0.7,
        "restart a face's history when its look correlates below this with the previous frame's"
        " (someone else in the same place); 0 never restarts",
        ge=0,
        lt=1,
    )


@dataclass
class DisplayConfig:
    """Where the overlay is drawn."""

    mode: str = setting(
        "auto",
        "auto | drm (picamera2 preview + overlay) | window (SDL) | none",
        choices=("auto", "drm", "window", "none"),
    )
    fullscreen: bool = setting(
        True, "fill the screen with the picture (scaled, aspect kept); false: a resizable window"
    )
    top3: bool = setting(True, "bars under each face with its three most likely emotions")


@dataclass
class StatsConfig:
    """Live figures for edge-fer-monitor and systemd's STATUS line."""

    path: Path | None = setting(DEFAULT_STATS, "live stats JSON, rewritten about once a second (null: none)")
    interval_s: float = setting(1.0, "seconds between stats updates", ge=0.05, le=3600)
    window_s: float = setting(10.0, "latency percentiles and fps are over this window", ge=0.5, le=3600)


@dataclass
class EventsConfig:
    """One JSON line per frame (labels and numbers only)."""

    path: str | None = setting(None, "JSONL file to append to, '-' for stdout, null for none")


@dataclass
class ReportConfig:
    """The end-of-run summary."""

    path: Path | None = setting(None, "JSON file written when the daemon stops (null: none)")


@dataclass
class MqttConfig:
    """Home Assistant over MQTT: availability, emotions, faces and stats (never pixels)."""

    url: str | None = setting(None, "broker, mqtt://host:1883 or mqtts://host:8883 (null: off)")
    username: str | None = setting(None, "broker user name")
    password_file: Path | None = setting(
        None, "file holding the broker password (never the password itself in this file)"
    )
    client_id: str | None = setting(
        None, "MQTT client id, one per daemon (null: edge-fer-<hostname>[-<instance>]-<random>, new each run)"
    )
    topic_prefix: str | None = setting(None, "state topics go under this (null: edge-fer/<hostname>)")
    discovery_prefix: str = setting("homeassistant", "Home Assistant's discovery prefix")
    qos: int = setting(0, "QoS of state messages", ge=0, le=2)
    retain: bool = setting(False, "retain state messages on the broker")
    queue_size: int = setting(
        1000, "messages kept while the broker is slow; more are dropped and counted", ge=10, le=1_000_000
    )
    queue_bytes: int = setting(
        4_000_000,
        "bytes of messages kept while the broker is slow (well under the unit's MemoryMax)",
        ge=10_000,
        le=64_000_000,
    )


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


@dataclass
class MetricsConfig:
    """Prometheus /metrics endpoint."""

    port: int | None = setting(None, "TCP port for /metrics (null: off)", ge=1, le=65535)
    bind: str = setting("127.0.0.1", "address to listen on (0.0.0.0: all interfaces)")


@dataclass
class WebConfig:
    """The local web page (docs/web.md): live picture, faces, label mix, health; frames never stored."""

    enabled: bool = setting(False, "serve the page (off: no frame ever leaves the daemon this way)")
    bind: str = setting(
        "127.0.0.1", "address to listen on; any but a loopback address needs token_file (0.0.0.0: all)"
    )
    port: int = setting(8080, "TCP port (the same as metrics.port: one server for both)", ge=1, le=65535)
    token_file: Path | None = setting(
        None, "file holding the access token, mode 0600 (at least 16 characters; openssl rand -hex 16)"
    )
    fps: float = setting(5.0, "most pictures a second sent to a viewer", ge=0.2, le=15)
    width: int = setting(
        960, "widest picture sent, in pixels (smaller frames are sent as they are)", ge=160, le=3840
    )


def is_loopback(bind: str) -> bool:
    """True for an address only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    import ipaddress

    if bind.lower() in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(bind.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: whatever it resolves to may change


def check_web(web: WebConfig, metrics: MetricsConfig) -> None:
    """A page reachable from other machines needs a token; a port shared with /metrics, one bind."""
    if not web.enabled:
        return
    if not is_loopback(web.bind) and web.token_file is None:
        raise ConfigError(
            f"config key 'web.bind': {shown(web.bind)} lets other machines see the camera, so it needs "
            "web.token_file (a file holding a token, chmod 600); or bind 127.0.0.1"
        )
    if metrics.port == web.port and metrics.bind != web.bind:
        raise ConfigError(
            f"config key 'web.port': {web.port} is also metrics.port but web.bind {shown(web.bind)} is not "
            f"metrics.bind {shown(metrics.bind)}; one server listens on one address: set both alike"
        )


@dataclass
class Config:
    """The whole daemon configuration (/etc/edge-fer/config.yaml)."""

    source: str = setting(
        "auto",
        "auto | picamera2 | webcam | webcam:INDEX | file:PATH | rtsp://... | http(s)://...; auto "
        "tries the Camera Module, then a USB webcam, then fallback_video",
    )
    pace: str = setting(
        "realtime",
        "file sources: realtime (at the video's own fps) | fast (as fast as it decodes: benchmarks)",
        choices=("realtime", "fast"),
    )
    instance: str | None = setting(
        None,
        "this camera's name when one Pi runs several (edge-fer@NAME): stats path, MQTT device and "
        "the Prometheus camera label",
    )
    fallback_video: Path | None = setting(
        DEFAULT_DEMO_VIDEO,
        "a video to play when no camera is found; when it is missing, the demo that ships in the "
        "package (null: neither)",
        example=None,
    )
    loop_video: bool = setting(True, "restart a file source at its end")
    camera: CameraConfig = setting(factory=CameraConfig)
    stream: StreamConfig = setting(factory=StreamConfig)
    detector: DetectorConfig = setting(factory=DetectorConfig)
    tracker: TrackerConfig = setting(factory=TrackerConfig)
    model: ModelConfig = setting(factory=ModelConfig)
    smoothing: SmoothingConfig = setting(factory=SmoothingConfig)
    display: DisplayConfig = setting(factory=DisplayConfig)
    stats: StatsConfig = setting(factory=StatsConfig)
    events: EventsConfig = setting(factory=EventsConfig)
    report: ReportConfig = setting(factory=ReportConfig)
    mqtt: MqttConfig = setting(factory=MqttConfig)
    metrics: MetricsConfig = setting(factory=MetricsConfig)
    web: WebConfig = setting(factory=WebConfig)
    frames: FramesConfig = setting(factory=FramesConfig)
    console: str = setting(
        "auto",
        "one status line a second on a terminal: auto (when headless on a TTY, not under systemd) | on | off",
        choices=("auto", "on", "off"),
    )
    log_summary_s: float = setting(
        60.0,
        "seconds between one-line result summaries in the log when there is no console line "
        "(under systemd, nohup or a log file); 0: none",
        ge=0,
        le=86400,
    )
    record: Path | None = setting(None, "privacy: frames are never written unless this names a video file")
    reconnect_max_backoff_s: float = setting(10.0, "longest wait between camera reconnects", ge=0.1, le=3600)
    reload_timeout_s: float = setting(
        30.0,
        "a reload (SIGHUP) that has not built and probed the new pipeline by then is abandoned; "
        "the running config goes on",
        ge=1,
        le=600,
    )
    log_level: str = setting(
        "INFO", "DEBUG | INFO | WARNING | ERROR", choices=("DEBUG", "INFO", "WARNING", "ERROR")
    )


def _is_section(f: dataclasses.Field) -> bool:
    return f.default_factory is not dataclasses.MISSING and dataclasses.is_dataclass(f.default_factory)


def _field(dotted: str) -> dataclasses.Field:
    cls: Any = Config
    *parents, leaf = dotted.split(".")
    for p in parents:
        cls = next(f for f in dataclasses.fields(cls) if f.name == p).default_factory
    return next(f for f in dataclasses.fields(cls) if f.name == leaf)


def choices(dotted: str) -> tuple[str, ...]:
    """The allowed values of a choice key, e.g. choices('display.mode')."""
    allowed = _field(dotted).metadata["choices"]
    assert allowed is not None, f"{dotted} is not a choice key"
    return allowed


def _coerce(key: str, value: Any, annotation: str) -> Any:
    def bad(allowed: str) -> ConfigError:
        return ConfigError(f"config key '{key}': {shown(value)} is not valid; expected {allowed}")

    if value is None and "None" in annotation:
        return None
    # A None where a value is required fails the type's own check below, in its own words.
    base = annotation.replace(" | None", "")
    if base == "bool":
        if not isinstance(value, bool):
            raise bad("true or false")
        return value
    if base == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad("an integer")
        return value
    if base == "float":
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise bad("a finite number")
        return float(value)
    if base == "str":
        if not isinstance(value, str) or value == "":
            raise bad("a non-empty string")
        try:
            check_text(value)  # every string here reaches C libraries, topics or log lines
        except PathRefused as exc:
            reason = str(exc).replace("the path", "it")
            raise ConfigError(f"config key '{key}': {shown_input(value)} is not valid: {reason}") from None
        return value
    if base == "Path":
        if not isinstance(value, str | Path) or str(value) == "" or "\0" in str(value):
            raise bad("a file path")
        return checked_path(key, value)
    if base == "tuple[int, int]":
        if (
            not isinstance(value, list | tuple)
            or len(value) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and 0 < v <= 16384 for v in value)
        ):
            raise bad("[width, height] with two positive integers")
        return (int(value[0]), int(value[1]))
    raise bad(base)  # pragma: no cover - every annotation above is handled


def _build(cls: type, data: Any, prefix: str) -> Any:
    if not isinstance(data, dict):
        where = f"section '{prefix[:-1]}'" if prefix else "the config file"
        raise ConfigError(f"{where} must be a mapping of keys to values, got {shown(data)}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(k if isinstance(k, str) else shown(k) for k in data if k not in fields)
    if unknown:
        raise ConfigError(
            f"unknown config key '{prefix}{shown(unknown[0]).strip(chr(39))}'; "
            f"allowed keys here: {', '.join(fields)}"
        )
    kwargs = {}
    for name, value in data.items():
        f = fields[name]
        if _is_section(f):
            kwargs[name] = _build(f.default_factory, value, f"{prefix}{name}.")
        else:
            kwargs[name] = _coerce(prefix + name, value, str(f.type))
    return cls(**kwargs)


def _limits_text(meta: dict) -> str:
    """'a positive number', 'a number between 0 and 1', 'a number >= 0.05 and <= 3600'..."""
    if meta["gt"] == 0 and meta["lt"] == 1:
        return "a number between 0 and 1"
    parts, lower = [], ""
    if meta["gt"] == 0 or meta["ge"] == 1:
        lower = "a positive number"
    for op, sym in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")):
        if meta[op] is not None and not (lower and op in ("gt", "ge")):
            parts.append(f"{sym} {meta[op]:g}")
    if lower:
        return lower + (f" up to {meta['le']:g}" if meta["le"] is not None else "")
    return "a number " + " and ".join(parts)


def _check_limits(key: str, value: Any, meta: dict) -> None:
    if meta["choices"] is not None and value not in meta["choices"]:
        raise ConfigError(
            f"config key '{key}': {shown(value)} is not valid; expected one of {', '.join(meta['choices'])}"
        )
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return
    ok = (
        (meta["gt"] is None or value > meta["gt"])
        and (meta["ge"] is None or value >= meta["ge"])
        and (meta["lt"] is None or value < meta["lt"])
        and (meta["le"] is None or value <= meta["le"])
    )
    if not ok:
        raise ConfigError(f"config key '{key}': {shown(value)} is not valid; expected {_limits_text(meta)}")


def _walk(obj: Any, prefix: str = "") -> list[tuple[str, Any, dict]]:
    out = []
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if _is_section(f):
            out += _walk(value, f"{prefix}{f.name}.")
        else:
            out.append((prefix + f.name, value, dict(f.metadata)))
    return out


def flatten(config: Config) -> dict[str, Any]:
    """Every setting by its dotted key, e.g. {'smoothing.window': 7, ...}."""
    return {key: value for key, value, _ in _walk(config)}


def validate(config: Config) -> Config:
    """Check every field's limits and choices, and rules that span fields."""
    check_source(config.source)
    for key, value, meta in _walk(config):
        _check_limits(key, value, meta)
    if config.camera.index > MAX_CAMERA_INDEX:
        raise ConfigError(
            f"config key 'camera.index': {shown(config.camera.index)} is not valid; "
            f"expected a camera number from 0 to {MAX_CAMERA_INDEX}"
        )
    main, lores = config.camera.main_size, config.camera.lores
    if (
        lores[0] > main[0]
        or lores[1] > main[1]
        or abs(lores[0] * main[1] - lores[1] * main[0]) > 0.02 * main[0] * lores[1]
    ):
        raise ConfigError(
            f"config key 'camera.lores_size': {list(lores)} must be no larger than camera.main_size"
            f" {list(main)} and of its shape (faces found on it are boxed in main's pixels); e.g. null"
        )
    if config.events.path not in (None, "-"):
        checked_path("events.path", config.events.path)
    if config.source.split("://", 1)[0] in STREAM_SCHEMES:
        check_stream_url(config.source)
        if config.stream.username is not None and "@" in config.source.split("://", 1)[1].split("/", 1)[0]:
            raise ConfigError(
                "config key 'source' names a user and so does stream.username; keep only stream.username"
            )
    if config.stream.password_file is not None and config.stream.username is None:
        raise ConfigError("config key 'stream.password_file' needs stream.username; set both")
    if config.mqtt.url is not None:
        parse_mqtt_url(config.mqtt.url)
    check_mqtt_names(config.mqtt)
    check_web(config.web, config.metrics)
    if config.instance is not None:
        if not INSTANCE_PATTERN.match(config.instance):
            raise ConfigError(
                f"config key 'instance': {config.instance!r} is not valid; expected 1-32 of "
                "a-z, 0-9, _ and -, starting with a letter or digit (e.g. cam0)"
            )
        if config.stats.path == DEFAULT_STATS:  # one live stats file per camera
            config.stats.path = (
                DEFAULT_STATS.parent.with_name(f"edge-fer-{config.instance}") / DEFAULT_STATS.name
            )
    return config


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


# MQTT 3.1.1/5: strings are at most 65535 bytes; topics hold no wildcards or NUL. Tighter
# limits keep every topic (prefix + the longest suffix) well inside that.
MQTT_PREFIX_MAX_BYTES = 1024
MQTT_CLIENT_ID_MAX_BYTES = 256


def check_mqtt_names(mqtt: MqttConfig) -> None:
    """Topic prefixes, client id and user name that a broker will take."""
    for key in ("topic_prefix", "discovery_prefix"):
        value = getattr(mqtt, key)
        if value is None:
            continue
        size = len(value.encode("utf-8"))
        bad = next((c for c in ("#", "+", "\0") if c in value), None)
        if bad is not None or value.startswith("$") or not value.strip("/") or size > MQTT_PREFIX_MAX_BYTES:
            why = (
                f"holds {bad!r} (an MQTT wildcard or NUL)"
                if bad
                else f"is {size} bytes"
                if size > MQTT_PREFIX_MAX_BYTES
                else "starts with $ or has no topic level"
            )
            raise ConfigError(
                f"config key 'mqtt.{key}': {value!r} {why}; use plain topic levels such as "
                f"home/pi-door (at most {MQTT_PREFIX_MAX_BYTES} bytes, no #, + or $ at the start)"
            )
    if mqtt.client_id is not None:
        size = len(mqtt.client_id.encode("utf-8"))
        if size > MQTT_CLIENT_ID_MAX_BYTES or not mqtt.client_id.isprintable():
            raise ConfigError(
                f"config key 'mqtt.client_id' is not valid ({size} bytes or unprintable characters); "
                f"use at most {MQTT_CLIENT_ID_MAX_BYTES} printable characters, e.g. edge-fer-door"
            )
    if mqtt.username is not None and (len(mqtt.username.encode("utf-8")) > 65535 or "\0" in mqtt.username):
        raise ConfigError(
            "config key 'mqtt.username' is not valid; use a user name without NUL, under 64 KiB"
        )
    if mqtt.password_file is not None and mqtt.username is None:
        raise ConfigError("config key 'mqtt.password_file' needs mqtt.username; set both")


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


def parse_mqtt_url(url: str) -> tuple[str, int, bool]:
    """(host, port, tls) from mqtt://host[:port] or mqtts://host[:port]."""
    from urllib.parse import urlsplit

    def bad() -> ConfigError:
        return ConfigError(
            f"config key 'mqtt.url': {url!r} is not valid; expected mqtt://host[:port] or mqtts://host[:port]"
        )

    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise bad() from None
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname or parts.path not in ("", "/"):
        raise bad()
    if parts.username or parts.password:
        raise ConfigError(
            "config key 'mqtt.url' must not hold credentials; use mqtt.username and mqtt.password_file"
        )
    tls = parts.scheme == "mqtts"
    return parts.hostname, port or (8883 if tls else 1883), tls


class _Refused(Exception):
    """Raised inside the YAML loader: the file is not a config (the message says why)."""


class _ConfigLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses duplicate keys and deep nesting."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        try:
            if self._depth > MAX_CONFIG_DEPTH:
                raise _Refused(f"nests values deeper than {MAX_CONFIG_DEPTH} levels")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set[tuple[str, str]] = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                key = (key_node.tag, key_node.value)
                if key in seen:
                    raise _Refused(
                        f"has the key {shown(key_node.value)} twice in one mapping "
                        f"(line {key_node.start_mark.line + 1}); keep one"
                    )
                seen.add(key)
        return super().construct_mapping(node, deep)


def _expanded_size(root: yaml.Node) -> int:
    """How many values the document holds once aliases are expanded (a node counts once per
    reference); _Refused past MAX_CONFIG_NODES or when a value contains itself."""
    sizes: dict[int, int] = {}
    active: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        children: list[yaml.Node] = []
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        if done:
            active.discard(id(node))
            sizes[id(node)] = min(1 + sum(sizes[id(c)] for c in children), MAX_CONFIG_NODES + 1)
            continue
        if id(node) in sizes:
            continue
        active.add(id(node))
        stack.append((node, True))
        for child in children:
            if id(child) in active:
                raise _Refused("holds a value that contains itself (a recursive YAML alias)")
            if id(child) not in sizes:
                stack.append((child, False))
    if sizes[id(root)] > MAX_CONFIG_NODES:
        raise _Refused(f"expands to more than {MAX_CONFIG_NODES} values (YAML aliases)")
    return sizes[id(root)]


def parse_yaml(text: str, where: str) -> Any:
    """The YAML document in `text` (None when empty); every failure is a ConfigError that
    starts with `where`."""
    loader: _ConfigLoader | None = None
    try:
        loader = _ConfigLoader(text)  # its reader already refuses control characters
        node = loader.get_single_node()
        if node is None:
            return None
        _expanded_size(node)
        return loader.construct_document(node)
    except _Refused as exc:
        raise ConfigError(f"{where} {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{where} is not valid YAML{at}; fix its syntax") from None
    except RecursionError:
        raise ConfigError(f"{where} nests values too deeply to be a config") from None
    except Exception as exc:  # noqa: BLE001 - e.g. an integer past Python's digit limit
        raise ConfigError(f"{where} holds a value YAML cannot build ({shown(str(exc))}); fix it") from None
    finally:
        if loader is not None:
            loader.dispose()


def _read_text(path: Path) -> str:
    try:
        data = read_bounded(path, MAX_CONFIG_BYTES)
    except IsADirectoryError:
        raise ConfigError(f"config file {path} is a directory; pass --config with a YAML file") from None
    except PermissionError:
        raise ConfigError(
            f"config file {path} is not readable by this user; make it readable "
            "(e.g. chmod 0640 and chgrp edge-fer)"
        ) from None
    except PathRefused as exc:
        raise ConfigError(f"config file: {exc}; pass --config with a YAML file") from None
    except OSError as exc:
        raise ConfigError(
            f"config file {path} cannot be read ({exc.strerror or exc}); check the path"
        ) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"config file {path} is not UTF-8 text (bad byte at offset {exc.start}); save it as UTF-8"
        ) from None


def load_config(path: Path | None) -> Config:
    """Load and validate a YAML config; None or a missing default path gives the defaults.
    Every failure (unreadable or special file, bad YAML, bad value) is a ConfigError."""
    if path is None:
        return validate(Config())
    path = checked_path("--config", path)
    try:
        present = path.exists() or path.is_symlink()
    except OSError as exc:
        raise ConfigError(
            f"config file {path} cannot be read ({exc.strerror or exc}); check the path"
        ) from None
    if not present:
        if path == DEFAULT_CONFIG_PATH:
            return validate(Config())
        raise ConfigError(
            f"config file {path} does not exist; pass --config with an existing "
            "file (see deploy/config.example.yaml)"
        )
    data = parse_yaml(_read_text(path), f"config file {path}")
    if data is None:  # empty, or only comments
        return validate(Config())
    if not isinstance(data, dict):
        raise ConfigError(
            f"config file {path} must be a mapping of keys to values (e.g. 'source: auto'), "
            f"got {shown(data)}; an empty file gives the defaults"
        )
    return validate(_build(Config, data, ""))


def apply_overrides(config: Config, overrides: dict[str, Any]) -> Config:
    """Set dotted keys (e.g. 'display.mode') from CLI flags, then re-validate."""
    for dotted, value in overrides.items():
        if value is None:
            continue
        target = config
        *parents, leaf = dotted.split(".")
        for p in parents:
            target = getattr(target, p)
        setattr(target, leaf, _coerce(dotted, value, str(_field(dotted).type)))
    return validate(config)


# --- Output paths against each other and the inputs (at start and on every reload) ---------


def output_paths(config: Config) -> list[tuple[str, Path]]:
    """Every file the daemon writes under `config`, by the key that names it."""
    out: list[tuple[str, Path]] = []
    if config.events.path == "-":
        try:  # stdout redirected to a file is that file
            if os.path.isfile("/proc/self/fd/1"):
                out.append(("events.path '-' (stdout)", Path("/proc/self/fd/1")))
        except OSError:
            pass
    elif config.events.path is not None:
        out.append(("events.path", checked_path("events.path", config.events.path)))
    if config.report.path is not None:
        out.append(("report.path", config.report.path))
    if config.stats.path is not None:
        stats = config.stats.path
        out += [("stats.path", stats), ("the stats lock file", PathLock(stats).lock_path)]
    if config.record is not None:
        out.append(("record", config.record))
    return out


def input_paths(config: Config, config_path: Path | None) -> list[tuple[str, Path]]:
    """Every file the daemon reads under `config` (the config file itself included)."""
    found: list[tuple[str, Path | None]] = [
        ("the config file", config_path),
        (
            "the source video",
            checked_path("source", config.source[5:]) if config.source.startswith("file:") else None,
        ),
        ("fallback_video", config.fallback_video),
        ("model.path", config.model.file),
        ("the model's metadata", config.model.file.with_suffix(".json")),  # classify.metadata_path
        ("detector.yunet_model", config.detector.yunet_file),
        ("stream.password_file", config.stream.password_file),
        ("mqtt.password_file", config.mqtt.password_file),
    ]
    return [(name, path) for name, path in found if path is not None]


def check_output_paths(config: Config, config_path: Path | None = None) -> Config:
    """ConfigError when two outputs name one file, or an output names an input: compared by
    resolved path and by inode, so a symlink, a hard link or a relative spelling of the same
    file is found too."""
    try:
        check_distinct(output_paths(config), input_paths(config, config_path))
    except PathRefused as exc:
        raise ConfigError(f"{exc}; give each output a file of its own") from None
    return config


def _yaml_value(value: Any) -> str:
    if isinstance(value, Path):
        value = str(value)
    if isinstance(value, tuple):
        value = list(value)
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def example_yaml() -> str:
    """The documented example config (deploy/config.example.yaml), generated from the fields."""
    lines = [
        "# edge-fer configuration: /etc/edge-fer/config.yaml",
        "# Every key is optional; a wrong key or value stops the daemon with a one-line error.",
        "# Reload after editing:  sudo systemctl reload edge-fer   (SIGHUP)",
        "# Generated from edge_fer/config.py (python -m edge_fer.config > this file).",
        "",
    ]

    def emit(cls: type, obj: Any, indent: str) -> None:
        for f in dataclasses.fields(cls):
            if _is_section(f):
                lines.append(f"{indent}{f.name}:  # {f.default_factory.__doc__.strip()}")
                emit(f.default_factory, getattr(obj, f.name), indent + "  ")
                lines.append("") if not indent else None
                continue
            meta = f.metadata
            value = (
                meta["example"] if "example" in meta and meta["example"] is not None else getattr(obj, f.name)
            )
            if f.name == "fallback_video":
                value = None
            has_limits = any(meta[k] is not None for k in ("gt", "ge", "lt", "le"))
            limits = _limits_text(dict(meta)) if has_limits else ""
            doc = meta["doc"] + (f" ({limits})" if limits else "")
            lines.append(f"{indent}{f.name}: {_yaml_value(value)}  # {doc}")

    emit(Config, Config(), "")
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    print(example_yaml(), end="")

"""Typed daemon configuration, loaded from YAML and validated at start.

Each section is a dataclass; each field carries its one-line description and its limits
(`setting(...)`), so validation, the CLI's choices and `deploy/config.example.yaml` all come
from one definition. A bad key raises ConfigError naming the key, the bad value and what is
allowed. CLI flags are applied on top with `apply_overrides`.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from edge_fer.paths import DEFAULT_CONFIG, DEFAULT_STATS, PACKAGE_DIR, PROJECT_ROOT, SHIPPED_YUNET

DEFAULT_CONFIG_PATH = DEFAULT_CONFIG
DEFAULT_MODEL = PACKAGE_DIR / "models" / "edge_fer_student.pte"
DEFAULT_DEMO_VIDEO = PROJECT_ROOT / "runs" / "demo" / "faces_640x480.mp4"
SOURCE_PATTERN = re.compile(r"^(auto|picamera2|webcam(:\d+)?|file:.+)$")
MAX_THREADS = 16  # the Pi 5 has 4 cores; thousands of threads only slow start-up or crash


class ConfigError(ValueError):
    """An invalid configuration value; the message names key, value and what is allowed."""


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
    main_size: tuple[int, int] = setting((640, 480), "stream used for classification and the overlay")
    lores_size: tuple[int, int] = setting((480, 360), "stream used for face detection (picamera2 only)")
    fps: float = setting(30.0, "frames per second asked of the camera", gt=0, le=240)


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
    min_face: int = setting(24, "smallest face, in detection-image pixels", ge=1, le=4096)
    score_threshold: float = setting(0.6, "YuNet confidence threshold", gt=0, lt=1)

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

    window: int = setting(7, "rolling majority over the last K predictions of each face", ge=1, le=1000)
    restart_below: float = setting(
        0.6,
        "restart a face's history when its look correlates below this with the last detection's"
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
    fullscreen: bool = setting(True, "fullscreen on the HDMI console")
    top3: bool = setting(False, "small bars with each face's three most likely emotions")


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
    client_id: str | None = setting(None, "MQTT client id (null: edge-fer-<hostname>)")
    topic_prefix: str | None = setting(None, "state topics go under this (null: edge-fer/<hostname>)")
    discovery_prefix: str = setting("homeassistant", "Home Assistant's discovery prefix")
    qos: int = setting(0, "QoS of state messages", ge=0, le=2)
    retain: bool = setting(False, "retain state messages on the broker")
    queue_size: int = setting(
        1000, "messages kept while the broker is slow; more are dropped and counted", ge=10, le=1_000_000
    )


@dataclass
class MetricsConfig:
    """Prometheus /metrics endpoint."""

    port: int | None = setting(None, "TCP port for /metrics (null: off)", ge=1, le=65535)
    bind: str = setting("127.0.0.1", "address to listen on (0.0.0.0: all interfaces)")


@dataclass
class Config:
    """The whole daemon configuration (/etc/edge-fer/config.yaml)."""

    source: str = setting(
        "auto",
        "auto | picamera2 | webcam | webcam:INDEX | file:PATH; auto "
        "tries the Camera Module, then a USB webcam, then fallback_video",
    )
    fallback_video: Path | None = setting(
        DEFAULT_DEMO_VIDEO, "a video to play when no camera is found (null: none)", example=None
    )
    loop_video: bool = setting(True, "restart a file source at its end")
    camera: CameraConfig = setting(factory=CameraConfig)
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
    console: str = setting(
        "auto",
        "one status line a second on a terminal: auto (when headless on a TTY, not under systemd) | on | off",
        choices=("auto", "on", "off"),
    )
    record: Path | None = setting(None, "privacy: frames are never written unless this names a video file")
    reconnect_max_backoff_s: float = setting(10.0, "longest wait between camera reconnects", ge=0.1, le=3600)
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
        return ConfigError(f"config key '{key}': {value!r} is not valid; expected {allowed}")

    optional = "None" in annotation
    if value is None:
        if optional:
            return None
        raise bad(annotation.replace(" | None", ""))
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
        return value
    if base == "Path":
        if not isinstance(value, str | Path) or str(value) == "" or "\0" in str(value):
            raise bad("a file path")
        return Path(value).expanduser()
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
        raise ConfigError(f"{where} must be a mapping of keys to values, got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(str(k) for k in set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"unknown config key '{prefix}{unknown[0]}'; allowed keys here: {', '.join(fields)}"
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
            f"config key '{key}': {value!r} is not valid; expected one of {', '.join(meta['choices'])}"
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
        raise ConfigError(f"config key '{key}': {value!r} is not valid; expected {_limits_text(meta)}")


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
    if not SOURCE_PATTERN.match(config.source):
        raise ConfigError(
            f"config key 'source': {config.source!r} is not valid; expected auto, "
            "picamera2, webcam, webcam:INDEX or file:PATH"
        )
    for key, value, meta in _walk(config):
        _check_limits(key, value, meta)
    if config.mqtt.url is not None:
        parse_mqtt_url(config.mqtt.url)
    return config


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


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except IsADirectoryError:
        raise ConfigError(f"config file {path} is a directory; pass --config with a YAML file") from None
    except PermissionError:
        raise ConfigError(
            f"config file {path} is not readable by this user; make it readable "
            "(e.g. chmod 0640 and chgrp edge-fer)"
        ) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"config file {path} is not UTF-8 text (bad byte at offset {exc.start}); save it as UTF-8"
        ) from None
    except OSError as exc:
        raise ConfigError(f"config file {path} cannot be read ({exc.strerror}); check the path") from None


def load_config(path: Path | None) -> Config:
    """Load and validate a YAML config; None or a missing default path gives the defaults."""
    if path is None:
        return validate(Config())
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        if path == DEFAULT_CONFIG_PATH:
            return validate(Config())
        raise ConfigError(
            f"config file {path} does not exist; pass --config with an existing "
            "file (see deploy/config.example.yaml)"
        )
    text = _read_text(path)
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"config file {path} is not valid YAML{where}; fix its syntax") from None
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

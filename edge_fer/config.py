"""Typed daemon configuration, loaded from YAML and validated at start.

Every key is checked; a bad one raises ConfigError naming the key, the bad value and what
is allowed. CLI flags are applied on top with `apply_overrides`.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

DEFAULT_CONFIG_PATH = Path("/etc/edge-fer/config.yaml")
PACKAGE_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = PACKAGE_ROOT / "models" / "edge_fer_student.pte"
DEFAULT_DEMO_VIDEO = PACKAGE_ROOT / "runs" / "demo" / "faces_640x480.mp4"
SOURCE_PATTERN = re.compile(r"^(auto|picamera2|webcam(:\d+)?|file:.+)$")


class ConfigError(ValueError):
    """An invalid configuration value; the message names key, value and what is allowed."""


@dataclass
class CameraConfig:
    index: int = 0
    main_size: tuple[int, int] = (640, 480)
    lores_size: tuple[int, int] = (320, 240)
    fps: float = 30.0


@dataclass
class DetectorConfig:
    kind: str = "haar"  # haar | yunet
    yunet_model: Path | None = None
    every_n_frames: int = 1
    detect_width: int = 320  # frames from webcams/files are scaled to this width for detection
    min_face: int = 24  # pixels, at detection resolution
    score_threshold: float = 0.6


@dataclass
class TrackerConfig:
    iou_threshold: float = 0.3
    max_missed: int = 5


@dataclass
class ModelConfig:
    path: Path = DEFAULT_MODEL
    threads: int = 1
    runtime: str = "auto"  # auto | native (torch-free ExecuTorch runner) | pybind


@dataclass
class SmoothingConfig:
    window: int = 7


@dataclass
class DisplayConfig:
    mode: str = "auto"  # auto | drm | window | none
    fullscreen: bool = True
    top3: bool = False


@dataclass
class StatsConfig:
    path: Path | None = Path("/run/edge-fer/stats.json")
    interval_s: float = 1.0
    window_s: float = 10.0


@dataclass
class Config:
    source: str = "auto"
    fallback_video: Path | None = DEFAULT_DEMO_VIDEO
    loop_video: bool = True
    camera: CameraConfig = field(default_factory=CameraConfig)
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    smoothing: SmoothingConfig = field(default_factory=SmoothingConfig)
    display: DisplayConfig = field(default_factory=DisplayConfig)
    stats: StatsConfig = field(default_factory=StatsConfig)
    record: Path | None = None  # privacy by default: no frame leaves the process unless set
    reconnect_max_backoff_s: float = 10.0
    log_level: str = "INFO"


CHOICES: dict[str, tuple[str, ...]] = {
    "detector.kind": ("haar", "yunet"),
    "display.mode": ("auto", "drm", "window", "none"),
    "model.runtime": ("auto", "native", "pybind"),
    "log_level": ("DEBUG", "INFO", "WARNING", "ERROR"),
}
POSITIVE = {"camera.fps", "detector.every_n_frames", "detector.detect_width", "detector.min_face",
            "tracker.max_missed", "model.threads", "smoothing.window", "stats.interval_s",
            "stats.window_s", "reconnect_max_backoff_s"}
UNIT_INTERVAL = {"tracker.iou_threshold", "detector.score_threshold"}


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
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise bad("a number")
        return float(value)
    if base == "str":
        if not isinstance(value, str):
            raise bad("a string")
        return value
    if base == "Path":
        if not isinstance(value, str | Path) or str(value) == "":
            raise bad("a file path")
        return Path(value).expanduser()
    if base == "tuple[int, int]":
        if (not isinstance(value, list | tuple) or len(value) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)):
            raise bad("[width, height] with two positive integers")
        return (int(value[0]), int(value[1]))
    raise bad(base)  # pragma: no cover - every annotation above is handled


def _build(cls: type, data: Any, prefix: str) -> Any:
    if not isinstance(data, dict):
        where = f"section '{prefix[:-1]}'" if prefix else "the config file"
        raise ConfigError(f"{where} must be a mapping of keys to values, got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"unknown config key '{prefix}{unknown[0]}'; allowed keys here: "
                          f"{', '.join(fields)}")
    kwargs = {}
    for name, value in data.items():
        f = fields[name]
        key = prefix + name
        if dataclasses.is_dataclass(f.default_factory if f.default_factory is not
                                    dataclasses.MISSING else None):
            kwargs[name] = _build(f.default_factory, value, key + ".")
        else:
            kwargs[name] = _coerce(key, value, str(f.type))
    return cls(**kwargs)


def validate(config: Config) -> Config:
    """Check ranges and choices that types alone don't catch."""
    if not SOURCE_PATTERN.match(config.source):
        raise ConfigError(f"config key 'source': {config.source!r} is not valid; expected auto, "
                          "picamera2, webcam, webcam:INDEX or file:PATH")
    flat = {}
    for section in dataclasses.fields(config):
        value = getattr(config, section.name)
        if dataclasses.is_dataclass(value):
            for f in dataclasses.fields(value):
                flat[f"{section.name}.{f.name}"] = getattr(value, f.name)
        else:
            flat[section.name] = value
    for key, allowed in CHOICES.items():
        if flat[key] not in allowed:
            raise ConfigError(f"config key '{key}': {flat[key]!r} is not valid; expected one of "
                              f"{', '.join(allowed)}")
    for key in POSITIVE:
        if flat[key] <= 0:
            raise ConfigError(f"config key '{key}': {flat[key]!r} is not valid; expected a "
                              "positive number")
    for key in UNIT_INTERVAL:
        if not 0 < flat[key] < 1:
            raise ConfigError(f"config key '{key}': {flat[key]!r} is not valid; expected a "
                              "number between 0 and 1")
    if config.detector.kind == "yunet" and config.detector.yunet_model is None:
        raise ConfigError("config key 'detector.yunet_model' is required when detector.kind is "
                          "yunet; point it at face_detection_yunet_*.onnx")
    return config


def load_config(path: Path | None) -> Config:
    """Load and validate a YAML config; None or a missing default path gives the defaults."""
    if path is None:
        return validate(Config())
    path = Path(path)
    if not path.exists():
        if path == DEFAULT_CONFIG_PATH:
            return validate(Config())
        raise ConfigError(f"config file {path} does not exist; pass --config with an existing "
                          "file (see deploy/config.example.yaml)")
    try:
        data = yaml.safe_load(path.read_text()) or {}
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
        f = next(f for f in dataclasses.fields(target) if f.name == leaf)
        setattr(target, leaf, _coerce(dotted, value, str(f.type)))
    return validate(config)

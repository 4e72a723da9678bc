"""The whole daemon configuration: the top-level keys and one typed section per group."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from edge_fer.config.emotions import ModelConfig, SmoothingConfig
from edge_fer.config.faces import DetectorConfig, TrackerConfig
from edge_fer.config.outputs import (
    DisplayConfig,
    EventsConfig,
    MetricsConfig,
    MqttConfig,
    ReportConfig,
    StatsConfig,
    WebConfig,
)
from edge_fer.config.sources import CameraConfig, FramesConfig, StreamConfig
from edge_fer.core.paths import DEFAULT_DEMO_VIDEO
from edge_fer.core.schema import setting

# An instance (edge-fer@NAME): part of file names, MQTT topics and ids, and a Prometheus label.
INSTANCE_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")


@dataclass
class Config:
    """The whole daemon configuration (/etc/edge-fer/config.yaml)."""

    source: str = setting(
        "auto",
        "auto | picamera2 | webcam | webcam:INDEX | file:PATH | rtsp://... | http(s)://...; auto "
        "tries the Camera Module, then a USB webcam, then fallback_video",
        flag="--source",
        flag_help="auto | picamera2 | webcam[:INDEX] | file:PATH | rtsp://... | http(s)://...",
    )
    pace: str = setting(
        "realtime",
        "file sources: realtime (at the video's own fps) | fast (as fast as it decodes: benchmarks)",
        choices=("realtime", "fast"),
        flag="--pace",
        flag_help="video files: realtime (their own fps, the default) | fast (as fast as possible)",
    )
    instance: str | None = setting(
        None,
        "this camera's name when one Pi runs several (edge-fer@NAME): stats path, MQTT device and "
        "the Prometheus camera label",
        flag="--instance",
        flag_help="camera name when a Pi runs several (edge-fer@NAME), e.g. cam0",
    )
    fallback_video: Path | None = setting(
        DEFAULT_DEMO_VIDEO,
        "a video to play when no camera is found; when it is missing, the demo that ships in the "
        "package (null: neither)",
        example=None,
    )
    loop_video: bool = setting(
        True,
        "restart a file source at its end",
        flag="--loop",
        flag_help="restart a video file at its end (default); --no-loop: stop there",
    )
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
        flag="--console",
        flag_help="one status line a second on the terminal (auto: when headless)",
    )
    log_summary_s: float = setting(
        60.0,
        "seconds between one-line result summaries in the log when there is no console line "
        "(under systemd, nohup or a log file); 0: none",
        ge=0,
        le=86400,
        flag="--log-summary",
        flag_help="seconds between result summaries in the log when there is no console line (0: none)",
        metavar="SECONDS",
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
        "INFO",
        "DEBUG | INFO | WARNING | ERROR",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        flag="--log-level",
    )

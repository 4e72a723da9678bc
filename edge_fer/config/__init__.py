"""Typed daemon configuration, loaded from YAML and validated at start.

The config is a package of typed sections, one module per group, each field declared once with
`edge_fer.core.schema.setting` (type, default, limits, choices, doc, flag):

- `sources`: camera, stream and frames (and the `source` key's checks);
- `faces`: detector and tracker;  `emotions`: model and smoothing;
- `outputs`: display, stats, events, report, mqtt, metrics and web;
- `root`: `Config`, the whole file: top-level keys and one field per section;
- `loading`: the file and YAML boundary (`load_config`);  `validation`: `validate` (checks
  only) and `normalised` (derived values, a new config);  `overrides`: CLI flags on top;
- `files`: output paths against each other and the inputs;  `example`: the example file.

Components take their own section (`LabelSmoother(SmoothingConfig)`), so a default exists
once. A bad key raises ConfigError naming the key, the bad value and what is allowed. Every
name other modules use is importable from `edge_fer.config` itself.
"""

from __future__ import annotations

from edge_fer.config.base import ConfigError, checked_path, key_label
from edge_fer.config.emotions import MAX_THREADS, ModelConfig, SmoothingConfig
from edge_fer.config.example import example_yaml
from edge_fer.config.faces import DetectorConfig, TrackerConfig
from edge_fer.config.files import check_output_paths, input_paths, output_paths
from edge_fer.config.loading import (
    DEFAULT_CONFIG_PATH,
    MAX_CONFIG_BYTES,
    MAX_CONFIG_DEPTH,
    MAX_CONFIG_NODES,
    load_config,
    parse_yaml,
)
from edge_fer.config.outputs import (
    MQTT_CLIENT_ID_MAX_BYTES,
    MQTT_PREFIX_MAX_BYTES,
    DisplayConfig,
    EventsConfig,
    MetricsConfig,
    MqttConfig,
    ReportConfig,
    StatsConfig,
    WebConfig,
    check_mqtt_names,
    check_web,
    is_loopback,
    parse_mqtt_url,
)
from edge_fer.config.overrides import apply_overrides, config_flags
from edge_fer.config.root import INSTANCE_PATTERN, Config
from edge_fer.config.sources import (
    MAX_CAMERA_INDEX,
    SOURCE_PATTERN,
    CameraConfig,
    FramesConfig,
    StreamConfig,
    check_source,
    check_stream_url,
)
from edge_fer.config.validation import checked, choices, flatten, normalised, validate
from edge_fer.core.paths import DEFAULT_DEMO_VIDEO, DEFAULT_MODEL
from edge_fer.core.schema import setting, shown
from edge_fer.core.user_input import STREAM_SCHEMES

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "DEFAULT_DEMO_VIDEO",
    "DEFAULT_MODEL",
    "INSTANCE_PATTERN",
    "MAX_CAMERA_INDEX",
    "MAX_CONFIG_BYTES",
    "MAX_CONFIG_DEPTH",
    "MAX_CONFIG_NODES",
    "MAX_THREADS",
    "MQTT_CLIENT_ID_MAX_BYTES",
    "MQTT_PREFIX_MAX_BYTES",
    "SOURCE_PATTERN",
    "STREAM_SCHEMES",
    "CameraConfig",
    "Config",
    "ConfigError",
    "DetectorConfig",
    "DisplayConfig",
    "EventsConfig",
    "FramesConfig",
    "MetricsConfig",
    "ModelConfig",
    "MqttConfig",
    "ReportConfig",
    "SmoothingConfig",
    "StatsConfig",
    "StreamConfig",
    "TrackerConfig",
    "WebConfig",
    "apply_overrides",
    "check_mqtt_names",
    "check_output_paths",
    "check_source",
    "check_stream_url",
    "check_web",
    "checked",
    "checked_path",
    "choices",
    "config_flags",
    "example_yaml",
    "flatten",
    "input_paths",
    "is_loopback",
    "key_label",
    "load_config",
    "normalised",
    "output_paths",
    "parse_mqtt_url",
    "parse_yaml",
    "setting",
    "shown",
    "validate",
]

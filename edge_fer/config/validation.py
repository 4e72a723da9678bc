"""Checking a whole config: every key's declared limits, then the rules that span keys; and the
values derived from others (`normalised`), made into a new config, never into the one checked."""

from __future__ import annotations

import dataclasses
from typing import Any

from edge_fer.config.base import ConfigError, checked_path, key_label
from edge_fer.config.outputs import check_mqtt_names, check_web, parse_mqtt_url
from edge_fer.config.root import INSTANCE_PATTERN, Config
from edge_fer.config.sources import MAX_CAMERA_INDEX, check_source, check_stream_url
from edge_fer.core.paths import DEFAULT_STATS, DEFAULT_YUNET, SHIPPED_YUNET, YUNET_ENV, live_stats_path
from edge_fer.core.schema import check, field_at, shown, spec, walk
from edge_fer.core.schema import checked_path as schema_path
from edge_fer.core.user_input import STREAM_SCHEMES


def choices(dotted: str) -> tuple[str, ...]:
    """The allowed values of a choice key, e.g. choices('display.mode')."""
    allowed = spec(field_at(Config, dotted)).choices
    assert allowed is not None, f"{dotted} is not a choice key"
    return allowed


def flatten(config: Config) -> dict[str, Any]:
    """Every setting by its dotted key, e.g. {'smoothing.window': 7, ...}."""
    return {key: value for key, value, _ in walk(config)}


def validate(config: Config) -> Config:
    """Check every field's limits and choices, and rules that span fields; ConfigError naming
    the first bad key. Only checks: `config` is returned as it was given."""
    check_source(config.source)
    for key, value, f in walk(config):
        check(key_label(key), value, spec(f), ConfigError)
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
    if config.detector.yunet_model is None and DEFAULT_YUNET != SHIPPED_YUNET:
        schema_path(f"${YUNET_ENV} (detector.yunet_model: null)", DEFAULT_YUNET, ConfigError)
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
    if config.instance is not None and not INSTANCE_PATTERN.match(config.instance):
        raise ConfigError(
            f"config key 'instance': {config.instance!r} is not valid; expected 1-32 of "
            "a-z, 0-9, _ and -, starting with a letter or digit (e.g. cam0)"
        )
    return config


def normalised(config: Config) -> Config:
    """A new config with the values other keys imply while stats.path is the default: an
    instance's own live stats file (/run/edge-fer-NAME/stats.json), and a user's own run's in
    their runtime folder (it may not write in /run)."""
    if config.stats.path == DEFAULT_STATS:
        stats = live_stats_path(config.instance)
        if stats != config.stats.path:
            return dataclasses.replace(config, stats=dataclasses.replace(config.stats, path=stats))
    return config


def checked(config: Config) -> Config:
    """`config` validated, then normalised: what loading and overrides hand out."""
    return normalised(validate(config))

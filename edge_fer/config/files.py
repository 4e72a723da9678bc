"""The files a config makes the daemon write and read, checked against each other at start and
on every reload: no two outputs, and no output and input, may be one file."""

from __future__ import annotations

import os
from pathlib import Path

from edge_fer.config.base import ConfigError, checked_path
from edge_fer.config.root import Config
from edge_fer.core.safe_io import PathLock, PathRefused, check_distinct


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

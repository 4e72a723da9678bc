"""Reading the config file: the file boundary (a regular, readable UTF-8 file of at most
MAX_CONFIG_BYTES), the YAML boundary (`edge_fer.core.safe_yaml`: depth, aliases, duplicate
keys), then each key typed by its declaration and the whole config validated."""

from __future__ import annotations

from pathlib import Path

from edge_fer.config.base import ConfigError, checked_path, key_label
from edge_fer.config.root import Config
from edge_fer.config.validation import checked
from edge_fer.core import safe_yaml
from edge_fer.core.paths import DEFAULT_CONFIG as DEFAULT_CONFIG_PATH
from edge_fer.core.safe_io import PathRefused, read_bounded
from edge_fer.core.safe_yaml import MAX_DEPTH as MAX_CONFIG_DEPTH
from edge_fer.core.safe_yaml import MAX_NODES as MAX_CONFIG_NODES
from edge_fer.core.schema import build, shown

MAX_CONFIG_BYTES = 1 << 20
__all__ = ["MAX_CONFIG_BYTES", "MAX_CONFIG_DEPTH", "MAX_CONFIG_NODES", "load_config", "parse_yaml"]


def parse_yaml(text: str, where: str) -> object:
    """The YAML document in `text` (None when empty) through the YAML boundary; every failure
    is a ConfigError that starts with `where`."""
    return safe_yaml.parse_yaml(text, where, ConfigError)


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
        return checked(Config())
    path = checked_path("--config", path)
    try:
        present = path.exists() or path.is_symlink()
    except OSError as exc:
        raise ConfigError(
            f"config file {path} cannot be read ({exc.strerror or exc}); check the path"
        ) from None
    if not present:
        if path == DEFAULT_CONFIG_PATH:
            return checked(Config())
        raise ConfigError(
            f"config file {path} does not exist; pass --config with an existing "
            "file (see deploy/config.example.yaml)"
        )
    data = parse_yaml(_read_text(path), f"config file {path}")
    if data is None:  # empty, or only comments
        return checked(Config())
    if not isinstance(data, dict):
        raise ConfigError(
            f"config file {path} must be a mapping of keys to values (e.g. 'source: auto'), "
            f"got {shown(data)}; an empty file gives the defaults"
        )
    return checked(build(Config, data, key_label, ConfigError))

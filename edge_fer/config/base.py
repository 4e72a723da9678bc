"""What every config section shares: the error type and how a key is named in messages."""

from __future__ import annotations

from pathlib import Path

from edge_fer.core.schema import SchemaError
from edge_fer.core.schema import checked_path as _schema_path


class ConfigError(SchemaError):
    """An invalid configuration value; the message names key, value and what is allowed."""


def key_label(dotted: str) -> str:
    """How messages name a config key: "config key 'smoothing.window'"."""
    return f"config key '{dotted}'"


def checked_path(key: str, value: str | Path) -> Path:
    """A path from the config (`key`, e.g. 'stats.path') or a flag (e.g. '--config'), through
    the user-input boundary: `~` expanded safely, UTF-8, no control characters, within the
    OS's length limits."""
    return _schema_path(key if key.startswith("--") else key_label(key), value, ConfigError)

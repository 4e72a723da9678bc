"""deploy/config.example.yaml, generated from the declarations (python -m edge_fer.config)."""

from __future__ import annotations

from edge_fer.config.root import Config
from edge_fer.core import schema

HEADER = (
    "# edge-fer configuration: /etc/edge-fer/config.yaml",
    "# Every key is optional; a wrong key or value stops the daemon with a one-line error.",
    "# Reload after editing:  sudo systemctl reload edge-fer   (SIGHUP)",
    "# Generated from edge_fer/config/ (python -m edge_fer.config > this file).",
    "",
)


def example_yaml() -> str:
    """The documented example config: every key with its default (or example), doc and limits."""
    return schema.example_yaml(Config(), HEADER)

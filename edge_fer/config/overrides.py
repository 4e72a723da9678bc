"""Command-line flags on top of the config file: the flags are generated from the keys that
declare one (`flag=` in the sections), and what was given is applied to a new config."""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from typing import Any

from edge_fer.config.base import ConfigError, key_label
from edge_fer.config.root import Config
from edge_fer.config.validation import checked
from edge_fer.core.schema import Flag, add_flags, coerce, field_at, with_values


def apply_overrides(config: Config, overrides: dict[str, Any]) -> Config:
    """A new config: `config` with dotted keys (e.g. 'display.mode') set from CLI flags (None:
    not given), validated. `config` itself is not changed."""
    values = {
        dotted: coerce(key_label(dotted), value, str(field_at(Config, dotted).type), ConfigError)
        for dotted, value in overrides.items()
        if value is not None
    }
    return checked(with_values(config, values))


def config_flags(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup, keys: Iterable[str] | None = None
) -> list[Flag]:
    """The flags of config keys (every key that declares one, or only `keys`), added to
    `parser`; pass what is parsed to `check_flags` and `given` (edge_fer.core.schema)."""
    return add_flags(parser, Config, keys)

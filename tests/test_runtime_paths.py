"""Where a daemon run by a user (not root, not the service) keeps its live stats: /run is
not theirs, so the default stats path moves to their runtime folder, and the monitor's
default follows it; root and the service keep /run/edge-fer."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edge_fer.config import load_config
from edge_fer.core import paths
from edge_fer.core.paths import DEFAULT_STATS, live_stats_path, live_stats_to_read

pytestmark = pytest.mark.fast  # units and contracts: the fast tier


@pytest.fixture
def as_user(monkeypatch, tmp_path):
    """This process as uid 1000 that may not write in /run (a user's login, no service)."""
    real_access = os.access
    monkeypatch.setattr(paths.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(
        paths.os,
        "access",
        lambda p, mode: (
            False if str(p).startswith("/run/") and "/user/" not in str(p) else real_access(p, mode)
        ),
    )
    runtime = tmp_path / "run-user-1000"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return runtime


def test_root_and_the_service_keep_run(monkeypatch):
    monkeypatch.setattr(paths.os, "geteuid", lambda: 0)
    assert live_stats_path() == DEFAULT_STATS
    assert live_stats_path("cam0") == Path("/run/edge-fer-cam0/stats.json")
    assert load_config(None).stats.path == DEFAULT_STATS


def test_a_user_run_writes_in_the_users_runtime_folder(as_user):
    assert live_stats_path() == as_user / "edge-fer" / "stats.json"
    assert live_stats_path("cam1") == as_user / "edge-fer-cam1" / "stats.json"
    assert load_config(None).stats.path == as_user / "edge-fer" / "stats.json"


def test_without_a_runtime_folder_it_is_the_users_state_folder(as_user, monkeypatch, tmp_path):
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    assert live_stats_path() == tmp_path / "home" / ".local" / "state" / "edge-fer" / "stats.json"
    monkeypatch.setenv("XDG_RUNTIME_DIR", "relative/dir")  # not a usable folder: ignored
    assert live_stats_path().is_relative_to(tmp_path / "home")


def test_an_explicit_stats_path_is_kept(as_user, tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text(f"stats:\n  path: {tmp_path / 'mine.json'}\n")
    assert load_config(config).stats.path == tmp_path / "mine.json"


def test_the_monitor_reads_the_services_file_when_there_is_one(as_user, monkeypatch, tmp_path):
    assert live_stats_to_read() == as_user / "edge-fer" / "stats.json"
    service = Path("/run/edge-fer/stats.json")
    real_exists = Path.exists
    monkeypatch.setattr(Path, "exists", lambda p: True if p == service else real_exists(p))
    assert live_stats_to_read() == service

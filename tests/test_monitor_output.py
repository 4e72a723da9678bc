"""What edge-fer-monitor prints: where power comes from (or why it is n/a) once, and a daemon's
CPU figure that is real from the first sample on, never a 0.00 for "not measured yet"."""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from edge_fer.contracts import live_stats
from edge_fer.monitor.daemon_stats import DaemonWatcher
from edge_fer.monitor.sensors import choose_power_source
from edge_fer.runtime.stats import RunStats

ROOT = Path(__file__).resolve().parents[1]
BUSY = "import time\nend = time.time() + 30\nwhile time.time() < end:\n    pass\n"


def test_the_power_note_is_printed_once(tmp_path):
    _, note = choose_power_source()  # whatever this machine has: a source, or n/a and why
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "edge_fer.apps.monitor",
            "--seconds",
            "0.5",
            "--interval",
            "0.1",
            "--stats",
            str(tmp_path / "none.json"),
        ],  # fmt: skip
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert (proc.stdout + proc.stderr).count(note) == 1


@pytest.fixture()
def busy_daemon(tmp_path):
    """A process that burns one core, with a stats file naming it like the daemon's."""
    proc = subprocess.Popen([sys.executable, "-c", BUSY])
    stats = tmp_path / "stats.json"

    def publish() -> None:
        live_stats.write(stats, replace(RunStats().snapshot(), pid=proc.pid, fps=30.0))

    publish()
    yield stats, publish
    proc.kill()
    proc.wait()


def test_first_daemon_cpu_sample_is_measured_not_zero(busy_daemon):
    stats, publish = busy_daemon
    watcher = DaemonWatcher(stats)
    watcher.prime()  # what the monitor does when it starts
    time.sleep(0.5)
    publish()
    first = watcher.sample()
    assert first.running and first.cpu_percent is not None and first.cpu_percent > 20


def test_a_daemon_seen_late_shows_na_once_then_its_cpu(busy_daemon):
    stats, publish = busy_daemon
    watcher = DaemonWatcher(stats)  # not primed: the daemon appears while the monitor runs
    first = watcher.sample()
    assert first.running and first.cpu_percent is None  # n/a, not 0.00
    time.sleep(0.5)
    publish()
    assert watcher.sample().cpu_percent > 20

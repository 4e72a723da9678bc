"""edge-fer's programs in child processes, run as users run them (`python -m edge_fer.apps...`
from the checkout), so a crash or a hang fails one test with its exit status instead of the
whole session; and the checks their output must pass."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from edge_fer.core.paths import PROJECT_ROOT as ROOT

DAEMON = "edge_fer.apps.daemon"
MONITOR = "edge_fer.apps.monitor"
CLASSIFY = "edge_fer.apps.classify"


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment for a child: unbuffered (its log lines arrive as written)
    and importing this checkout's edge_fer; `extra` wins (e.g. a PYTHONPATH with the fakes)."""
    return {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT), **(extra or {})}


def run_program(
    module: str, args: list[str], timeout: float, env: dict | None = None
) -> subprocess.CompletedProcess:
    """`python -m module args` to its end, its output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=child_env(env),
    )


def edge_fer(args: list[str], timeout: float = 90) -> subprocess.CompletedProcess:
    """The daemon, run to its end."""
    return run_program(DAEMON, args, timeout)


def monitor(args: list[str], timeout: float = 60) -> subprocess.CompletedProcess:
    """edge-fer-monitor, run to its end."""
    return run_program(MONITOR, args, timeout)


def start_daemon(args: list[str], env: dict | None = None, **popen: object) -> subprocess.Popen:
    """The daemon started in the background; stdout and stderr are pipes unless `popen` says
    otherwise (e.g. stdout=subprocess.DEVNULL)."""
    popen = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, **popen}
    return subprocess.Popen(
        [sys.executable, "-m", DAEMON, *args], cwd=ROOT, env=child_env(env), text=True, **popen
    )


def train(*args: str) -> subprocess.CompletedProcess:
    """tools/train_mobilenet.py as users run it, in its own process, so a native crash in
    training fails a test with its exit status instead of killing the whole session."""
    return subprocess.run(
        [sys.executable, str(ROOT / "tools" / "train_mobilenet.py"), *args],
        capture_output=True,
        text=True,
        timeout=900,
    )


def assert_one_line_error(proc: subprocess.CompletedProcess, code: int, *needles: str) -> None:
    """The program exited with `code`, without a traceback, and its last error line names
    every one of `needles`."""
    assert proc.returncode == code, (proc.returncode, proc.stderr[-1500:])
    assert "Traceback" not in proc.stderr, proc.stderr[-1500:]
    errors = [
        line
        for line in proc.stderr.splitlines()
        if " ERROR " in line or line.startswith(("edge-fer", "usage:")) or "error:" in line
    ]
    assert errors, proc.stderr
    message = errors[-1]
    for needle in needles:
        assert needle in message, (needle, message)


def write_config(path: Path, data: dict | str) -> None:
    """Replace the file at `path` (a link included, not its target) with `data` (YAML if a dict)."""
    if path.exists() or path.is_symlink():
        path.unlink()
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))


class Daemon:
    """`edge-fer --config PATH` with its stderr collected and its stats file read."""

    def __init__(self, config: Path, stats: Path) -> None:
        self.config, self.stats = config, stats
        self.proc = start_daemon(["--config", str(config)], stdout=subprocess.DEVNULL)
        self.lines: list[str] = []
        self.reader = threading.Thread(target=lambda: self.lines.extend(self.proc.stderr), daemon=True)
        self.reader.start()

    @property
    def log(self) -> str:
        return "".join(self.lines)

    def frames(self) -> int | None:
        try:
            return json.loads(self.stats.read_text())["frames"]
        except (OSError, ValueError, KeyError):
            return None  # between two pipelines, or mid-replace

    def wait(self, ok: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not ok():
            assert self.proc.poll() is None, f"the daemon died waiting for {what}:\n{self.log[-3000:]}"
            assert time.monotonic() < deadline, f"no {what} within {timeout} s:\n{self.log[-3000:]}"
            time.sleep(0.05)

    def classifying(self, timeout: float = 30) -> None:
        """Frames go on being counted: the stats file shows a higher count twice."""
        first = []
        self.wait(lambda: self.frames() is not None and not first.append(self.frames()), timeout, "stats")
        self.wait(lambda: (self.frames() or 0) > first[0] + 5, timeout, "new frames")

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=20)
        finally:
            self.reader.join(timeout=5)

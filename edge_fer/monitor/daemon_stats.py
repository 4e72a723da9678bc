"""The daemon's side of the monitor: its published stats file and its process figures."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

STALE_AFTER_S = 5.0


@dataclass
class DaemonSample:
    running: bool
    reason: str
    pid: int | None = None
    fps: float | None = None
    latency_ms: dict | None = None
    faces: int | None = None
    dropped_frames: int | None = None
    cpu_percent: float | None = None
    threads: int | None = None
    rss_mb: float | None = None
    pss_mb: float | None = None


class DaemonWatcher:
    """Reads the stats file the daemon publishes and samples its process with psutil."""

    def __init__(self, stats_path: Path, pid: int | None = None) -> None:
        self.stats_path = Path(stats_path)
        self.forced_pid = pid
        self._process: psutil.Process | None = None

    def _stats(self) -> tuple[dict | None, str]:
        try:
            data = json.loads(self.stats_path.read_text())
        except FileNotFoundError:
            return None, f"daemon not running (no {self.stats_path})"
        except (OSError, json.JSONDecodeError) as exc:
            return None, f"daemon stats unreadable ({exc})"
        age = time.time() - float(data.get("time", 0))
        if age > STALE_AFTER_S:
            return None, f"daemon not running (stats {age:.0f} s old)"
        return data, "running"

    def _proc(self, pid: int) -> psutil.Process | None:
        if self._process is None or self._process.pid != pid:
            try:
                self._process = psutil.Process(pid)
                self._process.cpu_percent(None)  # prime the CPU counter
            except psutil.Error:
                self._process = None
        return self._process

    def sample(self) -> DaemonSample:
        stats, reason = self._stats()
        pid = self.forced_pid or (stats or {}).get("pid")
        if pid is None:
            return DaemonSample(False, reason)
        proc = self._proc(int(pid))
        if proc is None or not proc.is_running():
            return DaemonSample(False, f"daemon pid {pid} not running")
        sample = DaemonSample(True, "running", pid=int(pid))
        if stats is not None:
            sample.fps = stats.get("fps")
            sample.latency_ms = stats.get("latency_ms")
            sample.faces = stats.get("faces")
            sample.dropped_frames = stats.get("dropped_frames")
        try:
            with proc.oneshot():
                sample.cpu_percent = proc.cpu_percent(None)
                sample.threads = proc.num_threads()
                sample.rss_mb = proc.memory_info().rss / 2**20
            try:
                sample.pss_mb = proc.memory_full_info().pss / 2**20
            except (psutil.AccessDenied, AttributeError):
                sample.pss_mb = None
        except psutil.Error as exc:
            return DaemonSample(False, f"daemon pid {pid} vanished ({exc})")
        return sample

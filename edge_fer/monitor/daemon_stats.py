"""The daemon's side of the monitor: its published stats file and its process figures."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

from edge_fer.contracts import live_stats
from edge_fer.contracts.live_stats import LiveStats, LiveStatsError, LiveStatsMissing

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
        self._primed = False

    def _stats(self) -> tuple[LiveStats | None, str]:
        try:
            stats = live_stats.read(self.stats_path)
        except LiveStatsMissing:
            return None, f"daemon not running (no {self.stats_path})"
        except LiveStatsError as exc:
            return None, f"daemon stats unusable ({exc}); ignoring them"
        age = time.time() - stats.time
        if age > STALE_AFTER_S:
            return None, f"daemon not running (stats {age:.0f} s old)"
        return stats, "running"

    def _proc(self, pid: int) -> psutil.Process | None:
        if self._process is None or self._process.pid != pid:
            try:
                self._process = psutil.Process(pid)
                self._process.cpu_percent(None)  # prime the CPU counter
                self._primed = True  # its first reading would be 0.0: no interval yet
            except psutil.Error:
                self._process = None
        return self._process

    def prime(self) -> None:
        """Start the daemon's CPU counter now, so the first sample one interval later has a
        real CPU figure (a daemon first seen by a later sample shows n/a once, never 0.0)."""
        stats, _ = self._stats()
        pid = self.forced_pid or (stats.pid if stats else None)
        if pid is not None:
            self._proc(pid)
            self._primed = False

    def sample(self) -> DaemonSample:
        stats, reason = self._stats()
        pid = self.forced_pid or (stats.pid if stats else None)
        if pid is None:
            return DaemonSample(False, reason)
        proc = self._proc(pid)
        if proc is None or not proc.is_running():
            return DaemonSample(False, f"daemon pid {pid} not running")
        sample = DaemonSample(True, "running", pid=pid)
        if stats is not None:
            sample.fps = stats.fps
            sample.latency_ms = {stage: asdict(spread) for stage, spread in stats.latency_ms.items()}
            sample.faces, sample.dropped_frames = stats.faces, stats.dropped_frames
        try:
            with proc.oneshot():
                cpu = proc.cpu_percent(None)
                sample.cpu_percent = None if self._primed else cpu
                self._primed = False
                sample.threads = proc.num_threads()
                sample.rss_mb = proc.memory_info().rss / 2**20
            try:
                sample.pss_mb = proc.memory_full_info().pss / 2**20
            except (psutil.AccessDenied, AttributeError):
                sample.pss_mb = None
        except psutil.Error as exc:
            return DaemonSample(False, f"daemon pid {pid} vanished ({exc})")
        return sample

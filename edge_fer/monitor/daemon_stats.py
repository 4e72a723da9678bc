"""The daemon's side of the monitor: its published stats file and its process figures."""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from edge_fer.core.safe_io import PathRefused, read_bounded

STALE_AFTER_S = 5.0
MAX_STATS_BYTES = 1 << 20  # the daemon writes ~1 KB; anything far bigger is not its file


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


def _number(value: object) -> float | None:
    """A finite number from the stats file, else None (shown as n/a)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


class DaemonWatcher:
    """Reads the stats file the daemon publishes and samples its process with psutil."""

    def __init__(self, stats_path: Path, pid: int | None = None) -> None:
        self.stats_path = Path(stats_path)
        self.forced_pid = pid
        self._process: psutil.Process | None = None
        self._primed = False

    def _stats(self) -> tuple[dict | None, str]:
        try:
            data = json.loads(read_bounded(self.stats_path, MAX_STATS_BYTES).decode("utf-8"))
        except FileNotFoundError:
            return None, f"daemon not running (no {self.stats_path})"
        except PathRefused as exc:
            return None, f"daemon stats unusable ({exc})"
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
            return None, f"daemon stats unreadable ({str(exc)[:200]})"
        if not isinstance(data, dict):
            return None, f"daemon stats {self.stats_path} are not a JSON object; ignoring them"
        when = data.get("time")
        if isinstance(when, bool) or not isinstance(when, int | float) or not math.isfinite(when):
            return None, f"daemon stats {self.stats_path} have no valid 'time'; ignoring them"
        age = time.time() - when
        if age > STALE_AFTER_S:
            return None, f"daemon not running (stats {age:.0f} s old)"
        pid = data.get("pid")
        if pid is not None and (isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0):
            return None, f"daemon stats {self.stats_path} have an invalid pid {pid!r}; ignoring them"
        return data, "running"

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
        pid = self.forced_pid or (stats or {}).get("pid")
        if pid is not None:
            self._proc(int(pid))
            self._primed = False

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
            sample.fps = _number(stats.get("fps"))
            latency = stats.get("latency_ms")
            sample.latency_ms = (
                {
                    stage: {k: _number(v) for k, v in values.items()}
                    for stage, values in latency.items()
                    if isinstance(values, dict)
                }
                if isinstance(latency, dict)
                else None
            )
            faces, dropped = _number(stats.get("faces")), _number(stats.get("dropped_frames"))
            sample.faces = None if faces is None else int(faces)
            sample.dropped_frames = None if dropped is None else int(dropped)
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

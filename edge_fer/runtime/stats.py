"""Latency windows, the figures of the live stats file (`edge_fer.contracts.live_stats`), and
the end-of-run report."""

from __future__ import annotations

import math
import os
import time
import uuid
from collections import Counter, deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_fer.contracts.live_stats import STAGES, LiveStats, Spread


class LogHistogram:
    """Latencies in fixed memory: bins 1% wide from 1 us to 100 s, so all-run percentiles stay
    within 0.5% however long the daemon runs. (Keeping every frame's latencies grew the
    daemon by ~40 MB an hour at 60 fps.)"""

    LOW_MS = 1e-3
    HIGH_MS = 1e5
    GROWTH = 1.01

    def __init__(self) -> None:
        self._log_growth = math.log(self.GROWTH)
        bins = math.ceil(math.log(self.HIGH_MS / self.LOW_MS) / self._log_growth) + 1
        self.counts = np.zeros(bins, np.int64)
        self.total = 0
        self.sum_ms = 0.0
        self.max = 0.0

    def add(self, value_ms: float) -> None:
        clipped = min(max(value_ms, self.LOW_MS), self.HIGH_MS)
        self.counts[int(math.log(clipped / self.LOW_MS) / self._log_growth)] += 1
        self.total += 1
        self.sum_ms += value_ms
        self.max = max(self.max, value_ms)

    def cumulative(self, bounds_ms: list[float]) -> list[int]:
        """How many values fell at or below each bound (to the 1% bin), for histogram buckets."""
        cum = np.cumsum(self.counts)
        out = []
        for bound in bounds_ms:
            if bound < self.LOW_MS:
                out.append(0)
                continue
            index = min(
                int(math.log(min(bound, self.HIGH_MS) / self.LOW_MS) / self._log_growth), len(cum) - 1
            )
            out.append(int(cum[index]))
        return out

    def percentile(self, q: float) -> float:
        """The q-th percentile (0..100): the geometric centre of its bin, capped at the max."""
        if self.total == 0:
            return 0.0
        rank = max(1, math.ceil(q / 100 * self.total))
        index = int(np.searchsorted(np.cumsum(self.counts), rank))
        return min(self.LOW_MS * self.GROWTH ** (index + 0.5), self.max)


class LatencyWindow:
    """Per-stage latencies over the last `window_s` seconds, plus all-run percentiles.

    Every figure means the same wherever it is shown (HUD, console, stats file, MQTT, report,
    Prometheus): the time of that stage in one frame, over the frames that ran the stage.
    `detect` counts only frames that ran the detector (every `detector.every_n_frames`-th;
    the frames between only move the tracks, ~0.01 ms), so its p50 is what a detection costs;
    `detection_frames` says how often that is. capture/classify/total count every frame.
    """

    def __init__(self, window_s: float = 10.0) -> None:
        self.window_s = window_s
        self.recent: deque[tuple[float, dict[str, float], bool]] = deque()
        self.histograms = {s: LogHistogram() for s in STAGES}
        self.frames = 0
        self.detection_frames = 0
        # Time in the outputs (display, files, network) after a frame is classified: not a
        # stage of the frame's timing_ms, but where the rest of a frame's time goes.
        self.outputs_recent: deque[tuple[float, float]] = deque()
        self.outputs_histogram = LogHistogram()

    def add_outputs(self, now: float, ms: float) -> None:
        self.outputs_recent.append((now, ms))
        self.outputs_histogram.add(ms)
        while self.outputs_recent and self.outputs_recent[0][0] < now - self.window_s:
            self.outputs_recent.popleft()

    def window_outputs(self, seconds: float | None = None) -> dict[str, float]:
        """p50/p95/max/mean of the outputs' time per frame over the last `seconds`."""
        recent = self.outputs_recent
        since = recent[-1][0] - seconds if seconds is not None and recent else -math.inf
        return _percentiles({"outputs": [ms for t, ms in recent if t >= since]})["outputs"]

    def run_outputs(self) -> dict[str, float]:
        h = self.outputs_histogram
        mean = h.sum_ms / h.total if h.total else 0.0
        return {"p50": h.percentile(50), "p95": h.percentile(95), "max": h.max, "mean": mean}

    def add(self, now: float, timing_ms: dict[str, float], detected: bool = True) -> None:
        self.recent.append((now, timing_ms, detected))
        self.frames += 1
        self.detection_frames += detected
        for stage in STAGES:
            if stage != "detect" or detected:
                self.histograms[stage].add(timing_ms[stage])
        while self.recent and self.recent[0][0] < now - self.window_s:
            self.recent.popleft()

    def _last(self, seconds: float | None) -> list[tuple[float, dict[str, float], bool]]:
        """The frames of the last `seconds` (all of the window if None), oldest first."""
        if seconds is None or not self.recent:
            return list(self.recent)
        since = self.recent[-1][0] - seconds
        out = []
        for item in reversed(self.recent):
            if item[0] < since:
                break
            out.append(item)
        return out[::-1]

    def rate(self, seconds: float | None = None) -> float | None:
        """Frames per second over the last `seconds` (default: the whole window), or None
        until two frames span a real interval: what text shows, so a first line never reads
        `0.0 fps`."""
        frames = self._last(seconds)
        if len(frames) < 2:
            return None
        span = frames[-1][0] - frames[0][0]
        return (len(frames) - 1) / span if span > 0 else None

    def fps(self, seconds: float | None = None) -> float:
        """`rate`, with 0.0 while it is unknown (for gauges that need a number)."""
        return self.rate(seconds) or 0.0

    def window_percentiles(self, seconds: float | None = None) -> dict[str, dict[str, float]]:
        """p50/p95/max/mean per stage over the last `seconds` (default: the whole window);
        detect over the detection frames only."""
        frames = self._last(seconds)
        return _percentiles(
            {s: [t[s] for _, t, detected in frames if s != "detect" or detected] for s in STAGES}
        )

    def window_detection_frames(self, seconds: float | None = None) -> tuple[int, int]:
        """(frames that ran the detector, all frames) over the last `seconds`."""
        frames = self._last(seconds)
        return sum(d for _, _, d in frames), len(frames)

    def run_percentiles(self) -> dict[str, dict[str, float]]:
        return {
            stage: {
                "p50": h.percentile(50),
                "p95": h.percentile(95),
                "max": h.max,
                "mean": h.sum_ms / h.total if h.total else 0.0,
            }
            for stage, h in self.histograms.items()
        }


def detection_rate(detection_frames: int, frames: int) -> str:
    """How often detection ran, for people: 'every frame', '1/2 frames', 'no detection'."""
    if detection_frames == 0:
        return "no detection"
    n = round(frames / detection_frames)
    return "every frame" if n <= 1 else f"1/{n} frames"


def _percentiles(values: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    out = {}
    for stage, v in values.items():
        if v:
            a = np.asarray(v)
            out[stage] = {
                "p50": float(np.percentile(a, 50)),
                "p95": float(np.percentile(a, 95)),
                "max": float(a.max()),
                "mean": float(a.mean()),
            }
        else:
            out[stage] = {"p50": 0.0, "p95": 0.0, "max": 0.0, "mean": 0.0}
    return out


def peak_rss_mb(status: Path = Path("/proc/self/status")) -> float | None:
    """This process's peak resident memory (VmHWM), or None where /proc does not say.

    Unlike getrusage's ru_maxrss seen by a parent, VmHWM is not inflated by the memory of the
    process that forked this one before it exec'd.
    """
    try:
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


@dataclass(frozen=True)
class Tally:
    """The run's counts at one moment (`RunStats.tally`): two of them give what happened in
    between (`edge_fer.runtime.summary`)."""

    frames: int
    frames_with_faces: int
    faces_seen: int
    labels: Counter[str]
    last_frame_mono: float  # monotonic time of the last frame counted (0.0 before any)


class RunStats:
    """Everything counted over the daemon's life (across config reloads): frames, bad frames,
    reconnects, faces, labels, latencies. Outputs read it; only the frame loop writes it."""

    def __init__(self, window_s: float = 10.0, run_id: str | None = None) -> None:
        self.run_id = run_id or uuid.uuid4().hex[:12]
        self.source = ""
        self.reconnects = 0
        self.started = time.time()
        self.started_mono = time.monotonic()
        self.latency = LatencyWindow(window_s)
        self.frames = 0
        self.bad_frames = 0
        self.faces_seen = 0  # track ids only grow, so a new face is an id above the last one
        self._last_face_id = 0
        self.face_detections = 0
        self.frames_with_faces = 0
        self.labels: Counter[str] = Counter()
        self.faces_now = 0
        self.first_frame_mono: float | None = None
        self.last_frame_mono = 0.0

    def add_outputs(self, ms: float) -> None:
        """Count the time the outputs took on the frame just counted."""
        self.latency.add_outputs(time.monotonic(), ms)

    def new_tracker(self) -> None:
        """Face ids restart (a reload made a new tracker): count ids from 1 again as new."""
        self._last_face_id = 0

    def count_reconnect(self) -> None:
        self.reconnects += 1

    def add_frame(
        self, timing_ms: dict[str, float], face_ids: list[int], labels: list[str], detected: bool = True
    ) -> None:
        """Count one classified frame: its stage times (`detected`: it ran the detector), its
        faces' ids and smoothed labels."""
        now = time.monotonic()
        if self.first_frame_mono is None:
            self.first_frame_mono = now
        self.last_frame_mono = now
        self.frames += 1
        self.latency.add(now, timing_ms, detected)
        self.faces_now = len(face_ids)
        new_ids = [i for i in face_ids if i > self._last_face_id]
        if new_ids:
            self.faces_seen += len(new_ids)
            self._last_face_id = max(new_ids)
        self.face_detections += len(face_ids)
        self.frames_with_faces += bool(face_ids)
        self.labels.update(labels)

    def tally(self) -> Tally:
        """The counts so far (a copy: later frames do not change it)."""
        return Tally(
            self.frames, self.frames_with_faces, self.faces_seen, Counter(self.labels), self.last_frame_mono
        )

    def frame_rate(self) -> float | None:
        """Frames per second from the first frame to the last, or None before two frames."""
        first = self.first_frame_mono
        span = self.last_frame_mono - first if first is not None else 0.0
        return (self.frames - 1) / span if span > 0 and self.frames > 1 else None

    def snapshot(self) -> LiveStats:
        """The live figures published for edge-fer-monitor (and MQTT) about once a second."""
        window = self.latency
        return LiveStats(
            pid=os.getpid(),
            run_id=self.run_id,
            time=time.time(),
            source=self.source,
            uptime_s=time.monotonic() - self.started_mono,
            frames=self.frames,
            fps=window.fps(),
            latency_ms={stage: Spread(**p) for stage, p in window.window_percentiles().items()},
            detection_frames=window.window_detection_frames()[0],
            window_frames=len(window.recent),
            outputs_ms=Spread(**window.window_outputs()),
            faces=self.faces_now,
            dropped_frames=self.bad_frames,
            reconnects=self.reconnects,
        )

    def live(self) -> dict:
        """`snapshot` as the stats file holds it (plain JSON types)."""
        return self.snapshot().to_dict()

    def report(self) -> dict:
        """The end-of-run summary written by --report-json."""
        elapsed = time.monotonic() - self.started_mono
        # fps over the frames themselves: start-up (imports, model, camera) is reported apart.
        first = self.first_frame_mono
        return {
            "run_id": self.run_id,
            "source": self.source,
            "frames": self.frames,
            "bad_frames": self.bad_frames,
            "reconnects": self.reconnects,
            "seconds": elapsed,
            "startup_s": first - self.started_mono if first is not None else None,
            "fps": self.frame_rate() or 0.0,
            "latency_ms": self.latency.run_percentiles(),
            "detection_frames": self.latency.detection_frames,
            "outputs_ms": self.latency.run_outputs(),
            "faces_seen": self.faces_seen,
            "face_detections": self.face_detections,
            "label_counts": dict(self.labels),
            "peak_rss_mb": peak_rss_mb(),
        }

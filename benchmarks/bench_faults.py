#!/usr/bin/env python3
"""Fault benchmark: the real daemon under a few minutes of things going wrong.

    python benchmarks/bench_faults.py [--seconds 180]

Runs `edge-fer` on the Camera Module path (picamera2's faithful fake from tests/fakes,
playing a looping video of real faces) with events, stats and a report on, and injects in
rotation:
  camera     the camera is unplugged for 3 s and plugged back
  stats      the stats folder disappears (replaced by a file) for 3 s, then comes back
  reload     SIGHUP with a good config
  bad-reload SIGHUP with a config that names a missing model file
  disk-full  SIGHUP with events going to /dev/full (ENOSPC on every write), then a good one
After each fault it checks that the daemon is alive and frames are flowing again. Prints a
table (faults injected, survived, restarts needed, frames lost, RSS at start and end) and
writes benchmarks/results/faults.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import yaml

from edge_fer.paths import DEFAULT_DATA
from edge_fer.paths import PROJECT_ROOT as ROOT

FAKES = ROOT / "tests" / "fakes"
FAULTS = ("camera", "stats", "reload", "bad-reload", "disk-full")


class FaultRun:
    """The daemon, its files, and the means to break them."""

    def __init__(self, workdir: Path, video: Path) -> None:
        self.workdir = workdir
        self.stats_dir = workdir / "run"
        self.stats_dir.mkdir()
        self.stats = self.stats_dir / "stats.json"
        self.events = workdir / "events.jsonl"
        self.report = workdir / "report.json"
        self.unplug = workdir / "unplugged"
        self.config_path = workdir / "config.yaml"
        self.good = {
            "source": "picamera2",
            "display": {"mode": "none"},
            "stats": {"path": str(self.stats), "interval_s": 0.5},
            "events": {"path": str(self.events)},
            "report": {"path": str(self.report)},
            "reconnect_max_backoff_s": 1.0,
            "log_level": "INFO",
        }
        self.write_config(self.good)
        env = {
            **os.environ,
            "PYTHONPATH": str(FAKES),
            "FAKE_PICAMERA2_VIDEO": str(video),
            "FAKE_PICAMERA2_UNPLUG_FILE": str(self.unplug),
            "PYTHONUNBUFFERED": "1",
        }
        self.log = (workdir / "daemon.log").open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "edge_fer.cli", "--config", str(self.config_path)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=self.log,
        )
        self.process = psutil.Process(self.proc.pid)

    def write_config(self, data: dict) -> None:
        tmp = self.config_path.with_suffix(".tmp")
        tmp.write_text(yaml.safe_dump(data))
        tmp.replace(self.config_path)

    def frames(self) -> int:
        """Frames classified so far (from the events file, which survives stats faults)."""
        try:
            with self.events.open("rb") as f:
                return sum(1 for _ in f)
        except OSError:
            return 0

    def wait_for_frames(self, more: int = 20, timeout: float = 30.0) -> bool:
        start = self.frames()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            if self.frames() >= start + more:
                return True
            time.sleep(0.1)
        return False

    def reload(self, data: dict) -> None:
        self.write_config(data)
        self.proc.send_signal(signal.SIGHUP)
        time.sleep(1.5)

    def inject(self, fault: str) -> None:
        if fault == "camera":
            self.unplug.touch()
            time.sleep(3)
            self.unplug.unlink()
        elif fault == "stats":
            moved = self.stats_dir.with_name("run.away")
            self.stats_dir.rename(moved)
            self.stats_dir.write_text("not a folder")  # writes now fail with ENOTDIR
            time.sleep(3)
            self.stats_dir.unlink()
            moved.rename(self.stats_dir)
            self.reload(self.good)  # a reload brings the stats file back
        elif fault == "reload":
            self.reload({**self.good, "smoothing": {"window": 5}})
        elif fault == "bad-reload":
            self.reload({**self.good, "model": {"path": str(self.workdir / "missing.pte")}})
        elif fault == "disk-full":
            self.reload({**self.good, "events": {"path": "/dev/full"}})
            time.sleep(2)
            self.reload(self.good)

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=10)
        finally:
            self.log.close()


def run(video: Path, seconds: float, workdir: Path) -> dict:
    daemon = FaultRun(workdir, video)
    injected = {f: 0 for f in FAULTS}
    survived = {f: 0 for f in FAULTS}
    if not daemon.wait_for_frames(30, timeout=60):
        raise SystemExit(f"the daemon did not start: {(workdir / 'daemon.log').read_text()[-800:]}")
    rss_start = daemon.process.memory_info().rss / 2**20
    started = time.monotonic()
    i = 0
    while time.monotonic() - started < seconds:
        fault = FAULTS[i % len(FAULTS)]
        i += 1
        injected[fault] += 1
        daemon.inject(fault)
        if daemon.wait_for_frames(20, timeout=30):
            survived[fault] += 1
        elif daemon.proc.poll() is not None:
            break
    rss_end = daemon.process.memory_info().rss / 2**20 if daemon.proc.poll() is None else None
    code = daemon.stop()
    report = json.loads(daemon.report.read_text()) if daemon.report.is_file() else {}
    log = (workdir / "daemon.log").read_text()
    return {
        "seconds": round(time.monotonic() - started, 1),
        "exit_code": code,
        "faults": {f: {"injected": injected[f], "survived": survived[f]} for f in FAULTS},
        "restarts_needed": 0 if code == 0 else 1,
        "frames": report.get("frames"),
        "frames_lost": report.get("bad_frames"),
        "reconnects": report.get("reconnects"),
        "rss_start_mb": round(rss_start, 1),
        "rss_end_mb": None if rss_end is None else round(rss_end, 1),
        "tracebacks": log.count("Traceback"),
        "reload_failures_logged": log.count("config reload failed"),
    }


def table(result: dict) -> str:
    lines = [f"{'fault':<12}{'injected':>10}{'survived':>10}"]
    for fault, row in result["faults"].items():
        lines.append(f"{fault:<12}{row['injected']:>10}{row['survived']:>10}")
    lines += [
        "",
        f"run {result['seconds']} s, exit code {result['exit_code']}, restarts needed "
        f"{result['restarts_needed']}, tracebacks {result['tracebacks']}",
        f"frames {result['frames']}, frames lost (failed grabs) {result['frames_lost']}, "
        f"camera reconnects {result['reconnects']}",
        f"RSS {result['rss_start_mb']} MB at the start, {result['rss_end_mb']} MB at the end",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from edge_fer.demo import build_demo_video

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seconds", type=float, default=180.0, help="how long to keep injecting")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "faults.json")
    args = p.parse_args(argv)
    if not (args.data / "test").is_dir():
        print(f"error: FER2013 not found at {args.data}; pass --data", file=sys.stderr)
        return 2
    if not 10 <= args.seconds <= 86400:
        print("error: --seconds must be between 10 and 86400", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        video = workdir / "faces.mp4"
        build_demo_video(args.data, video, frames=300, faces=2, hold=30, seed=5)
        result = run(video, args.seconds, workdir)
        shutil.rmtree(workdir / "run.away", ignore_errors=True)
    print(table(result))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0 if result["restarts_needed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

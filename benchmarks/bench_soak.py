#!/usr/bin/env python3
"""Soak benchmark: does the daemon's memory stay flat while it runs?

    python benchmarks/bench_soak.py [--seconds 600] [--runtime native]

Runs the real `edge-fer` daemon (Haar detector, default detection settings) headless on a looping video of
two real faces per frame and samples
its RSS once a second (after a warm-up), plus fps and latency from its live stats file. A
leak shows as a positive RSS slope; the table reports it in MB per hour from a least-squares
fit, with the RSS at the start and end of the window.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
from common import daemon_command

from edge_fer.core.paths import DEFAULT_DATA
from edge_fer.core.paths import PROJECT_ROOT as ROOT
from edge_fer.core.user_input import FlagParser, path_arg


def soak(video: Path, seconds: float, warmup_s: float, runtime: str, workdir: Path) -> dict:
    stats_path = workdir / "stats.json"
    cmd = daemon_command(
        video, stats_path, "--runtime", runtime, "--report-json", str(workdir / "report.json")
    )
    daemon = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    process = psutil.Process(daemon.pid)
    times, rss, fps = [], [], []
    started = time.monotonic()
    try:
        while (elapsed := time.monotonic() - started) < warmup_s + seconds:
            if daemon.poll() is not None:
                raise SystemExit(f"daemon exited ({daemon.returncode}): {daemon.stderr.read()[-1000:]}")
            if elapsed >= warmup_s:
                times.append(elapsed - warmup_s)
                rss.append(process.memory_info().rss / 2**20)
                if stats_path.is_file():
                    fps.append(json.loads(stats_path.read_text())["fps"])
            time.sleep(1.0)
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.communicate(timeout=10)
    report = json.loads((workdir / "report.json").read_text())
    slope_mb_per_s = float(np.polyfit(times, rss, 1)[0]) if len(times) > 2 else 0.0
    return {
        "runtime": runtime,
        "seconds": seconds,
        "samples": len(rss),
        "frames": report["frames"],
        "fps_mean": float(np.mean(fps)) if fps else 0.0,
        "rss_start_mb": rss[0],
        "rss_end_mb": rss[-1],
        "rss_max_mb": max(rss),
        "rss_slope_mb_per_h": slope_mb_per_s * 3600,
        "total_p95_ms": report["latency_ms"]["total"]["p95"],
        "total_max_ms": report["latency_ms"]["total"]["max"],
        "exit_code": daemon.returncode,
        "rss_series_mb": [[round(t, 1), round(m, 2)] for t, m in zip(times, rss, strict=True)],
    }


def format_table(rows: list[dict]) -> str:
    lines = [
        "| runtime | seconds | frames | mean fps | RSS start MB | RSS end MB | "
        "RSS max MB | RSS slope MB/h | total p95 / max ms | exit |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['runtime']} | {r['seconds']:.0f} | {r['frames']} | "
            f"{r['fps_mean']:.1f} | {r['rss_start_mb']:.1f} | {r['rss_end_mb']:.1f} | "
            f"{r['rss_max_mb']:.1f} | {r['rss_slope_mb_per_h']:+.2f} | "
            f"{r['total_p95_ms']:.1f} / {r['total_max_ms']:.1f} | {r['exit_code']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from edge_fer.data.demo_video import build_demo_video

    p = FlagParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", type=path_arg, default=DEFAULT_DATA)
    p.add_argument("--seconds", type=float, default=600.0)
    p.add_argument("--warmup", type=float, default=15.0, help="seconds before sampling starts")
    p.add_argument("--runtime", choices=("native", "pybind"), default="native")
    p.add_argument("--json", type=path_arg, default=ROOT / "benchmarks" / "results" / "soak.json")
    args = p.parse_args(argv)
    if args.seconds < 10:
        print("error: --seconds must be at least 10 to fit a slope", file=sys.stderr)
        return 2
    if not (args.data / "test").is_dir():
        print(f"error: FER2013 not found at {args.data}; pass --data", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        video = Path(tmp) / "faces_640x480.mp4"
        build_demo_video(args.data, video, frames=300, faces=2, hold=30, seed=5)
        print(f"soaking {args.runtime} for {args.seconds:.0f} s ...", file=sys.stderr, flush=True)
        row = soak(video, args.seconds, args.warmup, args.runtime, Path(tmp))
    print(format_table([row]))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(row, indent=2))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

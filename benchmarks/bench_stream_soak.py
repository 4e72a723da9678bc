#!/usr/bin/env python3
"""Network-stream soak: do the daemon's memory and open files stay flat on a camera stream?

    python benchmarks/bench_stream_soak.py [--seconds 600] [--stream rtsp|http]

Runs the real `edge-fer` daemon viewer-less (no display, no console, nobody scraping it) on a
network camera served on 127.0.0.1 (the GStreamer RTSP server, or an HTTP MJPEG server,
playing real faces at 15 fps) for `--seconds` after a warm-up, and samples its RSS, open file
descriptors and threads once a second. A leak shows as a positive slope: the table gives the
least-squares slopes per hour and the first/last/max values; `flat` means the RSS slope is
under 5 MB/h (or the RSS ends within 2 MB of where it started) and the fd count ends where it
started. Writes benchmarks/results/soak_stream.json.
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

from edge_fer.config import DEFAULT_MODEL
from edge_fer.core.paths import DEFAULT_DATA
from edge_fer.core.paths import PROJECT_ROOT as ROOT
from edge_fer.core.user_input import FlagParser, path_arg
from testkit.streams import (  # the tests' servers
    MjpegServer,
    RtspServer,
    jpeg_frames,
    rtsp_server_missing,
    write_frames,
)

FLAT_RSS_MB_PER_H = 5.0


def slope_per_hour(times: list[float], values: list[float]) -> float:
    return float(np.polyfit(times, values, 1)[0]) * 3600 if len(times) > 2 else 0.0


def soak(url: str, kind: str, seconds: float, warmup_s: float, model: Path, workdir: Path) -> dict:
    stats_path = workdir / "stats.json"
    report_path = workdir / "report.json"
    cmd = [sys.executable, "-m", "edge_fer.apps.daemon", "--source", url, "--display", "none",
           "--console", "off", "--stats-path", str(stats_path), "--report-json", str(report_path),
           "--model", str(model), "--log-level", "WARNING"]  # fmt: skip
    log_path = workdir / "daemon.log"
    with log_path.open("w") as log:
        daemon = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log)
        process = psutil.Process(daemon.pid)
        times: list[float] = []
        rss: list[float] = []
        fds: list[float] = []
        threads: list[float] = []
        fps: list[float] = []
        started = time.monotonic()
        try:
            while (elapsed := time.monotonic() - started) < warmup_s + seconds:
                if daemon.poll() is not None:
                    raise SystemExit(f"daemon exited ({daemon.returncode}): {log_path.read_text()[-1000:]}")
                if elapsed >= warmup_s:
                    times.append(elapsed - warmup_s)
                    rss.append(process.memory_info().rss / 2**20)
                    fds.append(process.num_fds())
                    threads.append(process.num_threads())
                    try:
                        fps.append(json.loads(stats_path.read_text())["fps"])
                    except (OSError, ValueError, KeyError):
                        pass
                time.sleep(1.0)
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(timeout=15)
    report = json.loads(report_path.read_text()) if report_path.is_file() else {}
    rss_slope = slope_per_hour(times, rss)
    fd_slope = slope_per_hour(times, fds)
    flat = (rss_slope < FLAT_RSS_MB_PER_H or rss[-1] - rss[0] < 2.0) and fds[-1] <= fds[0]
    return {
        "stream": kind,
        "seconds": seconds,
        "warmup_s": warmup_s,
        "samples": len(rss),
        "frames": report.get("frames"),
        "bad_frames": report.get("bad_frames"),
        "reconnects": report.get("reconnects"),
        "fps_mean": float(np.mean(fps)) if fps else 0.0,
        "rss_start_mb": round(rss[0], 1),
        "rss_end_mb": round(rss[-1], 1),
        "rss_max_mb": round(max(rss), 1),
        "rss_slope_mb_per_h": round(rss_slope, 2),
        "fds_start": int(fds[0]),
        "fds_end": int(fds[-1]),
        "fds_max": int(max(fds)),
        "fds_slope_per_h": round(fd_slope, 2),
        "threads_start": int(threads[0]),
        "threads_end": int(threads[-1]),
        "flat": bool(flat),
        "exit_code": daemon.returncode,
        "warnings_logged": log_path.read_text(errors="replace").count("WARNING"),
        "series": [[round(t, 1), round(m, 2), int(f)] for t, m, f in zip(times, rss, fds, strict=True)],
    }


def format_table(row: dict) -> str:
    return "\n".join(
        [
            "| stream | seconds | frames | mean fps | RSS start / end / max MB | RSS slope MB/h "
            "| fds start / end / max | fd slope /h | threads | flat | exit |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|",
            f"| {row['stream']} | {row['seconds']:.0f} | {row['frames']} | {row['fps_mean']:.1f} | "
            f"{row['rss_start_mb']} / {row['rss_end_mb']} / {row['rss_max_mb']} | "
            f"{row['rss_slope_mb_per_h']:+.2f} | {row['fds_start']} / {row['fds_end']} / {row['fds_max']} | "
            f"{row['fds_slope_per_h']:+.2f} | {row['threads_start']} -> {row['threads_end']} | "
            f"{'yes' if row['flat'] else 'NO'} | {row['exit_code']} |",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    from edge_fer.data.demo_video import build_demo_video

    p = FlagParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", type=path_arg, default=DEFAULT_DATA)
    p.add_argument("--model", type=path_arg, default=DEFAULT_MODEL)
    p.add_argument("--seconds", type=float, default=600.0)
    p.add_argument("--warmup", type=float, default=20.0, help="seconds before sampling starts")
    p.add_argument("--stream", choices=("rtsp", "http"), default="rtsp")
    p.add_argument("--json", type=path_arg, default=ROOT / "benchmarks" / "results" / "soak_stream.json")
    args = p.parse_args(argv)
    if not 10 <= args.seconds <= 86400:
        print("error: --seconds must be between 10 and 86400", file=sys.stderr)
        return 2
    if not (args.data / "test").is_dir():
        print(f"error: FER2013 not found at {args.data}; pass --data", file=sys.stderr)
        return 2
    if args.stream == "rtsp" and (missing := rtsp_server_missing()):
        print(f"error: {missing}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        video = workdir / "faces.mp4"
        build_demo_video(args.data, video, frames=300, faces=2, hold=30, seed=5)
        pattern = write_frames(video, workdir / "frames", count=60, step=2)
        rtsp = args.stream == "rtsp"
        server = RtspServer(pattern, fps=15) if rtsp else MjpegServer(jpeg_frames(pattern), fps=15)
        print(f"soaking on {args.stream} for {args.seconds:.0f} s ...", file=sys.stderr, flush=True)
        try:
            row = soak(server.url, args.stream, args.seconds, args.warmup, args.model, workdir)
        finally:
            server.stop() if rtsp else server.close()
    print(format_table(row))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(row, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0 if row["flat"] and row["exit_code"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

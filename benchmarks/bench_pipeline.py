#!/usr/bin/env python3
"""Pipeline benchmark: the real `edge-fer` daemon on a 640x480 video of real faces.

    python benchmarks/bench_pipeline.py [--frames 300] [--runtimes native,pybind] [--json out.json]

Builds the video from FER2013 PublicTest faces (one face per frame, never committed), then
runs the daemon (default detection settings) for each classifier runtime (native: the torch-free
runner; pybind: executorch's Python extension), detector (haar, yunet) and 1 and 4 threads,
headless. Reports end-to-end fps, per-stage p50/p95 and the daemon's peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from common import daemon_command

from edge_fer.config import DEFAULT_MODEL
from edge_fer.paths import DEFAULT_DATA, DEFAULT_YUNET
from edge_fer.paths import PROJECT_ROOT as ROOT

YUNET = DEFAULT_YUNET


def run_daemon(
    video: Path, runtime: str, detector: str, threads: int, model: Path, workdir: Path, extra: list[str] = ()
) -> dict:
    report = workdir / f"report_{runtime}_{detector}_{threads}.json"
    cmd = daemon_command(
        video, workdir / "stats.json", "--no-loop", "--model", str(model), "--threads", str(threads),
        "--runtime", runtime, "--detector", detector, "--report-json", str(report),
    )  # fmt: skip
    if detector == "yunet":
        cmd += ["--yunet-model", str(YUNET)]
    cmd += list(extra)
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, stderr = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"daemon failed ({proc.returncode}): {stderr[-1000:]}")
    result = json.loads(report.read_text())  # peak_rss_mb: the daemon's own VmHWM
    result["runtime"], result["detector"], result["threads"] = runtime, detector, threads
    return result


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def integrations_cost(video: Path, model: Path, workdir: Path, repeats: int) -> dict:
    """fps with MQTT (a real local Mosquitto) and Prometheus (scraped every second) on, against
    the same daemon with both off, runs interleaved so drift hits both alike."""
    import shutil
    import statistics
    import threading
    import time
    from urllib.request import urlopen

    mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    port, metrics_port = free_port(), free_port()
    conf = workdir / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    broker = subprocess.Popen(
        [mosquitto, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    stop = threading.Event()

    def scrape() -> None:
        while not stop.wait(1.0):
            try:
                urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=2).read()
            except OSError:
                pass

    scraper = threading.Thread(target=scrape, daemon=True)
    scraper.start()
    on_args = ["--mqtt", f"mqtt://127.0.0.1:{port}", "--metrics-port", str(metrics_port)]
    fps: dict[str, list[float]] = {"off": [], "on": []}
    try:
        time.sleep(0.5)
        for _ in range(repeats):
            for mode in ("off", "on"):
                row = run_daemon(video, "native", "yunet", 1, model, workdir, on_args if mode == "on" else [])
                fps[mode].append(row["fps"])
    finally:
        stop.set()
        broker.terminate()
        broker.wait(timeout=5)
    off, on = statistics.median(fps["off"]), statistics.median(fps["on"])
    return {
        "fps_off": fps["off"],
        "fps_on": fps["on"],
        "median_off": off,
        "median_on": on,
        "cost_percent": 100 * (off - on) / off,
    }


def format_table(rows: list[dict]) -> str:
    head = (
        "| runtime | detector | threads | frames | fps | capture p50/p95 ms | detect p50/p95 ms | "
        "classify p50/p95 ms | total p50/p95 ms | frames with a face | start-up s | peak RSS MB |"
    )
    lines = [head, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]

    def pp(lat: dict, stage: str) -> str:
        return f"{lat[stage]['p50']:.2f} / {lat[stage]['p95']:.2f}"

    for r in rows:
        lat = r["latency_ms"]
        lines.append(
            f"| {r['runtime']} | {r['detector']} | {r['threads']} | {r['frames']} | "
            f"{r['fps']:.1f} | "
            f"{pp(lat, 'capture')} | {pp(lat, 'detect')} | {pp(lat, 'classify')} | "
            f"{pp(lat, 'total')} | "
            f"{r['face_detections']}/{r['frames']} | {r['startup_s']:.2f} | "
            f"{r['peak_rss_mb']:.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from edge_fer.demo import build_demo_video

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    p.add_argument("--frames", type=int, default=300)
    p.add_argument("--threads", default="1,4")
    p.add_argument("--runtimes", default="native,pybind")
    p.add_argument(
        "--integrations",
        type=int,
        default=3,
        metavar="N",
        help="interleaved runs with MQTT + metrics on and off (0: skip)",
    )
    p.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "pipeline.json")
    args = p.parse_args(argv)
    if not YUNET.is_file():
        print(f"error: YuNet model {YUNET} not found", file=sys.stderr)
        return 2
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        video = Path(tmp) / "faces_640x480.mp4"
        build_demo_video(args.data, video, frames=args.frames, faces=1, hold=30, seed=3)
        for runtime in args.runtimes.split(","):
            for detector in ("haar", "yunet"):
                for threads in (int(t) for t in args.threads.split(",")):
                    print(
                        f"running {runtime} / {detector} with {threads} thread(s) ...",
                        file=sys.stderr,
                        flush=True,
                    )
                    rows.append(run_daemon(video, runtime, detector, threads, args.model, Path(tmp)))
        cost = None
        if args.integrations > 0:
            print("running with MQTT + Prometheus on and off ...", file=sys.stderr, flush=True)
            cost = integrations_cost(video, args.model, Path(tmp), args.integrations)
    print(format_table(rows))
    if cost is not None:
        print(
            f"\nMQTT + Prometheus (native, yunet, 1 thread, median of {args.integrations}): "
            f"{cost['median_off']:.1f} fps off, {cost['median_on']:.1f} fps on: "
            f"cost {cost['cost_percent']:.1f}% (target < 3%)"
        )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"cores": os.cpu_count(), "rows": rows, "integrations": cost}, indent=2))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

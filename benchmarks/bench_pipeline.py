#!/usr/bin/env python3
"""Pipeline benchmark: the real `edge-fer` daemon on a 640x480 video of real faces.

    python benchmarks/bench_pipeline.py [--frames 300] [--runtimes native,pybind] [--json out.json]
    python benchmarks/bench_pipeline.py --only-scale [--scale-frames 150]   # how cost grows

Builds the video from FER2013 PublicTest faces (one face per frame, never committed), then
runs the daemon (default detection settings) for each classifier runtime (native: the torch-free
runner; pybind: executorch's Python extension), detector (haar, yunet) and 1 and 4 threads,
headless. Reports end-to-end fps, per-stage p50/p95 and the daemon's peak RSS.

The scale rows (`--scale`, on by default; results/pipeline_scale.json) run the daemon (native,
YuNet, 1 thread) on videos of 1, 4, 8 and 16 real faces at 640x480, 1280x720 and 1920x1080:
the full frame of a webcam or an RTSP camera, with no low-resolution stream to detect on.
Every daemon run reads its video as fast as it decodes (`--pace fast`).
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
from edge_fer.core.paths import DEFAULT_DATA, DEFAULT_YUNET
from edge_fer.core.paths import PROJECT_ROOT as ROOT
from edge_fer.core.user_input import FlagParser, path_arg

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


SCALE_FACES = (1, 4, 8, 16)
SCALE_SIZES = ((640, 480), (1280, 720), (1920, 1080))


def grid_video(data: Path, out: Path, faces: int, size: tuple[int, int], frames: int, seed: int = 5) -> None:
    """A video of `faces` real FER2013 faces on a grid (each drifting a little, a new set every
    second), lossless so decoding costs what a camera's frames would."""
    import math

    import cv2
    import numpy as np

    from edge_fer.data.demo_video import face_patch
    from edge_fer.data.fer2013 import load_split
    from edge_fer.emotions.preprocess import PreprocessSpec

    faceset = load_split(data, "public", PreprocessSpec(input_size=48))
    rng = np.random.default_rng(seed)
    w, h = size
    cols = max(1, math.ceil(math.sqrt(faces * w / h)))
    rows = math.ceil(faces / cols)
    cell_w, cell_h = w // cols, h // rows
    face_px = int(min(cell_w, cell_h) * 0.5)
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"MJPG"), 30, (w, h))
    if not writer.isOpened():
        raise SystemExit(f"cannot write {out}")
    patches: list = []
    for i in range(frames):
        if i % 30 == 0:
            patches = [face_patch(faceset.images[k], face_px) for k in rng.integers(0, len(faceset), faces)]
        frame = np.full((h, w), 100, np.uint8)
        for slot, patch in enumerate(patches):
            ph, pw = patch.shape
            r, c = divmod(slot, cols)
            dx = int(4 * math.sin(i / 9 + slot))
            x0 = min(max(0, c * cell_w + (cell_w - pw) // 2 + dx), w - pw)
            y0 = min(max(0, r * cell_h + (cell_h - ph) // 2), h - ph)
            frame[y0 : y0 + ph, x0 : x0 + pw] = patch
        writer.write(cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR))
    writer.release()


def scale_rows(data: Path, model: Path, workdir: Path, frames: int) -> list[dict]:
    """One daemon run per face count and frame size (native, YuNet, 1 thread)."""
    rows = []
    for size in SCALE_SIZES:
        for faces in SCALE_FACES:
            video = workdir / f"grid_{faces}_{size[0]}x{size[1]}.avi"
            grid_video(data, video, faces, size, frames)
            print(f"running {faces} face(s) at {size[0]}x{size[1]} ...", file=sys.stderr, flush=True)
            row = run_daemon(video, "native", "yunet", 1, model, workdir)
            row["faces"], row["size"] = faces, f"{size[0]}x{size[1]}"
            row["faces_per_frame"] = row["face_detections"] / max(1, row["frames"])  # found, of `faces`
            rows.append(row)
            video.unlink()
    return rows


def format_scale_table(rows: list[dict]) -> str:
    head = (
        "| input | faces | found per frame | fps | capture p50/p95 ms | detect p50/p95 ms | "
        "classify p50/p95 ms | total p50/p95 ms | peak RSS MB |"
    )
    lines = [head, "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]

    def pp(lat: dict, stage: str) -> str:
        return f"{lat[stage]['p50']:.2f} / {lat[stage]['p95']:.2f}"

    for r in rows:
        lat = r["latency_ms"]
        lines.append(
            f"| {r['size']} | {r['faces']} | {r['faces_per_frame']:.1f} | {r['fps']:.1f} | "
            f"{pp(lat, 'capture')} | {pp(lat, 'detect')} | "
            f"{pp(lat, 'classify')} | {pp(lat, 'total')} | {r['peak_rss_mb']:.0f} |"
        )
    return "\n".join(lines)


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
    from edge_fer.data.demo_video import build_demo_video

    p = FlagParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", type=path_arg, default=DEFAULT_DATA)
    p.add_argument("--model", type=path_arg, default=DEFAULT_MODEL)
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
    p.add_argument("--json", type=path_arg, default=ROOT / "benchmarks" / "results" / "pipeline.json")
    p.add_argument("--scale", action=argparse.BooleanOptionalAction, default=True, help="the scale rows")
    p.add_argument("--only-scale", action="store_true", help="only the scale rows")
    p.add_argument("--scale-frames", type=int, default=150, help="frames per scale run")
    p.add_argument(
        "--scale-json", type=path_arg, default=ROOT / "benchmarks" / "results" / "pipeline_scale.json"
    )
    args = p.parse_args(argv)
    if not YUNET.is_file():
        print(f"error: YuNet model {YUNET} not found", file=sys.stderr)
        return 2
    if args.scale or args.only_scale:
        with tempfile.TemporaryDirectory() as tmp:
            scaled = scale_rows(args.data, args.model, Path(tmp), args.scale_frames)
        print(format_scale_table(scaled))
        args.scale_json.parent.mkdir(parents=True, exist_ok=True)
        args.scale_json.write_text(
            json.dumps(
                {
                    "cores": os.cpu_count(),
                    "runtime": "native",
                    "detector": "yunet",
                    "threads": 1,
                    "rows": scaled,
                },
                indent=2,
            )  # fmt: skip
        )
        print(f"wrote {args.scale_json}")
        if args.only_scale:
            return 0
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

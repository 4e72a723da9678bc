#!/usr/bin/env python3
"""What the web page costs: the real `edge-fer` on a 1920x1080 video of real faces, with the
page off, on with 0 viewers, 1 viewer and 5 viewers; and its memory under a slow reader.

    python benchmarks/bench_web.py [--seconds 15] [--rounds 2] [--faces 2]
                                   [--soak-seconds 600] [--json benchmarks/results/web.json]

Builds the video from FER2013 PublicTest faces (bench_pipeline's grid video, never committed),
then runs the daemon on it as fast as it decodes (`--pace fast`, looping) once per mode and
round, modes interleaved so drift hits all alike. A viewer does what the page does: asks for
the newest picture as often as the daemon allows (`X-Frame-Interval-Ms`, web.fps) and for the
state once a second. Per run, after a warm-up: the daemon's fps (from its stats file) and
CPU (cores, from /proc) over `--seconds`, and the pictures each viewer got. The cost of a
mode is its median fps against the median with the page off (targets: 0 viewers free,
1 viewer <= 10%, 5 viewers <= 25%).

The soak (`--soak-seconds`, 0 to skip) runs the daemon at the video's own pace with the page
on, one normal viewer and one that reads each picture at ~2 KB/s (so the server cuts it off
at its deadline and it comes back), sampling the daemon's RSS every 10 s: memory is flat
when the last minute's peak RSS is within a few MB of the second minute's, with no trend.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench_pipeline import free_port, grid_video
from common import daemon_command

from edge_fer.core.paths import DEFAULT_DATA
from edge_fer.core.paths import PROJECT_ROOT as ROOT
from edge_fer.core.user_input import FlagParser, path_arg

MODES = ("off", "web0", "web1", "web5")
VIEWERS = {"off": 0, "web0": 0, "web1": 1, "web5": 5}
WARMUP_S = 4.0


def _get(port: int, path: str) -> tuple[int, dict, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


class Viewer(threading.Thread):
    """The page's polling: the newest picture at the daemon's pace, the state once a second."""

    def __init__(self, port: int, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.port, self.stop, self.pictures, self.errors = port, stop, 0, 0

    def run(self) -> None:
        next_state = 0.0
        while not self.stop.is_set():
            t0 = time.monotonic()
            interval = 0.2
            try:
                status, headers, body = _get(self.port, "/frame.jpg")
                if status == 200 and body[:2] == b"\xff\xd8":
                    self.pictures += 1
                    interval = int(headers.get("x-frame-interval-ms", "200")) / 1000
                else:
                    self.errors += 1
                if t0 >= next_state:
                    next_state = t0 + 1.0
                    _get(self.port, "/api/state")
            except OSError:
                self.errors += 1
                interval = 1.0
            self.stop.wait(max(0.0, interval - (time.monotonic() - t0)))


class SlowViewer(threading.Thread):
    """Asks for a picture and reads it at ~2 KB/s (a phone on a bad link), again and again;
    counts the answers it got whole and those the server cut off at its deadline."""

    def __init__(self, port: int, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.port, self.stop, self.requests, self.whole, self.cut_off = port, stop, 0, 0, 0

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=30) as s:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                    s.sendall(b"GET /frame.jpg HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                    self.requests += 1
                    data = b""
                    while not self.stop.is_set():
                        chunk = s.recv(512)
                        if not chunk:
                            break
                        data += chunk
                        time.sleep(0.25)
                head, _, body = data.partition(b"\r\n\r\n")
                length = next(
                    (
                        int(line.split(b":")[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length")
                    ),
                    -1,
                )
                if length >= 0 and len(body) == length:
                    self.whole += 1
                elif not self.stop.is_set():
                    self.cut_off += 1
            except OSError:
                self.cut_off += 1
                self.stop.wait(0.5)


def _stats(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _proc_status(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def _rss_mb(pid: int) -> float:
    return _proc_status(pid, "VmRSS") / 1024


def _start(video: Path, workdir: Path, port: int | None, pace: str = "fast") -> tuple[subprocess.Popen, Path]:
    stats = workdir / f"stats_{time.monotonic_ns()}.json"
    flags = ["--web", str(port)] if port is not None else []
    cmd = daemon_command(video, stats, *flags)
    if pace != "fast":
        cmd[cmd.index("--pace") + 1] = pace
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env
    )
    end = time.monotonic() + 120
    while (doc := _stats(stats)) is None or doc.get("frames", 0) < 5:
        if proc.poll() is not None or time.monotonic() > end:
            proc.kill()
            raise SystemExit(f"daemon did not start: {proc.stderr.read()[-1000:]}")
        time.sleep(0.2)
    return proc, stats


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()


def measure(video: Path, workdir: Path, mode: str, seconds: float) -> dict:
    """One daemon run in `mode`: fps and CPU over `seconds` after a warm-up with its viewers."""
    port = free_port() if mode != "off" else None
    proc, stats = _start(video, workdir, port)
    stop = threading.Event()
    viewers = [Viewer(port, stop) for _ in range(VIEWERS[mode])]  # type: ignore[arg-type]
    try:
        for v in viewers:
            v.start()
        time.sleep(WARMUP_S)
        first, cpu0 = _stats(stats), _cpu_s(proc.pid)
        pictures0 = [v.pictures for v in viewers]
        time.sleep(seconds)
        last, cpu1 = _stats(stats), _cpu_s(proc.pid)
        pictures = [v.pictures - p for v, p in zip(viewers, pictures0, strict=True)]
        span = last["time"] - first["time"]
        return {
            "mode": mode,
            "viewers": VIEWERS[mode],
            "fps": (last["frames"] - first["frames"]) / span,
            "cpu_cores": (cpu1 - cpu0) / seconds,
            # CPU per frame: on a shared machine the fps follows the CPU share the daemon gets;
            # the CPU each frame costs (page work included) does not.
            "cpu_ms_per_frame": 1e3 * (cpu1 - cpu0) / max(1, last["frames"] - first["frames"]),
            "pictures_per_s_per_viewer": statistics.mean(pictures) / seconds if pictures else 0.0,
            "viewer_errors": sum(v.errors for v in viewers),
        }
    finally:
        stop.set()
        _stop(proc)


def soak(video: Path, workdir: Path, seconds: float) -> dict:
    """RSS every 10 s with one normal and one slow viewer, at the video's own pace."""
    port = free_port()
    proc, _ = _start(video, workdir, port, pace="realtime")
    stop = threading.Event()
    normal, slow = Viewer(port, stop), SlowViewer(port, stop)
    samples: list[tuple[float, float]] = []
    threads: list[int] = []
    try:
        normal.start()
        slow.start()
        t0 = time.monotonic()
        while (elapsed := time.monotonic() - t0) < seconds:
            samples.append((round(elapsed, 1), round(_rss_mb(proc.pid), 1)))
            threads.append(_proc_status(proc.pid, "Threads"))
            print(f"  soak {elapsed:5.0f} s: RSS {samples[-1][1]:.1f} MB", file=sys.stderr, flush=True)
            time.sleep(10)
        samples.append((round(time.monotonic() - t0, 1), round(_rss_mb(proc.pid), 1)))
    finally:
        stop.set()
        _stop(proc)

    def window(lo: float, hi: float) -> float:
        # The peak of the window: RSS dips for a moment when the allocator gives pages back.
        values = [rss for t, rss in samples if lo <= t < hi]
        return max(values) if values else float("nan")

    import numpy as np

    steady = np.array([(t, rss) for t, rss in samples if t >= 60])
    slope = float(np.polyfit(steady[:, 0], steady[:, 1], 1)[0]) * 3600 if len(steady) > 2 else 0.0
    second_minute = window(60, 120)
    last_minute = window(seconds - 60, seconds + 20)
    return {
        "seconds": seconds,
        "samples": samples,
        "rss_second_minute_mb": second_minute,
        "rss_last_minute_mb": last_minute,
        "growth_mb": last_minute - second_minute,
        "trend_mb_per_hour": slope,
        "threads_max": max(threads),
        "normal_viewer_pictures": normal.pictures,
        "slow_viewer_requests": slow.requests,
        "slow_viewer_whole": slow.whole,
        "slow_viewer_cut_off": slow.cut_off,
    }


def summary(rows: list[dict]) -> dict:
    """Per mode: medians of fps, CPU and CPU per frame, and their cost against the page off."""
    out = {}
    for mode in MODES:
        mine = [r for r in rows if r["mode"] == mode]
        out[mode] = {
            "viewers": VIEWERS[mode],
            "fps": statistics.median(r["fps"] for r in mine),
            "cpu_cores": statistics.median(r["cpu_cores"] for r in mine),
            "cpu_ms_per_frame": statistics.median(r["cpu_ms_per_frame"] for r in mine),
            "pictures_per_s_per_viewer": statistics.median(r["pictures_per_s_per_viewer"] for r in mine),
        }
    base = out["off"]
    for row in out.values():
        row["fps_cost_percent"] = 100 * (base["fps"] - row["fps"]) / base["fps"]
        row["cpu_per_frame_cost_percent"] = (
            100 * (row["cpu_ms_per_frame"] - base["cpu_ms_per_frame"]) / base["cpu_ms_per_frame"]
        )
    return out


def format_table(summary: dict) -> str:
    lines = [
        "| page | viewers | fps | fps cost | CPU cores | CPU ms/frame | CPU/frame cost "
        "| pictures/s per viewer |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for mode, r in summary.items():
        lines.append(
            f"| {'off' if mode == 'off' else 'on'} | {r['viewers']} | {r['fps']:.1f} | "
            f"{r['fps_cost_percent']:+.1f}% | {r['cpu_cores']:.2f} | {r['cpu_ms_per_frame']:.1f} | "
            f"{r['cpu_per_frame_cost_percent']:+.1f}% | {r['pictures_per_s_per_viewer']:.1f} |"
        )
    return "\n".join(lines)


def picture_cost_ms(video: Path, width: int = 960, repeats: int = 50) -> dict:
    """In this process, in CPU time of the thread doing it (so other programs on the machine
    do not count): what the frame loop does for a viewer (the HUD figures with each kept frame,
    the state document twice a second) and what a viewer's request thread does (draw the
    overlay on a 1080p frame and encode it as the page sends it, web.width wide)."""
    import cv2
    import numpy as np

    from edge_fer.config import WebConfig
    from edge_fer.display.overlay import render
    from edge_fer.display.screen import hud_for
    from edge_fer.emotions.labels import EMOTIONS
    from edge_fer.outputs.web import JPEG_QUALITY, STATE_INTERVAL_S, WebPage
    from edge_fer.runtime.results import FaceResult, FrameResult
    from edge_fer.runtime.stats import RunStats

    cv2.setNumThreads(1)  # as the daemon (model.threads: 1)
    cap = cv2.VideoCapture(str(video))
    ok, image = cap.read()
    cap.release()
    if not ok:
        raise SystemExit(f"cannot read {video}")
    probs = np.full(7, 1 / 7, np.float32)
    faces = [
        FaceResult(i, (300 + 700 * i, 300, 300, 300), "happy", 0.5, "happy", probs, 0.5) for i in range(2)
    ]
    stats = RunStats()
    for _ in range(300):
        stats.add_frame(
            {"capture": 5.0, "detect": 20.0, "classify": 1.0, "total": 26.0}, [0, 1], ["happy"] * 2
        )
    result = FrameResult(0, time.time(), image, faces, {}, "r", EMOTIONS)
    size = (width, round(image.shape[0] * width / image.shape[1]))
    page = WebPage(WebConfig(enabled=True, port=0), EMOTIONS, EMOTIONS, {"name": "m"}, "file:v", True)

    def cpu_ms(fn) -> float:  # noqa: ANN001
        times = []
        for _ in range(repeats):
            t0 = time.thread_time()
            fn()
            times.append((time.thread_time() - t0) * 1e3)
        return statistics.median(times)

    try:
        hud_ms = cpu_ms(lambda: hud_for(result, stats))
        state_ms = cpu_ms(lambda: page._state_doc(result, stats))
        hud = hud_for(result, stats)
        encode_ms = cpu_ms(
            lambda: cv2.imencode(
                ".jpg",
                render(image, faces, hud, EMOTIONS, True, size),
                [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY],
            )
        )
    finally:
        page.close()
    fps = WebConfig().fps
    return {
        "width": width,
        "web_fps": fps,
        "hud_cpu_ms": hud_ms,
        "state_cpu_ms": state_ms,
        "draw_and_encode_cpu_ms": encode_ms,
        # Per second of watching, whatever the number of viewers (pictures are shared).
        "frame_loop_cpu_ms_per_s": fps * hud_ms + state_ms / STATE_INTERVAL_S,
        "request_threads_cpu_ms_per_s": fps * encode_ms,
    }


def main() -> int:
    p = FlagParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", type=path_arg, default=DEFAULT_DATA)
    p.add_argument("--seconds", type=float, default=15.0, help="measured seconds per run")
    p.add_argument("--rounds", type=int, default=2, help="runs per mode, interleaved")
    p.add_argument("--faces", type=int, default=2)
    p.add_argument("--soak-seconds", type=float, default=600.0, help="0: no soak")
    p.add_argument("--json", type=path_arg, default=ROOT / "benchmarks" / "results" / "web.json")
    args = p.parse_args()
    if not (args.data / "test").is_dir():
        print(f"error: FER2013 not found at {args.data}; pass --data", file=sys.stderr)
        return 2
    if args.seconds < 2 or args.rounds < 0 or (args.soak_seconds and args.soak_seconds < 150):
        print(
            "error: --seconds >= 2, --rounds >= 0 (0: soak only), --soak-seconds 0 or >= 150", file=sys.stderr
        )
        return 2
    result: dict = {"cores": os.cpu_count(), "size": "1920x1080", "faces": args.faces}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        video = workdir / "grid_1080p.avi"
        grid_video(args.data, video, args.faces, (1920, 1080), 150)
        rows: list[dict] = []
        for round_ in range(args.rounds):
            for mode in MODES:
                print(f"round {round_ + 1}: {mode} ...", file=sys.stderr, flush=True)
                rows.append(measure(video, workdir, mode, args.seconds))
                print(f"  {rows[-1]}", file=sys.stderr, flush=True)
        if rows:
            result["rows"] = rows
            result["summary"] = summary(rows)
            print(format_table(result["summary"]))
            result["picture"] = picture_cost_ms(video)
            pic = result["picture"]
            print(
                f"CPU while watched (any number of viewers, web.fps {pic['web_fps']:g}): frame loop "
                f"{pic['frame_loop_cpu_ms_per_s']:.1f} ms/s (HUD {pic['hud_cpu_ms']:.2f} ms a picture, state "
                f"{pic['state_cpu_ms']:.2f} ms twice a second); request threads "
                f"{pic['request_threads_cpu_ms_per_s']:.0f} ms/s (draw + encode "
                f"{pic['draw_and_encode_cpu_ms']:.1f} ms a 1080p frame at {pic['width']} px)"
            )
        if args.soak_seconds:
            print(f"soak: {args.soak_seconds:.0f} s with a slow viewer ...", file=sys.stderr, flush=True)
            result["soak"] = soak(video, workdir, args.soak_seconds)
            s = result["soak"]
            print(
                f"soak {s['seconds']:.0f} s: RSS {s['rss_second_minute_mb']:.1f} MB in the second minute, "
                f"{s['rss_last_minute_mb']:.1f} MB in the last ({s['growth_mb']:+.1f} MB; trend "
                f"{s['trend_mb_per_hour']:+.1f} MB/h after the first minute); slow viewer "
                f"{s['slow_viewer_requests']} requests, {s['slow_viewer_whole']} read whole, "
                f"{s['slow_viewer_cut_off']} cut off; normal viewer {s['normal_viewer_pictures']} pictures; "
                f"at most {s['threads_max']} threads"
            )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

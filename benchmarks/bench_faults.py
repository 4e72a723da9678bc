#!/usr/bin/env python3
"""Fault benchmark: the real daemon under a few minutes of things going wrong.

    python benchmarks/bench_faults.py [--seconds 180]

Runs `edge-fer` on the Camera Module path (picamera2's faithful fake from testkit/fakes,
playing a looping video of real faces) with events, stats, a report and /metrics on, and
injects in rotation:
  camera       the camera is unplugged for 3 s and plugged back
  stats        the stats folder disappears (replaced by a file) for 3 s, then comes back
  reload       SIGHUP with a good config
  bad-reload   SIGHUP with a config that names a missing model file
  disk-full    SIGHUP with events going to /dev/full (ENOSPC on every write), then a good one
  bad-config   SIGHUP with a config that is no config, in turn: an alias bomb, `0`,
               duplicate keys, 20,000-deep nesting, a ~nosuchuser path, the config a FIFO
  bad-model    SIGHUP with a model whose metadata says "input": "batch of 15"
  fifo-output  SIGHUP with events going to a FIFO (and to a FIFO with a reader)
  stalled-cam  SIGHUP with a network camera that accepts and never answers (the reload is
               abandoned at reload_timeout_s)
  half-open    300 clients send half an HTTP request to /metrics and hold it open
  flood        2,000 /metrics requests from 8 clients at once (the fps it costs is noted)
  broker       SIGHUP with MQTT on, to a broker that accepts and never sends CONNACK; then
               a good config again
  signals      SIGUSR1, SIGUSR2 (a status line each)
  clash        SIGHUP with report.path a symlink to the events file, then the config file
               itself (refused: the events file and the config must come through whole)
  foreign-stats  SIGHUP with stats.path naming someone else's file (refused, the file kept)
After each fault it checks that the daemon is alive and frames are flowing again. Then
`edge-fer-classify` is run against hostile inputs and outputs (a FIFO named .jpg, /dev/zero,
a 32000x32000 PNG bomb, a 2.2 GB sparse file, stdout into `head -1`, /dev/full and closed,
--annotate onto its input, through a planted symlink, two inputs with one name): each is
checked for its exit code, one-line stderr, no traceback, nothing lost on disk, and timed
with its peak RSS. Prints both tables (faults injected, survived, what was seen; restarts
needed, frames lost, RSS at start and end; the classify cases) and writes
benchmarks/results/faults.json.
`--scenario network` (also in `all`, the default) runs the daemon on network cameras instead
(real servers on 127.0.0.1: testkit/streams.py's HostileMjpegServer and the GStreamer
RTSP server) and injects in rotation:
  http-endless     an HTTP camera's part that never ends (random bytes at 16 MB/s)
  http-hugelength  a part announcing 10 GB, then random bytes; the camera then hangs up
  http-junk        bytes with no boundary at all
  http-garbage     well-framed parts that are not JPEG
  http-degenerate  JPEG frames of 2000x2 pixels
  http-bomb        JPEGs whose header claims 60000x60000 pixels
  http-headers     parts with 5,000 header lines
  rtsp-drop        (reading RTSP) the RTSP server is killed for 3 s and started again
  rtsp-overbudget  SIGHUP to the RTSP camera with frames.max_decode_pixels below its size
                   (the reload is refused, the running camera kept)
with the peak RSS during each fault and the open file descriptors after it, and writes
benchmarks/results/faults_network.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.request import urlopen

import psutil
import yaml

from edge_fer.config import DEFAULT_MODEL
from edge_fer.core.paths import DEFAULT_DATA
from edge_fer.core.paths import PROJECT_ROOT as ROOT
from edge_fer.core.user_input import FlagParser, path_arg
from testkit import FAKES
from testkit.streams import (  # the tests' servers
    HostileMjpegServer,
    RtspServer,
    SilentServer,
    jpeg_frames,
    rtsp_server_missing,
    write_frames,
)

FAULTS = (
    "camera",
    "stats",
    "reload",
    "bad-reload",
    "disk-full",
    "bad-config",
    "bad-model",
    "fifo-output",
    "stalled-cam",
    "half-open",
    "flood",
    "broker",
    "signals",
    "clash",
    "foreign-stats",
)
ALIAS_BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{n}: &{n} [{', '.join([f'*{p}'] * 9)}]\n" for p, n in zip("abcdefgh", "bcdefghi", strict=True)
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DaemonUnderFaults:
    """A daemon started on a config in `workdir`, watched through its events file and log:
    what the camera and the network fault runs share. Subclasses inject their faults and
    release their servers (`release`)."""

    stop_timeout_s = 10.0

    def __init__(self, workdir: Path, faults: tuple[str, ...]) -> None:
        self.workdir = workdir
        self.notes: dict[str, list[str]] = {f: [] for f in faults}
        self.events = workdir / "events.jsonl"
        self.report = workdir / "report.json"
        self.config_path = workdir / "config.yaml"

    def start(self, config: dict, env: dict[str, str]) -> None:
        """Write `config` and start the daemon on it (stderr to daemon.log)."""
        self.write_config(config)
        self.log = (self.workdir / "daemon.log").open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "edge_fer.apps.daemon", "--config", str(self.config_path)],
            cwd=ROOT,
            env={**os.environ, **env, "PYTHONUNBUFFERED": "1"},
            stdout=subprocess.DEVNULL,
            stderr=self.log,
        )
        self.process = psutil.Process(self.proc.pid)

    def write_config(self, data: dict | str) -> None:
        tmp = self.config_path.with_suffix(".tmp")
        tmp.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
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

    def rss_mb(self) -> float:
        return self.process.memory_info().rss / 2**20

    def log_text(self) -> str:
        self.log.flush()
        return (self.workdir / "daemon.log").read_text(errors="replace")

    def inject(self, fault: str) -> float | None:
        """Inject `fault`; the peak RSS (MB) during it when it is measured."""
        raise NotImplementedError

    def release(self) -> None:
        """Close the servers the faults use."""

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=self.stop_timeout_s)
        finally:
            self.log.close()
            self.release()


@dataclass
class Rounds:
    """What `fault_rounds` saw: per fault how often it was injected and survived, and its
    peak RSS (MB, when measured); the daemon's RSS and open fds at the start; the start time."""

    injected: dict[str, int]
    survived: dict[str, int]
    peaks: dict[str, float]
    rss_start: float
    fds_start: int
    started: float


def fault_rounds(daemon: DaemonUnderFaults, faults: tuple[str, ...], seconds: float) -> Rounds:
    """Inject `faults` in rotation for `seconds` (each at least once), checking after each
    that frames flow again (a daemon that does not start is stopped: SystemExit)."""
    if not daemon.wait_for_frames(30, timeout=60):
        daemon.stop()
        raise SystemExit(f"the daemon did not start: {(daemon.workdir / 'daemon.log').read_text()[-800:]}")
    injected = {f: 0 for f in faults}
    survived = {f: 0 for f in faults}
    peaks: dict[str, float] = {f: 0.0 for f in faults}
    rss_start, fds_start = daemon.rss_mb(), daemon.process.num_fds()
    started = time.monotonic()
    i = 0
    while time.monotonic() - started < seconds or i < len(faults):  # each kind at least once
        fault = faults[i % len(faults)]
        i += 1
        injected[fault] += 1
        peaks[fault] = max(peaks[fault], daemon.inject(fault) or 0.0)
        if daemon.wait_for_frames(20, timeout=30):
            survived[fault] += 1
        elif daemon.proc.poll() is not None:
            break
    return Rounds(injected, survived, peaks, rss_start, fds_start, started)


def finish(daemon: DaemonUnderFaults, rounds: Rounds) -> tuple[dict, str]:
    """Stop the daemon after its rounds: the figures both runs report (faults, exit code,
    frames, RSS and open fds at the start and end, tracebacks), and the daemon's log."""
    alive = daemon.proc.poll() is None
    rss_end = daemon.rss_mb() if alive else None
    fds_end = daemon.process.num_fds() if alive else None
    code = daemon.stop()
    log = (daemon.workdir / "daemon.log").read_text(errors="replace")  # with what it logged last
    report = json.loads(daemon.report.read_text()) if daemon.report.is_file() else {}
    faults = {
        f: {"injected": n, "survived": rounds.survived[f], "seen": sorted(set(daemon.notes[f]))}
        for f, n in rounds.injected.items()
    }
    return {
        "seconds": round(time.monotonic() - rounds.started, 1),
        "exit_code": code,
        "faults": faults,
        "restarts_needed": 0 if code == 0 else 1,
        "frames": report.get("frames"),
        "frames_lost": report.get("bad_frames"),
        "reconnects": report.get("reconnects"),
        "rss_start_mb": round(rounds.rss_start, 1),
        "rss_end_mb": None if rss_end is None else round(rss_end, 1),
        "fds_start": rounds.fds_start,
        "fds_end": fds_end,
        "tracebacks": log.count("Traceback"),
        "reload_failures_logged": log.count("config reload failed"),
    }, log


class FaultRun(DaemonUnderFaults):
    """The daemon on the Camera Module (picamera2's fake), its files, and the means to break them."""

    def __init__(self, workdir: Path, video: Path, model: Path) -> None:
        super().__init__(workdir, FAULTS)
        self.metrics_port = free_port()
        self.silent = SilentServer()
        self.round = 0
        self.bad_model = workdir / "bad_meta.pte"
        shutil.copy(model, self.bad_model)
        meta = json.loads(model.with_suffix(".json").read_text())
        self.bad_model.with_suffix(".json").write_text(json.dumps({**meta, "input": "batch of 15"}))
        self.stats_dir = workdir / "run"
        self.stats_dir.mkdir()
        self.stats = self.stats_dir / "stats.json"
        self.unplug = workdir / "unplugged"
        self.good = {
            "source": "picamera2",
            "display": {"mode": "none"},
            "stats": {"path": str(self.stats), "interval_s": 0.5},
            "events": {"path": str(self.events)},
            "report": {"path": str(self.report)},
            "metrics": {"port": self.metrics_port},
            "reconnect_max_backoff_s": 1.0,
            "reload_timeout_s": 3,
            "log_level": "INFO",
        }
        env = {
            "PYTHONPATH": str(FAKES),
            "FAKE_PICAMERA2_VIDEO": str(video),
            "FAKE_PICAMERA2_UNPLUG_FILE": str(self.unplug),
        }
        self.start(self.good, env)

    def fps(self, seconds: float = 2.0) -> float:
        start, t0 = self.frames(), time.monotonic()
        time.sleep(seconds)
        return (self.frames() - start) / (time.monotonic() - t0)

    def scrape(self) -> bool:
        try:
            return (
                b"edge_fer_frames_total"
                in urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).read()
            )
        except OSError:
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
        elif fault == "bad-config":
            kind = ("alias bomb", "0", "duplicate keys", "deep nesting", "~nosuchuser", "FIFO")[
                self.round % 6
            ]
            self.notes[fault].append(kind)
            if kind == "FIFO":
                self.config_path.unlink()
                os.mkfifo(self.config_path)
                self.proc.send_signal(signal.SIGHUP)
                time.sleep(1.5)
                self.config_path.unlink()
                self.write_config(self.good)
            else:
                text = {
                    "alias bomb": ALIAS_BOMB,
                    "0": "0\n",
                    "duplicate keys": yaml.safe_dump(self.good) + "source: auto\n",
                    "deep nesting": "[" * 20000 + "]" * 20000,
                    "~nosuchuser": yaml.safe_dump({**self.good, "report": {"path": "~nosuchuser/r.json"}}),
                }[kind]
                self.reload(text)
            self.write_config(self.good)
        elif fault == "bad-model":
            self.reload({**self.good, "model": {"path": str(self.bad_model)}})
        elif fault == "fifo-output":
            fifo = self.workdir / "events.fifo"
            if not fifo.exists():
                os.mkfifo(fifo)
            reader = None
            if self.round % 2:  # with a reader on the other end too
                reader = subprocess.Popen(["cat", str(fifo)], stdout=subprocess.DEVNULL)
                time.sleep(0.2)
            self.reload({**self.good, "events": {"path": str(fifo)}})
            if reader is not None:
                reader.kill()
                reader.wait()
                self.notes[fault].append("with a reader")
        elif fault == "stalled-cam":
            url = f"http://127.0.0.1:{self.silent.port}/video.mjpg"
            self.reload({**self.good, "source": url, "stream": {"open_timeout_s": 4}})
            time.sleep(4)
        elif fault == "half-open":
            base = self.process.num_threads()
            clients = []
            for _ in range(300):
                try:
                    c = socket.create_connection(("127.0.0.1", self.metrics_port), timeout=2)
                    c.send(b"GET /metr")
                    clients.append(c)
                except OSError:
                    pass
            time.sleep(1)
            peak = self.process.num_threads()
            fps = self.fps(2)
            for c in clients:
                c.close()
            time.sleep(5.5)  # past the per-client deadline
            ok = self.scrape()
            self.notes[fault].append(f"threads {base}->{peak}, {fps:.0f} fps held, scrape after: {ok}")
        elif fault == "flood":
            before = self.fps(3)
            stop_at = time.monotonic() + 3
            counts = [0]

            def hammer() -> None:
                while counts[0] < 2000 and time.monotonic() < stop_at + 30:
                    try:
                        urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).read()
                    except OSError:
                        pass
                    counts[0] += 1

            threads = [threading.Thread(target=hammer, daemon=True) for _ in range(8)]
            t0 = time.monotonic()
            for t in threads:
                t.start()
            during = self.fps(3)
            for t in threads:
                t.join(timeout=60)
            took = time.monotonic() - t0
            drop = 100 * (1 - during / before) if before else 0.0
            self.notes[fault].append(
                f"{counts[0]} requests in {took:.1f} s, fps {before:.0f}->{during:.0f} ({drop:.0f}% less)"
            )
        elif fault == "broker":
            self.reload({**self.good, "mqtt": {"url": f"mqtt://127.0.0.1:{self.silent.port}"}})
            fps = self.fps(3)
            self.notes[fault].append(f"{fps:.0f} fps with the broker stalled")
            self.reload(self.good)
        elif fault == "signals":
            for sig in (signal.SIGUSR1, signal.SIGUSR2):
                self.proc.send_signal(sig)
                time.sleep(0.3)
        elif fault == "clash":
            link = self.workdir / "report-link.json"
            if not link.is_symlink():
                link.symlink_to(self.events)
            lines = self.frames()
            for target in (link, self.config_path):
                self.reload({**self.good, "report": {"path": str(target)}})
            kept = self.frames() >= lines and yaml.safe_load(self.config_path.read_text()) is not None
            self.write_config(self.good)
            self.notes[fault].append(f"events and config kept: {kept}")
        elif fault == "foreign-stats":
            foreign = self.workdir / "notes.txt"
            foreign.write_text("someone's notes")
            self.reload({**self.good, "stats": {"path": str(foreign), "interval_s": 0.5}})
            self.notes[fault].append(f"file kept: {foreign.read_text() == 'someone' + chr(39) + 's notes'}")
            self.write_config(self.good)
        self.round += 1

    def release(self) -> None:
        self.silent.close()


def run(video: Path, seconds: float, workdir: Path, model: Path) -> dict:
    daemon = FaultRun(workdir, video, model)
    rounds = fault_rounds(daemon, FAULTS, seconds)
    result, log = finish(daemon, rounds)
    return {
        **result,
        "status_lines_logged": log.count("received SIGUSR"),
    }


# Runs one shell command and reports its exit code and its peak RSS (the largest child's).
CLASSIFY_RSS = """
import resource, subprocess, sys
code = subprocess.run(["bash", "-c", sys.argv[1]]).returncode
print(code, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)
"""


def _png_bomb(w: int, h: int) -> bytes:
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    idat = zlib.compress(bytes((w + 1) * 64), 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def classify_faults(workdir: Path, data: Path, model: Path) -> list[dict]:
    """`edge-fer-classify` against hostile inputs and outputs: per case the exit code wanted and
    got, stderr lines, tracebacks, whether what was on disk survived, seconds, peak RSS."""
    root = workdir / "classify"
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    faces = sorted((data / "test" / "happy").glob("*.jpg"))[:2]
    shutil.copy(faces[0], root / "a" / "p.jpg")
    shutil.copy(faces[1], root / "b" / "p.jpg")
    face = root / "a" / "p.jpg"
    original = face.read_bytes()
    os.mkfifo(root / "x.jpg")
    (root / "bomb.png").write_bytes(_png_bomb(32000, 32000))
    with open(root / "huge.jpg", "wb") as f:
        f.truncate(2200 << 20)
    (root / "out").mkdir()
    (root / "victim.txt").write_text("precious")
    (root / "out" / "p.annotated.jpg").symlink_to(root / "victim.txt")
    many = root / "many"
    many.mkdir()
    for i in range(200):
        shutil.copy(faces[i % 2], many / f"f{i:03d}.jpg")
    cli = f"{sys.executable} -m edge_fer.apps.classify --model {model} --no-detect"
    cases = [
        ("FIFO named .jpg", f"{cli} x.jpg", 2, lambda: True),
        ("/dev/zero", f"{cli} /dev/zero", 2, lambda: True),
        ("32000x32000 PNG bomb", f"{cli} bomb.png", 2, lambda: True),
        ("2.2 GB sparse file", f"{cli} huge.jpg", 2, lambda: True),
        (
            "stdout into head -1",
            f"{cli} many | head -1 > /dev/null; exit ${{PIPESTATUS[0]}}",
            141,
            lambda: True,
        ),
        ("stdout on /dev/full", f"{cli} a/p.jpg > /dev/full", 2, lambda: True),
        ("stdout closed", f"{cli} a/p.jpg >&-", 2, lambda: True),
        (
            "--annotate onto its input",
            f"{cli} a/p.jpg --annotate a/p.jpg",
            2,
            lambda: face.read_bytes() == original,
        ),
        (
            "planted symlink in --annotate folder",
            f"{cli} a/p.jpg --annotate out > /dev/null",
            0,
            lambda: (root / "victim.txt").read_text() == "precious",
        ),
        (
            "a/p.jpg and b/p.jpg into one folder",
            f"{cli} a/p.jpg b/p.jpg --annotate two > /dev/null",
            0,
            lambda: len(list((root / "two").iterdir())) == 2,
        ),
    ]
    rows = []
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for name, command, want, kept in cases:
        t0 = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-c", CLASSIFY_RSS, command],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        seconds = time.monotonic() - t0
        *errors, last = proc.stderr.strip().splitlines()
        code, rss_kb = (int(v) for v in last.split())
        rows.append(
            {
                "case": name,
                "exit_wanted": want,
                "exit": code,
                "stderr_lines": len(errors),
                "tracebacks": proc.stderr.count("Traceback"),
                "kept": bool(kept()),
                "seconds": round(seconds, 2),
                "peak_rss_mb": round(rss_kb / 1024, 1),
                "ok": code == want and len(errors) <= 1 and "Traceback" not in proc.stderr and bool(kept()),
                "error": errors[0] if errors else "",
            }
        )
    return rows


def classify_table(rows: list[dict]) -> str:
    lines = [f"{'classify case':<38}{'exit':>5}{'want':>5}{'lines':>6}{'kept':>6}{'s':>7}{'RSS MB':>8}  ok"]
    for r in rows:
        lines.append(
            f"{r['case']:<38}{r['exit']:>5}{r['exit_wanted']:>5}{r['stderr_lines']:>6}{str(r['kept']):>6}"
            f"{r['seconds']:>7.2f}{r['peak_rss_mb']:>8.1f}  {'yes' if r['ok'] else 'NO'}"
        )
    return "\n".join(lines)


NETWORK_FAULTS = (
    "http-endless",
    "http-hugelength",
    "http-junk",
    "http-garbage",
    "http-degenerate",
    "http-bomb",
    "http-headers",
    "rtsp-drop",
    "rtsp-overbudget",
)
HTTP_MODES = {f"http-{m.replace('-', '')}": m for m in HostileMjpegServer.MODES}


class NetworkFaultRun(DaemonUnderFaults):
    """The daemon on a hostile HTTP camera and the GStreamer RTSP server."""

    stop_timeout_s = 15.0

    def __init__(self, workdir: Path, video: Path, model: Path) -> None:
        super().__init__(workdir, NETWORK_FAULTS)
        pattern = write_frames(video, workdir / "frames", count=40, step=3)
        self.http = HostileMjpegServer(jpeg_frames(pattern), fps=15, rate=16 << 20)
        self.rtsp = RtspServer(pattern, fps=15)
        self.http_config = {
            "source": self.http.url,
            "display": {"mode": "none"},
            "stats": {"path": str(workdir / "stats.json"), "interval_s": 0.5},
            "events": {"path": str(self.events)},
            "report": {"path": str(self.report)},
            "stream": {"open_timeout_s": 2, "read_timeout_s": 2},
            "frames": {"max_part_bytes": 1 << 20},
            "reconnect_max_backoff_s": 1.0,
            "reload_timeout_s": 20,
            "model": {"path": str(model)},
            "log_level": "INFO",
        }
        self.rtsp_config = {**self.http_config, "source": self.rtsp.url}
        self.start(self.http_config, {})

    def reload(self, data: dict) -> None:
        self.write_config(data)
        self.proc.send_signal(signal.SIGHUP)

    def watch(self, seconds: float) -> float:
        """The peak RSS (MB) over `seconds`, sampled every 0.1 s."""
        peak, end = 0.0, time.monotonic() + seconds
        while time.monotonic() < end and self.proc.poll() is None:
            peak = max(peak, self.rss_mb())
            time.sleep(0.1)
        return peak

    def inject(self, fault: str) -> float:
        """Inject `fault`; returns the peak RSS during it."""
        if fault.startswith("http-"):
            if self.http_config["source"] not in self.config_path.read_text():
                self.reload(self.http_config)
                self.wait_for_frames(10)
            self.http.mode = HTTP_MODES[fault]
            peak = self.watch(6 if fault in ("http-endless", "http-hugelength", "http-junk") else 4)
            self.http.mode = "good"
            return peak
        self.reload(self.rtsp_config)
        self.wait_for_frames(10)
        if fault == "rtsp-drop":
            self.rtsp.stop()
            peak = self.watch(3)
            self.rtsp.start()
            return peak
        # rtsp-overbudget: a reload to a camera past the decode budget is refused
        before = self.log_text().count("config reload failed")
        self.reload({**self.rtsp_config, "frames": {"max_decode_pixels": 76_800}})
        peak = self.watch(6)
        if self.log_text().count("config reload failed") > before:
            self.notes[fault].append("reload refused, running camera kept")
        self.write_config(self.rtsp_config)
        return peak

    def release(self) -> None:
        self.http.close()
        self.rtsp.stop()


def run_network(video: Path, seconds: float, workdir: Path, model: Path) -> dict:
    missing = rtsp_server_missing()
    if missing:
        raise SystemExit(f"error: {missing}")
    daemon = NetworkFaultRun(workdir, video, model)
    rounds = fault_rounds(daemon, NETWORK_FAULTS, seconds)
    result, log = finish(daemon, rounds)
    for fault, row in result["faults"].items():
        row["peak_rss_mb"] = round(rounds.peaks[fault], 1)
    return {
        **result,
        "http_bytes_sent": daemon.http.sent_bytes,
        "rss_peak_mb": round(max(rounds.peaks.values()), 1),
        "warnings_logged": log.count(" WARNING "),
        "status_lines_logged": 0,
        "first_traceback": log[log.index("Traceback") :][:3000] if "Traceback" in log else None,
    }


def table(result: dict) -> str:
    network = "peak_rss_mb" in next(iter(result["faults"].values()))
    head = f"{'fault':<16}{'injected':>9}{'survived':>9}" + (f"{'peak RSS MB':>12}" if network else "")
    lines = [head + "  seen"]
    for fault, row in result["faults"].items():
        seen = "; ".join(row.get("seen", []))
        peak = f"{row['peak_rss_mb']:>12}" if network else ""
        lines.append(f"{fault:<16}{row['injected']:>9}{row['survived']:>9}{peak}  {seen}".rstrip())
    if network:
        lines.append(
            f"\nHTTP camera sent {result['http_bytes_sent'] / 2**20:.0f} MB; "
            f"open fds {result['fds_start']} at "
            f"the start, {result['fds_end']} at the end; RSS peak {result['rss_peak_mb']} MB; "
            f"warnings logged {result['warnings_logged']}"
        )
    lines += [
        "",
        f"run {result['seconds']} s, exit code {result['exit_code']}, restarts needed "
        f"{result['restarts_needed']}, tracebacks {result['tracebacks']}",
        f"frames {result['frames']}, frames lost (failed grabs) {result['frames_lost']}, "
        f"camera reconnects {result['reconnects']}",
        f"RSS {result['rss_start_mb']} MB at the start, {result['rss_end_mb']} MB at the end; "
        f"reload failures logged {result['reload_failures_logged']}, "
        f"status lines {result['status_lines_logged']}",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from edge_fer.data.demo_video import build_demo_video

    p = FlagParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seconds", type=float, default=180.0, help="how long to keep injecting")
    p.add_argument("--data", type=path_arg, default=DEFAULT_DATA)
    p.add_argument("--json", type=path_arg, default=ROOT / "benchmarks" / "results" / "faults.json")
    p.add_argument("--model", type=path_arg, default=DEFAULT_MODEL, help="the model the daemon runs")
    p.add_argument(
        "--scenario",
        choices=("camera", "network", "all"),
        default="all",
        help="camera: the Camera Module faults (and the edge-fer-classify cases); network: HTTP and"
        " RTSP cameras; all: both in turn",
    )
    p.add_argument(
        "--classify-only", action="store_true", help="only the edge-fer-classify cases (no daemon run)"
    )
    p.add_argument(
        "--network-json", type=path_arg, default=ROOT / "benchmarks" / "results" / "faults_network.json"
    )
    args = p.parse_args(argv)
    if not (args.data / "test").is_dir():
        print(f"error: FER2013 not found at {args.data}; pass --data", file=sys.stderr)
        return 2
    if not 10 <= args.seconds <= 86400:
        print("error: --seconds must be between 10 and 86400", file=sys.stderr)
        return 2
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        video = workdir / "faces.mp4"
        if not args.classify_only:
            build_demo_video(args.data, video, frames=300, faces=2, hold=30, seed=5)
        if args.classify_only or args.scenario in ("camera", "all"):
            camera_dir = workdir / "camera"
            camera_dir.mkdir()
            result: dict = {}
            if not args.classify_only:
                result = run(video, args.seconds, camera_dir, args.model)
                shutil.rmtree(camera_dir / "run.away", ignore_errors=True)
            result["classify"] = classify_faults(camera_dir, args.data, args.model)
            results.append((result, args.json))
        if not args.classify_only and args.scenario in ("network", "all"):
            network_dir = workdir / "network"
            network_dir.mkdir()
            results.append((run_network(video, args.seconds, network_dir, args.model), args.network_json))
    ok = True
    for result, path in results:
        if "restarts_needed" in result:  # a daemon run (not --classify-only)
            print(table(result) + "\n")
        if "classify" in result:
            print(classify_table(result["classify"]) + "\n")
            ok = ok and all(r["ok"] for r in result["classify"])
        ok = ok and result.get("restarts_needed", 0) == 0
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=2) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""`edge-fer-monitor`: sample system and daemon figures, print a summary (and JSON/CSV).

    edge-fer-monitor --seconds 10 [--interval 0.5] [--json] [--csv PATH] [--pid PID]
    edge-fer-monitor --metrics-port 9101       # also serve the figures to Prometheus

Without --seconds it runs until stopped, logging one line per interval (to journald
when started by systemd).
"""

from __future__ import annotations

import argparse
import csv
import logging
import math
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import IO

import numpy as np
import psutil

from edge_fer.core.logs import ensure_std_streams, setup_logging
from edge_fer.core.paths import DEFAULT_STATS, expand_user, live_stats_to_read
from edge_fer.core.safe_io import PathRefused, check_length, dumps_json, kind_of, open_stream
from edge_fer.core.user_input import FlagParser, path_arg
from edge_fer.monitor.daemon_stats import DaemonWatcher
from edge_fer.monitor.sensors import choose_power_source, read_thermals

log = logging.getLogger("edge_fer.monitor")
FIGURES = (
    "power_w",
    "core_power_w",
    "cpu_percent",
    "mem_available_mb",
    "temp_c",
    "cpu_mhz",
    "daemon_cpu_percent",
    "daemon_threads",
    "daemon_rss_mb",
    "daemon_pss_mb",
    "daemon_fps",
    "daemon_total_p50_ms",
    "daemon_total_p95_ms",
    "daemon_detect_p50_ms",
    "daemon_classify_p50_ms",
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = FlagParser(
        prog="edge-fer-monitor", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--seconds", type=float, help="sample for this long, then print a summary")
    p.add_argument("--interval", type=float, default=0.5, help="seconds between samples")
    p.add_argument("--json", action="store_true", help="last stdout line: one JSON object")
    p.add_argument("--csv", type=path_arg, help="also write every sample to this CSV file")
    p.add_argument("--pid", type=int, help="watch this process instead of the stats file's pid")
    p.add_argument(
        "--stats",
        type=path_arg,
        default=live_stats_to_read(),
        help=f"the daemon's stats file (default: {DEFAULT_STATS}, else your own daemon's)",
    )
    p.add_argument(
        "--metrics-port",
        type=int,
        metavar="PORT",
        help="serve the figures as Prometheus /metrics on this port",
    )
    p.add_argument("--metrics-bind", default="127.0.0.1", help="address for --metrics-port")
    args = p.parse_args(argv)
    if not (math.isfinite(args.interval) and 0.01 <= args.interval <= 3600):
        p.error(f"--interval must be a number of seconds between 0.01 and 3600, got {args.interval}")
    if args.seconds is not None and not (math.isfinite(args.seconds) and 0 < args.seconds <= 1e7):
        p.error(f"--seconds must be a positive number of seconds, got {args.seconds}")
    if args.pid is not None and args.pid <= 0:
        p.error(f"--pid must be a positive process id, got {args.pid}")
    if args.metrics_port is not None and not 1 <= args.metrics_port <= 65535:
        p.error(f"--metrics-port must be between 1 and 65535, got {args.metrics_port}")
    for flag in ("csv", "stats"):
        value = getattr(args, flag)
        if value is None:
            continue
        try:
            value = expand_user(value)
            check_length(value)
            kind = kind_of(os.stat(value).st_mode) if value.exists() else None
        except (ValueError, OSError) as exc:
            p.error(f"--{flag}: {str(value)[:80]} is not a usable path ({exc})")
        setattr(args, flag, value)
        if kind == "a directory":
            p.error(f"--{flag}: {value} is a directory; give a file path")
        if flag == "stats" and kind not in (None, "a regular file"):
            p.error(f"--stats: {value} is {kind}, not the daemon's stats file; give its path")
        if flag == "csv" and kind not in (None, "a regular file", "a character device"):
            p.error(f"--csv: {value} is {kind}, not a regular file; give a file path")
        if flag == "csv" and not value.parent.is_dir():
            p.error(f"--csv: folder {value.parent} does not exist")
    return args


class Sampler:
    """Takes one row of figures per call; keeps the power source and notes."""

    def __init__(self, stats: Path, pid: int | None) -> None:
        self.power, self.power_note = choose_power_source()
        self.daemon = DaemonWatcher(stats, pid)
        self.daemon_note = ""
        psutil.cpu_percent(None, percpu=True)  # prime the counters
        self.daemon.prime()

    def sample(self) -> dict:
        per_core = psutil.cpu_percent(None, percpu=True)
        row: dict = {
            "time": time.time(),
            "cpu_percent": float(np.mean(per_core)),
            "cpu_per_core": per_core,
            "mem_available_mb": psutil.virtual_memory().available / 2**20,
        }
        power = self.power.read() if self.power is not None else None
        row["power_w"], row["core_power_w"] = power if power else (None, None)
        thermals = read_thermals()
        row["temp_c"], row["cpu_mhz"] = thermals.temp_c, thermals.cpu_mhz
        row["throttled"] = hex(thermals.throttle.raw) if thermals.throttle else None
        row["throttle_flags"] = thermals.throttle.flags if thermals.throttle else []
        d = self.daemon.sample()
        self.daemon_note = d.reason
        lat = d.latency_ms or {}
        row.update(
            {
                "daemon_running": d.running,
                "daemon_pid": d.pid,
                "daemon_cpu_percent": d.cpu_percent,
                "daemon_threads": d.threads,
                "daemon_rss_mb": d.rss_mb,
                "daemon_pss_mb": d.pss_mb,
                "daemon_fps": d.fps,
                "daemon_faces": d.faces,
                "daemon_dropped_frames": d.dropped_frames,
                "daemon_total_p50_ms": lat.get("total", {}).get("p50"),
                "daemon_total_p95_ms": lat.get("total", {}).get("p95"),
                "daemon_detect_p50_ms": lat.get("detect", {}).get("p50"),
                "daemon_classify_p50_ms": lat.get("classify", {}).get("p50"),
            }
        )
        return row


def summarize(rows: list[dict], duration_s: float, power_note: str, daemon_note: str) -> dict:
    """min/mean/p95/max per figure ("n/a" figures are None), energy, throttling seen."""
    figures = {}
    for name in FIGURES:
        values = np.array([r[name] for r in rows if r.get(name) is not None], dtype=float)
        figures[name] = (
            None
            if values.size == 0
            else {
                "min": float(values.min()),
                "mean": float(values.mean()),
                "p95": float(np.percentile(values, 95)),
                "max": float(values.max()),
            }
        )
    energy = None
    times = [r["time"] for r in rows if r["power_w"] is not None]
    watts = [r["power_w"] for r in rows if r["power_w"] is not None]
    if len(watts) >= 2:
        energy = float(np.trapezoid(watts, times))
    flags = sorted({f for r in rows for f in r["throttle_flags"]})
    per_core = np.array([r["cpu_per_core"] for r in rows]) if rows else np.zeros((0, 0))
    return {
        "samples": len(rows),
        "seconds": duration_s,
        "figures": figures,
        "energy_j": energy,
        "power_source": power_note,
        "throttle_flags_seen": flags,
        "cpu_per_core_mean": per_core.mean(axis=0).round(1).tolist() if len(rows) else [],
        "daemon": daemon_note,
        "daemon_seen": any(r["daemon_running"] for r in rows),
    }


def format_table(summary: dict, power_line: bool = True) -> str:
    """The summary as a table; `power_line`: also say where power comes from (or why n/a),
    unless the log said so at the start."""
    lines = [f"{'figure':<24}{'min':>10}{'mean':>10}{'p95':>10}{'max':>10}"]
    for name, stats in summary["figures"].items():
        if stats is None:
            lines.append(f"{name:<24}{'n/a':>10}{'n/a':>10}{'n/a':>10}{'n/a':>10}")
        else:
            lines.append(f"{name:<24}" + "".join(f"{stats[k]:>10.2f}" for k in ("min", "mean", "p95", "max")))
    energy = summary["energy_j"]
    lines += [
        "",
        f"samples {summary['samples']} over {summary['seconds']:.1f} s; "
        f"energy {'n/a' if energy is None else f'{energy:.2f} J'}",
        *([summary["power_source"]] if power_line else []),
        f"per-core CPU % (mean): {summary['cpu_per_core_mean']}",
        f"throttling flags seen: {', '.join(summary['throttle_flags_seen']) or 'none'}",
        f"daemon: {summary['daemon']}",
    ]
    return "\n".join(lines)


def _log_line(row: dict) -> str:
    def f(v: float | None, unit: str, fmt: str = ".1f") -> str:
        return "n/a" if v is None else f"{v:{fmt}}{unit}"

    daemon = (
        f"fps {f(row['daemon_fps'], '')} p50 {f(row['daemon_total_p50_ms'], 'ms')} "
        f"rss {f(row['daemon_rss_mb'], 'MB', '.0f')}"
        if row["daemon_running"]
        else "daemon n/a"
    )
    return (
        f"power {f(row['power_w'], 'W', '.2f')} cpu {f(row['cpu_percent'], '%')} "
        f"temp {f(row['temp_c'], 'C')} clock {f(row['cpu_mhz'], 'MHz', '.0f')} "
        f"throttled {row['throttled'] or 'n/a'} | {daemon}"
    )


def main(argv: list[str] | None = None) -> int:
    ensure_std_streams()
    args = parse_args(argv)
    setup_logging("INFO")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    sampler = Sampler(args.stats, args.pid)
    if args.seconds is None:  # running on: say it now; a --seconds summary says it once at the end
        log.info(sampler.power_note)
    rows: list[dict] = []
    writer = None
    csv_file: IO[str] | None = None
    csv_failed = False
    if args.csv is not None:
        try:
            fd = open_stream(args.csv, append=False, mode=0o644)
            # line-buffered: every row reaches the file (or fails) when it is written
            csv_file = open(fd, "w", newline="", buffering=1, encoding="utf-8")  # noqa: SIM115
            writer = csv.writer(csv_file)
            writer.writerow(["time", *FIGURES, "throttled"])
        except (OSError, PathRefused) as exc:
            why = getattr(exc, "strerror", None) or exc
            print(
                f"edge-fer-monitor: error: --csv: cannot write {args.csv} ({why}); choose a writable path",
                file=sys.stderr,
            )
            return 2
    exporter = None
    if args.metrics_port is not None:
        from edge_fer.core.http_server import ListenError
        from edge_fer.monitor.prometheus import MonitorExporter

        try:
            exporter = MonitorExporter(args.metrics_port, args.metrics_bind)
        except ListenError as exc:
            print(f"edge-fer-monitor: error: {exc}", file=sys.stderr)
            return 2
    start = time.monotonic()
    try:
        while not stop.is_set():
            if stop.wait(args.interval):
                break
            row = sampler.sample()
            rows.append(row)
            if exporter is not None:
                exporter.update(row)
            if writer is not None:
                try:
                    writer.writerow([row["time"], *(row[k] for k in FIGURES), row["throttled"]])
                except OSError as exc:
                    log.error("--csv: writing %s failed (%s); CSV logging stopped", args.csv, exc.strerror)
                    writer, csv_failed = None, True
            if args.seconds is None:
                log.info(_log_line(row))
            elif time.monotonic() - start >= args.seconds:
                break
    finally:
        if exporter is not None:
            exporter.close()
        if csv_file is not None:
            try:
                csv_file.close()
            except OSError as exc:
                if not csv_failed:
                    log.error("--csv: writing %s failed (%s); rows were lost", args.csv, exc.strerror)
                csv_failed = True
    summary = summarize(rows, time.monotonic() - start, sampler.power_note, sampler.daemon_note)
    print(format_table(summary, power_line=args.seconds is not None))
    if args.json:
        print(dumps_json(summary))
    return 1 if csv_failed else 0


if __name__ == "__main__":
    from edge_fer.core.memory import monitor  # the console script's memory rules for `python -m` too

    monitor()

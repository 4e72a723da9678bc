"""Everything a hostile user or the world throws at the real `edge-fer` and `edge-fer-monitor`:
each gets a one-line error naming the problem (and a non-zero exit), or, while running, a
logged warning and the daemon carrying on. Never a traceback, a hang or a partial file."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from testkit import FAKES
from testkit.programs import assert_one_line_error, edge_fer, monitor

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def base(video_args) -> list[str]:
    return [*video_args, "--max-frames", "30"]


def _model_with_metadata(tmp_path: Path, shipped_model: Path, edit) -> Path:
    model = tmp_path / "m.pte"
    shutil.copy(shipped_model, model)
    meta = json.loads(shipped_model.with_suffix(".json").read_text())
    edit(meta)
    model.with_suffix(".json").write_text(json.dumps(meta))
    return model


CONFIG_CASES = [
    ("latin1", b"source: caf\xe9\n", "not UTF-8 text"),
    ("nan", b"stats: {interval_s: .nan}\n", "'stats.interval_s': nan"),
    ("inf", b"stats: {window_s: .inf}\n", "'stats.window_s': inf"),
    ("index", b"camera: {index: -1}\n", "'camera.index': -1"),
    ("list", b"- a\n- b\n", "must be a mapping"),
    ("mqtt", b"mqtt: {url: 'http://broker'}\n", "'mqtt.url'"),
    ("mqttcreds", b"mqtt: {url: 'mqtt://u:p@broker'}\n", "must not hold credentials"),
]


@pytest.mark.parametrize("name, content, needle", CONFIG_CASES, ids=[c[0] for c in CONFIG_CASES])
def test_bad_config_files(tmp_path, base, name, content, needle):
    config = tmp_path / f"{name}.yaml"
    config.write_bytes(content)
    assert_one_line_error(edge_fer([*base, "--config", str(config)]), 2, "config error", needle)


def test_config_that_is_a_directory(tmp_path, base):
    assert_one_line_error(edge_fer([*base, "--config", str(tmp_path)]), 2, "is a directory")


FLAG_CASES = [
    (["--threads", "100000"], "--threads must be between 1 and 16"),
    (["--threads", "0"], "--threads must be between 1 and 16"),
    (["--max-frames", "-3"], "--max-frames must be a positive integer"),
    (["--metrics-port", "70000"], "--metrics-port must be between 1 and 65535, got 70000"),
    (["--web", "70000"], "--web must be between 1 and 65535, got 70000"),
    (["--mqtt", "broker:1883"], "'mqtt.url'"),
    (["--events-jsonl", "/nonexistent/dir/e.jsonl"], "folder /nonexistent/dir does not exist"),
    (["--report-json", "/nonexistent/dir/r.json"], "folder /nonexistent/dir does not exist"),
    (["--events-jsonl", "{tmp}"], "is a directory"),
    (["--report-json", "{tmp}"], "is a directory"),
]


@pytest.mark.parametrize("flags, needle", FLAG_CASES, ids=[" ".join(c[0]) for c in FLAG_CASES])
def test_bad_flags_and_output_paths(tmp_path, base, flags, needle):
    flags = [f.replace("{tmp}", str(tmp_path)) for f in flags]
    assert_one_line_error(edge_fer([*base, *flags]), 2, needle)


def test_bad_models_and_metadata(tmp_path, base, shipped_model):
    head = shipped_model.read_bytes()[:8]
    for seed in range(3):  # a valid header and a random body used to segfault the runner
        bad = tmp_path / f"random{seed}.pte"
        bad.write_bytes(head + np.random.default_rng(seed).bytes(5000))
        shutil.copy(shipped_model.with_suffix(".json"), bad.with_suffix(".json"))
        assert_one_line_error(edge_fer([*base, "--model", str(bad)]), 3, "model error", "corrupt")
    for edit, needle in (
        (lambda m: m.update(preprocess=None), "'preprocess' must be an object"),
        (lambda m: m["preprocess"].update(std=0), "preprocess.std 0"),
        (lambda m: m["preprocess"].update(margin=-0.4), "preprocess.margin -0.4 must be in [-0.25, 1]"),
        (lambda m: m["preprocess"].update(input_size="big"), "not a number"),
        (lambda m: m.update(classes=["a", "b"]), "predicts"),
        (lambda m: m.update(format_version=99), "format_version 99, newer than this edge-fer reads"),
        (lambda m: m.update(format_version="1"), "format_version is '1', not a whole number"),
    ):
        model = _model_with_metadata(tmp_path, shipped_model, edit)
        assert_one_line_error(edge_fer([*base, "--model", str(model)]), 3, "model error", needle)


def test_sources_that_are_not_videos(tmp_path, base):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    for target, needle in (
        (tmp_path, "is a directory"),
        (fifo, "not a regular file"),
        ("/dev/zero", "not a regular file"),
        (empty, ""),
    ):
        proc = edge_fer([*base, "--source", f"file:{target}"], timeout=30)
        assert_one_line_error(proc, 4, "camera error", needle)


def test_a_full_disk_stops_events_but_not_classifying(tmp_path, base):
    report = tmp_path / "report.json"
    proc = edge_fer([*base, "--events-jsonl", "/dev/full", "--report-json", str(report)])
    assert proc.returncode == 0 and "Traceback" not in proc.stderr
    assert "events: writing /dev/full failed (No space left on device)" in proc.stderr
    assert json.loads(report.read_text())["frames"] == 30  # every frame still classified


@pytest.mark.fast
def test_a_failed_event_write_leaves_only_whole_lines(tmp_path, monkeypatch):
    from edge_fer.outputs.base import OutputError
    from edge_fer.outputs.events import EventsLog
    from edge_fer.runtime.results import FrameResult

    path = tmp_path / "events.jsonl"
    log = EventsLog(str(path))
    frame = FrameResult(
        0,
        1.0,
        np.zeros((4, 4, 3), np.uint8),
        [],
        {"capture": 1, "detect": 1, "classify": 1, "total": 3},
        "run",
    )
    log.on_frame(frame, None)
    real_write = os.write

    def half_then_full(fd: int, data: bytes) -> int:
        if fd == log.fd and len(data) > 10:
            real_write(fd, data[: len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", half_then_full)
    with pytest.raises(OutputError, match="No space left"):
        log.on_frame(frame, None)
    monkeypatch.undo()
    log.close()
    lines = path.read_bytes().decode().splitlines(keepends=True)
    assert len(lines) == 1 and lines[0].endswith("\n") and json.loads(lines[0])["frame"] == 0


def test_sigterm_while_the_camera_is_reconnecting_exits_at_once(tmp_path, shipped_model):
    """The Camera Module is unplugged mid-run: the daemon retries with back-off (one log line),
    and SIGTERM during that back-off stops it within systemd's patience."""
    env = {
        **os.environ,
        "PYTHONPATH": str(FAKES),
        "FAKE_PICAMERA2_UNPLUG_AFTER": "20",
    }
    flags = ["--model", str(shipped_model), "--stats-path", str(tmp_path / "s.json")]
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge_fer.apps.daemon", *"--source picamera2 --display none".split(), *flags],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 60
        while not any("dropped out" in line for line in lines) and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(3)  # a few back-off rounds
        assert proc.poll() is None  # still alive, retrying
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
        assert time.monotonic() - t0 < 2.0 and proc.returncode == 0
        reader.join(timeout=5)
        err = "".join(lines)
        assert err.count("dropped out") == 1 and "Traceback" not in err
    finally:
        proc.kill()


def test_a_bad_reload_keeps_the_running_pipeline(tmp_path, shipped_model, demo_video):
    config = tmp_path / "config.yaml"
    good = f"source: file:{demo_video}\n"
    config.write_text(good + "smoothing: {window: 3}\n")
    stats = tmp_path / "stats.json"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "edge_fer.apps.daemon",
            "--config",
            str(config),
            "--display",
            "none",
            "--model",
            str(shipped_model),
            "--stats-path",
            str(stats),
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not stats.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        for broken in (
            "detector: {kind: yunet, yunet_model: /nonexistent.onnx}\n",
            f"source: file:{tmp_path}/missing.mp4\n",
            good + "model: {runtime: gpu}\n",
            good + "smoothing: {window: 5}\n",
        ):
            config.write_text(broken)
            proc.send_signal(signal.SIGHUP)
            time.sleep(2)
        frames = json.loads(stats.read_text())["frames"]
        time.sleep(1.5)
        assert json.loads(stats.read_text())["frames"] > frames  # still classifying
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert proc.returncode == 0 and "Traceback" not in err
    assert err.count("config reload failed, keeping the running config") == 3, err
    assert "YuNet model /nonexistent.onnx does not exist" in err
    assert "missing.mp4 does not exist" in err and "'model.runtime': 'gpu'" in err
    assert "smoothing.window: 3 -> 5" in err  # the log says what changed


def test_events_carry_a_run_id_and_frame_numbers_that_never_restart(tmp_path, base):
    events = tmp_path / "e.jsonl"
    for _ in range(2):
        assert edge_fer([*base, "--events-jsonl", str(events)]).returncode == 0
    lines = [json.loads(line) for line in events.read_text().splitlines()]
    runs = {e["run_id"] for e in lines}
    assert len(runs) == 2 and all(len(r) >= 8 for r in runs)
    for run in runs:
        frames = [e["frame"] for e in lines if e["run_id"] == run]
        assert frames == list(range(30))


MONITOR_CASES = [
    (["--pid", "-1"], "--pid must be a positive process id"),
    (["--seconds", "nan"], "--seconds must be a positive number"),
    (["--interval", "nan"], "--interval must be a number of seconds"),
    (["--interval", "0"], "--interval must be a number of seconds"),
    (["--csv", "{tmp}"], "is a directory"),
    (["--csv", "/nonexistent/m.csv"], "does not exist"),
    (["--csv", "/proc/m.csv"], "cannot write /proc/m.csv"),
]


@pytest.mark.parametrize("flags, needle", MONITOR_CASES, ids=[" ".join(c[0]) for c in MONITOR_CASES])
def test_monitor_bad_flags(tmp_path, flags, needle):
    flags = [f.replace("{tmp}", str(tmp_path)) for f in flags]
    assert_one_line_error(monitor(["--seconds", "1", *flags]), 2, needle)


@pytest.mark.parametrize(
    "document",
    ["[1, 2]", '{"time": "soon", "pid": 1}', '{"time": 1e300, "pid": -5, "fps": "fast"}', "\xff\xfe"],
)
def test_monitor_survives_bad_stats_files(tmp_path, document):
    stats = tmp_path / "stats.json"
    stats.write_text(document, encoding="latin-1")
    proc = monitor(["--seconds", "0.6", "--interval", "0.2", "--stats", str(stats), "--json"])
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    summary = json.loads(proc.stdout.splitlines()[-1])
    assert summary["daemon_seen"] is False


def test_model_benchmark_refuses_a_model_without_metadata(tmp_path, shipped_model):
    run = tmp_path / "run"
    run.mkdir()
    for name in ("student.pt", "pruned.pt"):
        (run / name).write_bytes(b"")
    model = tmp_path / "bare.pte"
    shutil.copy(shipped_model, model)  # no .json beside it
    args = ["--run", str(run), "--model", str(model), "--json", str(tmp_path / "out.json")]
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_models.py"), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "bare.json is missing" in proc.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "out.json").exists()
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_models.py"), *args, "--rounds", "0"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "--iters and --rounds must be at least 1" in proc.stderr
    assert not (tmp_path / "out.json").exists()

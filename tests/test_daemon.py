"""End-to-end runs of the real `edge-fer` daemon: real video, real model, real notify socket."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from pathlib import Path

import pytest

from edge_fer.emotions.labels import EMOTIONS, published_labels
from testkit import FAKES
from testkit.programs import start_daemon as daemon

ROOT = Path(__file__).resolve().parents[1]


def run_daemon(args: list[str], env: dict | None = None, timeout: float = 120):
    proc = daemon(args, env)
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


@pytest.fixture()
def base_args(video_args) -> list[str]:
    return video_args


def test_video_run_emits_schema_and_report(tmp_path, base_args, yunet_model):
    events, report = tmp_path / "events.jsonl", tmp_path / "report.json"
    code, _, err = run_daemon(
        [
            *base_args,
            "--no-loop",
            "--events-jsonl",
            str(events),
            "--report-json",
            str(report),
            "--detector",
            "yunet",
            "--yunet-model",
            str(yunet_model),
        ]
    )
    assert code == 0, err
    lines = [json.loads(line) for line in events.read_text().splitlines()]
    assert len(lines) == 90 and [e["frame"] for e in lines] == list(range(90))
    with_faces = [e for e in lines if e["faces"]]
    assert len(with_faces) >= 30  # YuNet finds most of the six faces shown
    for e in lines:
        assert set(e) == {"run_id", "frame", "t", "faces", "timing_ms"}
        assert set(e["timing_ms"]) == {"capture", "detect", "classify", "total"}
        for f in e["faces"]:
            assert set(f) == {"id", "box", "label", "score", "smoothed", "smoothed_score"}
            assert f["label"] in EMOTIONS and f["smoothed"] in published_labels()
            assert len(f["box"]) == 4 and 0 <= f["score"] <= 1 and 0 <= f["smoothed_score"] <= 1
    ids = {f["id"] for e in with_faces for f in e["faces"]}
    assert len(ids) <= 12  # a face keeps its id across frames (6 faces shown, some re-found)
    summary = json.loads(report.read_text())
    assert summary["frames"] == 90 and summary["face_detections"] == sum(len(e["faces"]) for e in lines)
    assert set(summary["latency_ms"]) == {"capture", "detect", "classify", "total"}
    assert sum(summary["label_counts"].values()) == summary["face_detections"]
    # fps counts frames over their own span (start-up is reported apart), as the events show.
    span = lines[-1]["t"] - lines[0]["t"]
    assert summary["fps"] == pytest.approx((len(lines) - 1) / span, rel=0.1)
    assert 0 < summary["startup_s"] < summary["seconds"]
    assert 20 < summary["peak_rss_mb"] < 2000  # the daemon's own VmHWM, in MB
    assert not (tmp_path / "stats.json").exists()  # removed at exit: the monitor sees it stopped


def test_events_to_stdout_and_haar_default(base_args):
    code, out, err = run_daemon([*base_args, "--max-frames", "20", "--events-jsonl", "-"])
    assert code == 0, err
    assert [json.loads(line)["frame"] for line in out.splitlines()] == list(range(20))


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["--config", "{tmp}/bad.yaml"], 2, "config error: config key 'smoothing.window'"),
        (["--config", "{tmp}/missing.yaml"], 2, "config file {tmp}/missing.yaml does not exist"),
        (["--model", "{tmp}/none.pte"], 3, "model error: model file {tmp}/none.pte does not exist"),
        (["--source", "file:{tmp}/none.mp4"], 4, "camera error: video file {tmp}/none.mp4 does not"),
        (["--detector", "yunet", "--yunet-model", "{tmp}/y.onnx"], 3, "YuNet model {tmp}/y.onnx"),
    ],
)
def test_errors_exit_non_zero_with_one_line(tmp_path, base_args, args, code, message):
    (tmp_path / "bad.yaml").write_text("smoothing:\n  window: -2\n")
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    rc, _, err = run_daemon([*base_args, *args])
    assert rc == code
    errors = [line for line in err.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and message.replace("{tmp}", str(tmp_path)) in errors[0]


def test_bad_flags_exit_2(base_args):
    rc, _, err = run_daemon([*base_args, "--max-frames", "0"])
    assert rc == 2 and "--max-frames must be a positive integer" in err


class NotifySocket:
    """A real sd_notify datagram socket, as systemd creates for Type=notify services."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, str]] = []

    def drain(self, seconds: float) -> list[str]:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                self.messages.append((time.monotonic(), self.sock.recv(4096).decode()))
            except TimeoutError:
                pass
        return [m for _, m in self.messages]

    def close(self) -> None:
        self.sock.close()


def test_notify_ready_status_watchdog_and_sigterm(tmp_path, base_args):
    notify = NotifySocket(tmp_path / "notify.sock")
    proc = daemon(base_args, {"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "1000000"})
    try:
        messages = notify.drain(6.0)
        assert any(m.startswith("READY=1") and "STATUS=first frame classified" in m for m in messages), (
            messages
        )
        assert sum(m == "WATCHDOG=1" for m in messages) >= 3
        assert any(m.startswith("STATUS=") and "fps" in m for m in messages)
        stats = json.loads((tmp_path / "stats.json").read_text())
        assert stats["pid"] == proc.pid and stats["fps"] > 0 and "latency_ms" in stats
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=5)
        assert time.monotonic() - t0 < 2.0 and proc.returncode == 0
        assert "STOPPING=1" in notify.drain(0.3)
    finally:
        proc.kill()
        notify.close()


def test_watchdog_pings_stop_when_the_camera_hangs(tmp_path, shipped_model):
    notify = NotifySocket(tmp_path / "notify.sock")
    env = {
        "NOTIFY_SOCKET": str(notify.path),
        "WATCHDOG_USEC": "400000",
        "PYTHONPATH": str(FAKES),
        "FAKE_PICAMERA2_HANG_AFTER": "25",
    }
    proc = daemon(
        [
            "--source",
            "picamera2",
            "--display",
            "none",
            "--model",
            str(shipped_model),
            "--stats-path",
            str(tmp_path / "stats.json"),
        ],
        env,
    )
    try:
        notify.drain(5.0)
        pings = [t for t, m in notify.messages if m == "WATCHDOG=1"]
        assert pings, notify.messages
        assert proc.poll() is None  # still alive, stuck in capture_request...
        assert time.monotonic() - pings[-1] > 2.0  # ...and no longer feeding the watchdog
    finally:
        proc.kill()
        notify.close()


def test_sighup_reloads_config_and_bad_reload_keeps_running(tmp_path, base_args):
    config = tmp_path / "config.yaml"
    config.write_text("smoothing:\n  window: 3\n")
    proc = daemon([*base_args, "--config", str(config)])
    try:
        time.sleep(4)
        config.write_text("smoothing:\n  window: 5\nlog_level: DEBUG\n")
        proc.send_signal(signal.SIGHUP)
        time.sleep(3)
        config.write_text("smoothing:\n  window: nope\n")
        proc.send_signal(signal.SIGHUP)
        time.sleep(3)
        assert proc.poll() is None
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=5)
    finally:
        proc.kill()
    assert proc.returncode == 0
    assert "config reloaded" in err
    assert "config reload failed, keeping the running config" in err


def test_picamera2_source_with_drm_overlay_end_to_end(tmp_path, shipped_model, demo_video, yunet_model):
    env = {"PYTHONPATH": str(FAKES), "FAKE_PICAMERA2_VIDEO": str(demo_video)}
    code, out, err = run_daemon(
        [
            "--source",
            "picamera2",
            "--display",
            "drm",
            "--model",
            str(shipped_model),
            "--max-frames",
            "60",
            "--events-jsonl",
            "-",
            "--stats-path",
            str(tmp_path / "s.json"),
            "--detector",
            "yunet",
            "--yunet-model",
            str(yunet_model),
        ],
        env,
    )
    assert code == 0, err
    events = [json.loads(line) for line in out.splitlines()]
    # Faces are found on the lores stream (576x324) and main (2304x1296) and boxed in main's pixels.
    boxes = [f["box"] for e in events for f in e["faces"]]
    assert len(events) == 60 and sum(bool(e["faces"]) for e in events) >= 1
    assert all(x + w <= 2304 and y + h <= 1296 for x, y, w, h in boxes)
    assert max(x + w for x, y, w, h in boxes) > 576
    assert "display drm" in err


def test_signals_before_logging_is_set_up_are_logged_once_it_is(caplog):
    """The handlers go in before logging is configured; their lines are kept, then logged."""
    import logging
    import signal as sig

    from edge_fer.runtime.service import SignalState

    state = SignalState()
    watched = (sig.SIGUSR1, sig.SIGUSR2, sig.SIGHUP, sig.SIGTERM, sig.SIGINT, sig.SIGPIPE)
    previous = {s: sig.getsignal(s) for s in watched}
    try:
        state.install()
        with caplog.at_level(logging.INFO, logger="edge_fer.runtime.service"):
            os.kill(os.getpid(), sig.SIGUSR1)
            os.kill(os.getpid(), sig.SIGHUP)
            assert not [r for r in caplog.records if "received" in r.getMessage()]
            state.logging_ready()
            os.kill(os.getpid(), sig.SIGUSR2)
        lines = [r.getMessage() for r in caplog.records if "received" in r.getMessage()]
        assert lines == [
            "received SIGUSR1: starting",
            "received SIGHUP, reloading config",
            "received SIGUSR2: starting",
        ]
        assert state.reload.is_set() and not state.stop.is_set()
    finally:
        for s, handler in previous.items():
            sig.signal(s, handler)

"""A reload is a transaction: every kind of bad reload, sent to one running daemon in turn,
is logged and leaves the daemon alive and classifying; a reload that stalls is abandoned at
`reload_timeout_s`; SIGTERM ends the daemon in the middle of one."""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from pathlib import Path

import pytest
import yaml

from edge_fer.config import SmoothingConfig
from testkit.hostile import ALIAS_BOMB
from testkit.programs import Daemon
from testkit.programs import write_config as _write

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def setup(tmp_path, shipped_model, demo_video):
    stats = tmp_path / "stats.json"
    good = {
        "source": f"file:{demo_video}",
        "display": {"mode": "none"},
        "model": {"path": str(shipped_model)},
        "detector": {"kind": "haar"},
        "stats": {"path": str(stats), "interval_s": 0.1},
        "events": {"path": str(tmp_path / "events.jsonl")},
        "reload_timeout_s": 4,
        "log_level": "INFO",
    }
    config = tmp_path / "config.yaml"
    _write(config, good)
    return config, stats, good


def _silent_server() -> tuple[socket.socket, int]:
    """A TCP server that accepts connections and never answers (a camera that hangs)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                held.append(server.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    return server, server.getsockname()[1]


def test_every_kind_of_bad_reload_keeps_the_daemon_classifying(setup, tmp_path, bad_models, data_dir):
    from edge_fer.data.demo_video import build_demo_video

    config, stats, good = setup
    one_frame = tmp_path / "one.mp4"
    build_demo_video(data_dir, one_frame, frames=1, faces=1, hold=1, seed=0)
    fifo = tmp_path / "events.fifo"
    os.mkfifo(fifo)
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    meta_str = tmp_path / "meta_str.pte"
    meta_str.write_bytes((bad_models / "good_tiny.pte").read_bytes())
    meta = json.loads((bad_models / "good_tiny.json").read_text())
    meta_str.with_suffix(".json").write_text(json.dumps({**meta, "input": "batch of 15"}))
    server, port = _silent_server()

    def with_(**changes) -> dict:
        return {**good, **changes}

    cases: list[tuple[str, dict | str, str]] = [
        ("yaml syntax", "source: [unclosed\n", "is not valid YAML"),
        ("top level 0", "0\n", "must be a mapping of keys to values"),
        ("duplicate keys", yaml.safe_dump(good) + "source: auto\n", "has the key 'source' twice"),
        ("alias bomb", ALIAS_BOMB, "expands to more than 10000 values"),
        ("deep nesting", "[" * 20000 + "]" * 20000, "nests values deeper"),
        ("no such user", with_(stats={"path": "~nosuchuser/stats.json"}), "user 'nosuchuser'"),
        ("long name", with_(report={"path": f"/tmp/{'r' * 5000}"}), "the limit is"),
        ("bad value", with_(smoothing={"window": 0}), "'smoothing.window': 0"),
        ("missing model", with_(model={"path": str(tmp_path / "missing.pte")}), "does not exist"),
        ("metadata input string", with_(model={"path": str(meta_str)}), "'input' must be an object"),
        ("five outputs", with_(model={"path": str(bad_models / "five_outputs.pte")}), "outputs (15, 5)"),
        ("NaN outputs", with_(model={"path": str(bad_models / "nan_output.pte")}), "non-finite scores"),
        ("missing video", with_(source=f"file:{tmp_path / 'missing.mp4'}"), "missing.mp4 does not exist"),
        ("one-frame video", with_(source=f"file:{one_frame}"), "one.mp4"),
        ("events FIFO", with_(events={"path": str(fifo)}), "is a FIFO"),
        ("stats directory", with_(stats={"path": str(tmp_path)}), "is a directory"),
        ("metrics port taken", with_(metrics={"port": busy.getsockname()[1]}), "cannot listen"),
        ("open page, no token", with_(web={"enabled": True, "bind": "0.0.0.0"}), "needs web.token_file"),
        ("web port taken", with_(web={"enabled": True, "port": busy.getsockname()[1]}), "web: cannot listen"),
        (
            "stalled camera",
            with_(source=f"http://127.0.0.1:{port}/video.mjpg", stream={"open_timeout_s": 5}),
            "took longer than 4 s",
        ),
    ]
    daemon = Daemon(config, stats)
    failed = 0
    try:
        daemon.classifying(timeout=60)
        for name, content, needle in cases:
            _write(config, content)
            daemon.proc.send_signal(signal.SIGHUP)
            failed += 1
            daemon.wait(
                lambda n=failed: daemon.log.count("config reload failed") >= n, 30, f"'{name}' logged"
            )
            line = [ln for ln in daemon.log.splitlines() if "config reload failed" in ln][-1]
            assert needle in line, (name, line)
            daemon.classifying()  # alive, and still classifying
        config.unlink()  # the config file becomes a FIFO: refused without blocking
        os.mkfifo(config)
        daemon.proc.send_signal(signal.SIGHUP)
        daemon.wait(lambda: daemon.log.count("config reload failed") > failed, 30, "FIFO config logged")
        daemon.classifying()
        _write(config, with_(smoothing={"window": 5}))  # and a good reload still works
        daemon.proc.send_signal(signal.SIGHUP)
        reloaded = f"config reloaded: smoothing.window: {SmoothingConfig().window} -> 5"
        daemon.wait(lambda: reloaded in daemon.log, 30, "good reload")
        daemon.classifying()
    finally:
        code = daemon.stop()
        server.close()
        busy.close()
    assert code == 0, daemon.log[-3000:]
    assert "Traceback" not in daemon.log, daemon.log[-3000:]
    assert daemon.log.count("config reload failed") == len(cases) + 1


def test_sigterm_in_the_middle_of_a_stalled_reload_stops_at_once(setup):
    config, stats, good = setup
    server, port = _silent_server()
    daemon = Daemon(config, stats)
    try:
        daemon.classifying(timeout=60)
        _write(config, {**good, "source": f"http://127.0.0.1:{port}/x", "stream": {"open_timeout_s": 60}})
        daemon.proc.send_signal(signal.SIGHUP)
        time.sleep(1.5)  # inside the build, waiting for the camera
        assert daemon.proc.poll() is None
        t0 = time.monotonic()
        code = daemon.stop()
        assert time.monotonic() - t0 < 2.5 and code == 0, daemon.log[-3000:]
    finally:
        daemon.proc.kill()
        server.close()
    assert "Traceback" not in daemon.log and not stats.exists()

"""Reloads to a stalled network camera do not pile up memory.

A SIGHUP that points `source` at a stream which accepts the connection and then sends
nothing is abandoned at `reload_timeout_s` and the running pipeline is rebuilt. The failed
build's error used to stay in a reference cycle (in_worker's result box -> the error -> its
traceback -> the worker's frame -> the box), keeping the failed pipeline and the old one
(their YuNet nets, OpenCV buffers) alive until a rare full garbage collection: about 10 MB
of RSS per such reload in the real daemon.
"""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import time
import weakref
from pathlib import Path

import pytest
import yaml

from edge_fer.runtime.daemon import in_worker
from edge_fer.runtime.service import SignalState
from edge_fer.sources.base import CaptureError
from testkit.streams import SilentServer

ROOT = Path(__file__).resolve().parents[1]
STALLED_RELOADS = 4
# Without the fix the daemon grew 25-50 MB over four stalled reloads; with it, under 10.
MAX_GROWTH_MB = 18


class _Held:
    """Stands for what a failed build made (a pipeline, a detector)."""


def _failing_build(refs: list[weakref.ref], delay_s: float):
    def build():
        held = _Held()  # a local of the failing frame: its traceback keeps it
        refs.append(weakref.ref(held))
        time.sleep(delay_s)
        raise CaptureError("stream rtsp://cam: no frame")

    return build


@pytest.fixture()
def no_gc():
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def test_an_abandoned_build_that_fails_frees_what_it_made_without_the_collector(no_gc):
    refs: list[weakref.ref] = []
    with pytest.raises(TimeoutError):
        in_worker(_failing_build(refs, 0.3), SignalState(), deadline_s=0.05)
    deadline = time.monotonic() + 5
    while not refs or (refs[0]() is not None and time.monotonic() < deadline):
        time.sleep(0.05)  # the worker finishes (and fails) after the deadline
    time.sleep(0.1)
    assert refs[0]() is None, "the late failure is kept alive by a reference cycle"


def test_a_failed_build_frees_what_it_made_once_the_error_is_handled(no_gc):
    refs: list[weakref.ref] = []
    try:
        in_worker(_failing_build(refs, 0.0), SignalState(), deadline_s=5)
    except CaptureError:
        pass
    assert refs[0]() is None, "the failure is kept alive by a reference cycle"


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")  # pragma: no cover


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmRSS from /proc")
def test_reloads_to_a_stalled_stream_keep_rss_flat(tmp_path, shipped_model, demo_video):
    silent = SilentServer()
    config = tmp_path / "config.yaml"
    good = {
        "source": f"file:{demo_video}",
        "model": {"path": str(shipped_model)},
        "display": {"mode": "none"},
        "reload_timeout_s": 2,
        "log_level": "INFO",
    }
    stalled = {
        **good,
        "source": f"http://127.0.0.1:{silent.port}/video.mjpg",
        "stream": {"open_timeout_s": 2.5, "read_timeout_s": 1},
    }

    def write(data: dict) -> None:
        tmp = config.with_suffix(".tmp")
        tmp.write_text(yaml.safe_dump(data))
        tmp.replace(config)

    write(good)
    log = (tmp_path / "daemon.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge_fer.apps.daemon", "--config", str(config), "--console", "off",
         "--pace", "fast", "--stats-path", str(tmp_path / "stats.json")],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip

    def text() -> str:
        return (tmp_path / "daemon.log").read_text()

    def wait_for(needle: str, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while text().count(needle) < count:
            assert proc.poll() is None, f"the daemon died:\n{text()[-3000:]}"
            assert time.monotonic() < deadline, f"no {needle!r} x{count}:\n{text()[-3000:]}"
            time.sleep(0.05)

    def reload(data: dict) -> None:
        write(data)
        proc.send_signal(signal.SIGHUP)

    try:
        wait_for("first frame classified", 1, 60)
        reload(good)  # a first good reload: what any reload allocates once is in the baseline
        wait_for("config reloaded", 1, 30)
        time.sleep(1)
        start = _rss_mb(proc.pid)
        samples = []
        for i in range(STALLED_RELOADS):
            reload(stalled)
            wait_for("config reload failed", i + 1, 30)
            wait_for("first frame classified", 3 + 2 * i, 30)  # the old pipeline is back
            time.sleep(2)  # the abandoned open reaches its own timeout and gives up
            reload(good)
            wait_for("config reloaded", i + 2, 30)
            time.sleep(0.5)
            samples.append(_rss_mb(proc.pid))
        assert proc.poll() is None
        growth = max(samples) - start
        assert growth < MAX_GROWTH_MB, (
            f"RSS grew {growth:.1f} MB over {STALLED_RELOADS} stalled reloads "
            f"(start {start:.1f} MB, after each: {', '.join(f'{s:.1f}' for s in samples)})"
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:  # pragma: no cover
            proc.kill()
            proc.wait()
        log.close()
        silent.close()

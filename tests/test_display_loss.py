"""Losing the display is an event, not a crash: a real Xvfb is killed under the daemon's SDL
window; the daemon logs one line, carries on headless (events keep coming, a reload keeps it
headless), and stops cleanly with its report written and its stats file removed."""

from __future__ import annotations

import importlib.util
import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from testkit import xvfb
from testkit.programs import Daemon

ROOT = Path(__file__).resolve().parents[1]


def start_xvfb() -> tuple[subprocess.Popen, str]:
    try:
        return xvfb.start_xvfb()
    except xvfb.XvfbMissing as exc:
        pytest.skip(str(exc))


def events_count(path: Path) -> int:
    try:
        return len(path.read_text().splitlines())
    except OSError:
        return 0


@pytest.mark.slow
@pytest.mark.parametrize("fullscreen", [False, True])
def test_the_x_server_stopping_under_the_window_leaves_the_daemon_running_headless(
    tmp_path, shipped_model, demo_video, monkeypatch, fullscreen
):
    if importlib.util.find_spec("pygame") is None:
        pytest.skip("pygame not installed (pip install 'edge-fer[display]')")
    xvfb, display = start_xvfb()
    stats, events, report = tmp_path / "stats.json", tmp_path / "events.jsonl", tmp_path / "report.json"
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "source": f"file:{demo_video}",
                "display": {"mode": "window", "fullscreen": fullscreen},
                "model": {"path": str(shipped_model)},
                "detector": {"kind": "haar"},
                "stats": {"path": str(stats), "interval_s": 0.1},
                "events": {"path": str(events)},
                "report": {"path": str(report)},
                "log_level": "INFO",
            }
        )
    )
    monkeypatch.setenv("DISPLAY", display)
    monkeypatch.delenv("SDL_VIDEODRIVER", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    daemon = Daemon(config, stats)
    try:
        daemon.classifying()
        assert "display window" in daemon.log
        xvfb.kill()  # the X server dies without a goodbye
        xvfb.wait(10)
        daemon.wait(lambda: "went away" in daemon.log, 30, "the display-lost line")
        at_loss = events_count(events)
        daemon.wait(lambda: events_count(events) > at_loss + 20, 30, "frames after the loss")
        daemon.proc.send_signal(signal.SIGHUP)  # the config still says window
        daemon.wait(lambda: "config reloaded" in daemon.log, 30, "the reload")
        assert "running without a display" in daemon.log
        daemon.classifying()
    finally:
        if xvfb.poll() is None:
            xvfb.kill()
            xvfb.wait(10)
        code = daemon.stop()
    log = daemon.log
    assert code == 0, log[-3000:]
    assert "Traceback" not in log and "XIO" not in log, log[-3000:]
    lost = [line for line in log.splitlines() if "went away; carrying on" in line]
    assert len(lost) == 1 and f"the X display {display} went away" in lost[0], lost
    assert json.loads(report.read_text())["frames"] == events_count(events) > at_loss + 20
    assert not stats.exists()


def test_a_failing_drm_preview_is_dropped_not_a_crash():
    import numpy as np

    from edge_fer.display.screen import DrmPreviewDisplay
    from edge_fer.emotions.labels import EMOTIONS
    from edge_fer.outputs.base import OutputError
    from edge_fer.runtime.results import FrameResult
    from edge_fer.runtime.stats import RunStats

    class Unplugged:
        def enable_drm_preview(self, window=None) -> None:
            pass

        def set_overlay(self, rgba) -> None:
            raise OSError(19, "No such device")

    display = DrmPreviewDisplay(Unplugged(), EMOTIONS, fullscreen=False)
    frame = FrameResult(0, time.time(), np.zeros((480, 640, 3), np.uint8), [], {}, "run", EMOTIONS, True)
    with pytest.raises(OutputError, match="drm: the preview cannot show the overlay .*No such device"):
        display.on_frame(frame, RunStats())

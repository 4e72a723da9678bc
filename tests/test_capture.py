from pathlib import Path

import numpy as np
import pytest

from edge_fer.config import load_config
from edge_fer.sources.base import CaptureError, EndOfStream, RawFrame
from edge_fer.sources.picamera import Picamera2Source
from edge_fer.sources.reconnect import ReconnectingSource
from edge_fer.sources.registry import make_source
from edge_fer.sources.video import OpenCVSource


@pytest.mark.fast
def test_picamera2_source_gives_bgr_main_and_luma_lores(fake_picamera2):
    source = Picamera2Source(0, (640, 480), (320, 240), 30)
    source.open()
    frame = source.read()
    assert frame.image.shape == (480, 640, 3)
    assert frame.lores_gray.shape == (240, 320)
    assert source.camera.config["main"]["format"] == "RGB888"
    assert source.camera.config["controls"] == {"FrameRate": 30.0}
    source.close()
    assert source.camera is None


@pytest.mark.fast
def test_auto_prefers_picamera2_then_reports_what_it_tried(fake_picamera2, monkeypatch, tmp_path):
    config = load_config(None)
    assert isinstance(make_source("auto", config.camera), Picamera2Source)
    monkeypatch.setenv("FAKE_PICAMERA2_CAMERAS", "0")
    config.camera.index = 7  # no webcam at /dev/video7 here
    with pytest.raises(CaptureError, match="tried picamera2.*webcam 7.*fallback video"):
        make_source("auto", config.camera, tmp_path / "missing.mp4", shipped_demo=tmp_path / "gone.mp4")


@pytest.mark.fast
def test_picamera2_reconnects_after_a_driver_error(fake_picamera2):
    fake_picamera2.STATE["fail_after"] = 3
    sleeps = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        fake_picamera2.STATE["fail_after"] = None  # the camera comes back during the wait

    source = ReconnectingSource(Picamera2Source(0, (640, 480), (320, 240), 30), wait=sleep)
    source.open()
    got = [source.read() for _ in range(3)]
    assert all(isinstance(f, RawFrame) for f in got)
    assert source.read() is None  # the failing grab is skipped and counted...
    assert source.reconnects == 1 and sleeps == [0.5]  # ...and the camera reopened
    assert isinstance(source.read(), RawFrame)
    assert fake_picamera2.STATE["opened"] == 2


class FlakySource:
    """Gives `good` frames, then `bad` failed grabs, then frames again; opening can fail."""

    name = "flaky"

    def __init__(self, good: int, bad: int, failed_opens: int) -> None:
        self.good, self.bad, self.failed_opens, self.reads, self.opens = good, bad, failed_opens, 0, 0

    def open(self) -> None:
        self.opens += 1
        if 1 < self.opens <= 1 + self.failed_opens:
            raise CaptureError("not yet")

    def read(self):
        self.reads += 1
        if self.good < self.reads <= self.good + self.bad:
            return None
        return RawFrame(np.zeros((4, 4, 3), np.uint8))

    def close(self) -> None:
        pass

    def preview_host(self) -> None:
        return None


@pytest.mark.fast
def test_reconnect_backs_off_exponentially_and_reports_each_reconnect():
    sleeps, reconnected = [], []
    flaky = FlakySource(good=2, bad=3, failed_opens=3)
    source = ReconnectingSource(
        flaky,
        max_backoff_s=1.5,
        max_failures=3,
        wait=sleeps.append,
        on_reconnect=lambda: reconnected.append(1),
    )
    source.open()
    results = [source.read() for _ in range(6)]
    assert [r is None for r in results] == [False, False, True, True, True, False]
    assert sleeps == [0.5, 1.0, 1.5, 1.5] and source.reconnects == 1 and reconnected == [1]


@pytest.mark.fast
def test_a_stop_request_ends_a_reconnect_at_once():
    """SIGTERM while the camera is away: the back-off loop returns instead of spinning."""
    stop = {"now": False}
    waits = []

    def wait(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 3:
            stop["now"] = True

    flaky = FlakySource(good=0, bad=10**9, failed_opens=10**9)
    source = ReconnectingSource(flaky, max_failures=1, wait=wait, should_stop=lambda: stop["now"])
    source.open()
    assert source.read() is None
    assert len(waits) == 3 and flaky.opens <= 4 and source.reconnects == 0


def test_video_file_source_loops_or_ends(demo_video):
    once = OpenCVSource(demo_video, loop=False)
    once.open()
    n = 0
    with pytest.raises(EndOfStream):
        while True:
            assert once.read().image.shape == (480, 640, 3)
            n += 1
    assert n == 90
    looped = OpenCVSource(demo_video, loop=True)
    looped.open()
    assert all(looped.read() is not None for _ in range(100))
    with pytest.raises(CaptureError, match="does not exist"):
        OpenCVSource(Path("/nonexistent.mp4")).open()

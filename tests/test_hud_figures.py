"""The daemon's figures mean one thing everywhere: the HUD, the console line, the log summary,
the stats file (monitor, MQTT) and the report all take stage times from one latency window,
detection over the frames that ran the detector, and say how often that is."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
import time

import numpy as np
import pytest

from edge_fer.display.screen import hud_for
from edge_fer.emotions.labels import EMOTIONS
from edge_fer.outputs.console import LogSummary, status_line
from edge_fer.runtime.results import FaceResult, FrameResult
from edge_fer.runtime.stats import LatencyWindow, RunStats, detection_rate


def _timing(detected: bool) -> dict[str, float]:
    detect = 14.0 if detected else 0.01  # YuNet on a detection frame, the tracker otherwise
    return {"capture": 2.0, "detect": detect, "classify": 0.3, "total": 2.3 + detect}


def _stats_every_second_frame(frames: int = 40) -> RunStats:
    stats = RunStats(window_s=10.0)
    for i in range(frames):
        stats.add_frame(_timing(i % 2 == 0), [1], ["happy"], detected=i % 2 == 0)
    return stats


def _result(stats: RunStats) -> FrameResult:
    probs = np.array([0.05, 0.02, 0.03, 0.7, 0.1, 0.05, 0.05], np.float32)
    face = FaceResult(1, (10, 10, 50, 50), "happy", 0.7, "happy", probs, smoothed_score=0.7)
    return FrameResult(stats.frames, time.time(), np.zeros((48, 64, 3), np.uint8), [face], {}, "", EMOTIONS)


@pytest.mark.fast
def test_detection_time_is_over_detection_frames_with_how_often():
    window = LatencyWindow(10.0)
    for i in range(10):
        window.add(i * 0.02, _timing(i % 2 == 0), detected=i % 2 == 0)
    p = window.window_percentiles()
    assert p["detect"]["p50"] == 14.0  # not the ~0 of the tracking frames in between
    assert p["classify"]["p50"] == pytest.approx(0.3) and p["capture"]["p50"] == 2.0
    assert p["total"]["mean"] == pytest.approx(2.3 + 7.005)
    assert window.window_detection_frames() == (5, 10)
    run = window.run_percentiles()
    assert run["detect"]["p50"] == pytest.approx(14.0, rel=0.01) and window.histograms["detect"].total == 5
    assert window.histograms["total"].total == 10 and run["total"]["mean"] == pytest.approx(9.305)
    assert [detection_rate(*r) for r in ((5, 10), (10, 10), (3, 10), (0, 10))] == [
        "1/2 frames",
        "every frame",
        "1/3 frames",
        "no detection",
    ]


@pytest.mark.fast
def test_the_hud_window_is_the_last_second_of_the_stats_window():
    window = LatencyWindow(10.0)
    for i in range(100):  # 5 s at 20 fps: slow detections early, fast ones in the last second
        detect = 40.0 if i < 80 else 10.0
        window.add(i * 0.05, {"capture": 1.0, "detect": detect, "classify": 0.2, "total": 1.2 + detect})
    assert window.window_percentiles(1.0)["detect"]["p50"] == 10.0
    assert window.window_percentiles()["detect"]["p50"] == 40.0
    assert window.fps(1.0) == pytest.approx(20.0) and window.fps() == pytest.approx(20.0)


@pytest.mark.fast
def test_hud_console_stats_file_and_report_agree():
    stats = _stats_every_second_frame()  # all within the last second
    hud = hud_for(_result(stats), stats)
    live, report = stats.live(), stats.report()
    assert hud.detect_ms == live["latency_ms"]["detect"]["p50"] == 14.0
    assert report["latency_ms"]["detect"]["p50"] == pytest.approx(14.0, rel=0.01)
    assert hud.classify_ms == live["latency_ms"]["classify"]["p50"]
    assert hud.frame_ms == pytest.approx(live["latency_ms"]["total"]["mean"])
    assert hud.detect_rate == "1/2 frames"
    assert live["detection_frames"] == 20 and live["window_frames"] == 40
    assert report["detection_frames"] == 20
    line = status_line(_result(stats), stats)
    assert "#1 happy 0.70" in line and "detect 14.0 ms (1/2 frames)" in line and "classify 0.30 ms" in line


def _face(face_id: int, label: str = "happy") -> FaceResult:
    probs = np.full(7, 0.05, np.float32)
    probs[EMOTIONS.index(label)] = 0.7
    return FaceResult(face_id, (10, 10, 50, 50), label, 0.7, label, probs, smoothed_score=0.7)


def _frame(stats: RunStats, faces: list[FaceResult]) -> FrameResult:
    """Count a frame of these faces in `stats` and return its result."""
    stats.add_frame(_timing(True), [f.id for f in faces], [f.smoothed for f in faces])
    return FrameResult(stats.frames, time.time(), np.zeros((48, 64, 3), np.uint8), faces, {}, "", EMOTIONS)


def test_log_summary_comes_soon_after_the_first_frame_then_every_interval(caplog):
    stats = RunStats()
    summary = LogSummary(1.0, stats, first_s=0.3)
    caplog.set_level(logging.INFO, logger="edge_fer.runtime.summary")
    summary.on_frame(_frame(stats, []), stats)
    start = stats.last_frame_mono
    for _ in range(3):
        time.sleep(0.01)
        summary.on_frame(_frame(stats, [_face(1)]), stats)
    assert not caplog.records  # nothing before first_s
    time.sleep(0.3)
    summary.on_frame(_frame(stats, [_face(1)]), stats)
    (record,) = caplog.records
    line = record.getMessage()
    fps = 4 / (stats.last_frame_mono - start)  # over the 4 intervals after the first frame
    assert line.startswith(
        f"first 0.3 s: 5 frames, {fps:.1f} fps | 1 face seen (1 new), a face in 80% of frames"
    )
    assert "| happy 100% | now #1 happy 0.70 | detect 14.0 ms (every frame), classify 0.30 ms" in line
    caplog.clear()
    mark = stats.last_frame_mono
    for i in range(6):
        time.sleep(0.05)
        summary.on_frame(_frame(stats, [_face(2, "sad")] if i < 4 else [_face(3, "fear")]), stats)
    assert not caplog.records  # the next one comes a whole interval after the first
    time.sleep(1.0 - (stats.last_frame_mono - mark))
    summary.on_frame(_frame(stats, []), stats)
    (record,) = caplog.records
    line = record.getMessage()
    fps = 7 / (stats.last_frame_mono - mark)
    assert line.startswith(
        f"last 1 s: 7 frames, {fps:.1f} fps | 3 faces seen (2 new), a face in 86% of frames"
    )
    assert "| sad 67%, fear 33% | no face now |" in line


@pytest.mark.fast
def test_no_line_shows_a_rate_before_there_is_an_interval():
    """One frame gives no rate: the console line, the HUD, the final summary and systemd's
    status leave the fps out instead of showing 0.0 fps."""
    from edge_fer.runtime.summary import final_line

    stats = RunStats()
    result = _frame(stats, [_face(1)])
    assert stats.latency.rate() is None and stats.frame_rate() is None
    line = status_line(result, stats)
    assert "fps" not in line and line.startswith("1 face | #1 happy 0.70 | detect 14.0 ms")
    assert "fps" not in " ".join(hud_for(result, stats).lines())
    final = final_line(stats, "signal", 0.5)
    assert final == (
        "stopped (signal) after 0.5 s: 1 frame | 1 face seen, a face in 100% of frames "
        "| happy 100% over 1 face-frame"
    )
    time.sleep(0.02)
    result = _frame(stats, [_face(1)])
    assert status_line(result, stats).startswith(f"{stats.latency.rate(1.0):.1f} fps | 1 face | ")
    assert hud_for(result, stats).lines()[0].endswith(" fps")
    assert final_line(RunStats(), "signal", 0.2) == "stopped (signal) after 0.2 s, before the first frame"
    stats.bad_frames, stats.reconnects = 2, 1
    for _ in range(300):
        _frame(stats, [_face(1)])
    _frame(stats, [_face(4, "angry")])
    final = final_line(stats, "eos", 3.0)
    assert "| 2 faces seen, a face in 100% of frames | happy 100%, angry <1% over 303 face-frames" in final
    assert final.endswith("| 2 dropped frames, 1 reconnect")


@pytest.mark.fast
def test_paced_waits_are_not_capture_time_and_outputs_are_timed_apart():
    """A video played at its own pace sleeps inside read(): that is not capture work. What the
    outputs (display, files, network) take after classifying is counted on its own."""
    from edge_fer.runtime.pipeline import run
    from edge_fer.sources.base import RawFrame

    class PacedSource:
        name = "file:paced"
        paced_wait_s = 0.0

        def read(self) -> RawFrame:
            self.paced_wait_s = 0.03
            time.sleep(0.03)
            return RawFrame(np.zeros((48, 64, 3), np.uint8))

    class OnePipeline:
        def step(self, raw: RawFrame, capture_ms: float, seq: int) -> FrameResult:
            timing = {"capture": capture_ms, "detect": 0.0, "classify": 0.0, "total": capture_ms}
            return FrameResult(seq, time.time(), raw.image, [], timing, "", EMOTIONS)

    class SlowOutput:
        name = "slow"

        def on_frame(self, result: FrameResult, stats: RunStats) -> None:
            time.sleep(0.02)

        def close(self) -> None:
            pass

    stats = RunStats()
    assert (
        run(PacedSource(), OnePipeline(), [SlowOutput()], lambda: False, stats, max_frames=5) == "max_frames"
    )
    live = stats.live()
    assert live["latency_ms"]["capture"]["max"] < 10  # not the 30 ms waited
    assert 20 <= live["outputs_ms"]["p50"] < 60 and stats.report()["outputs_ms"]["mean"] >= 20
    assert hud_for(_result(stats), stats).outputs_ms >= 20


@pytest.mark.slow
def test_the_daemon_reports_what_a_detection_costs(tmp_path, video_args):
    """Detection runs every 2nd frame by default: the report's detect p50 is a YuNet run's time
    (milliseconds), not the median of mostly-skipped frames (~0.02 ms), and says how often."""
    report = tmp_path / "report.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "edge_fer.apps.daemon",
            *video_args,
            "--max-frames",
            "40",
            "--report-json",
            str(report),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    r = json.loads(report.read_text())
    assert r["detection_frames"] == 20 and r["frames"] == 40
    assert r["latency_ms"]["detect"]["p50"] > 1.0
    assert r["latency_ms"]["total"]["mean"] > r["latency_ms"]["classify"]["mean"]


def test_a_daemon_without_a_terminal_logs_its_results(tmp_path, video_args):
    """stdout is not a TTY here (as under nohup or systemd): no console line, but a summary
    line in the log every --log-summary seconds."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "edge_fer.apps.daemon",
            *video_args,
            "--max-frames",
            "75",
            "--log-summary",
            "0.5",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if "edge_fer.runtime.summary: last 0.5 s: " in line]
    assert len(lines) >= 2, proc.stderr  # 75 frames at the video's 30 fps: 2.5 s
    pattern = re.compile(r" [0-9.]+ fps \| \d+ faces? seen \(\d+ new\), a face in \d+% of frames \|")
    assert all(pattern.search(line) and " ms (1/2 frames), classify" in line for line in lines), lines
    assert "edge_fer.runtime.summary: first 0.5 s: " in proc.stderr
    assert "edge_fer.runtime.summary: stopped (max_frames) after " in proc.stderr
    assert not proc.stdout  # the console line stays off

"""Latency statistics and the run report: exact enough, and bounded however long it runs."""

from __future__ import annotations

import numpy as np
import pytest

from edge_fer.runtime.stats import STAGES, LatencyWindow, LogHistogram, RunStats, peak_rss_mb

pytestmark = pytest.mark.fast


def test_histogram_percentiles_are_within_half_a_percent_of_exact():
    values = np.random.default_rng(0).lognormal(mean=1.5, sigma=0.8, size=20_000)
    histogram = LogHistogram()
    for v in values:
        histogram.add(float(v))
    for q in (50, 95, 99):
        assert histogram.percentile(q) == pytest.approx(np.percentile(values, q), rel=0.006)
    assert histogram.max == values.max() and histogram.total == len(values)
    assert LogHistogram().percentile(50) == 0.0
    extreme = LogHistogram()
    for v in (0.0, 1e-9, 5e6):  # outside the bins: clipped into the end bins, max kept exact
        extreme.add(v)
    assert extreme.max == 5e6 and extreme.percentile(100) == pytest.approx(1e5, rel=0.01)


def test_latency_memory_does_not_grow_with_frames():
    window = LatencyWindow(window_s=1.0)
    sizes = []
    for frame in range(30_000):  # 1000 s at 30 fps
        window.add(frame / 30, {s: 1.0 + frame % 7 for s in STAGES})
        if frame in (3_000, 29_999):
            sizes.append((len(window.recent), window.histograms["total"].counts.nbytes))
    assert sizes[0] == sizes[1] and sizes[0][0] <= 31  # one second of frames, fixed bins
    report = window.run_percentiles()["total"]
    assert report["p50"] == pytest.approx(4.0, rel=0.01) and report["max"] == 7.0


def test_faces_seen_counts_new_track_ids_across_a_reload():
    stats = RunStats()
    timing = {s: 1.0 for s in STAGES}
    for ids in ([1], [1, 2], [2], [3], []):
        stats.add_frame(timing, ids, ["happy"] * len(ids))
    assert stats.report()["faces_seen"] == 3
    stats.new_tracker()  # SIGHUP: a new tracker numbers faces from 1 again
    stats.add_frame(timing, [1], ["sad"])
    report = stats.report()
    assert report["faces_seen"] == 4 and report["face_detections"] == 6
    assert report["label_counts"] == {"happy": 5, "sad": 1}


def test_peak_rss_reads_vmhwm_and_says_none_without_proc(tmp_path):
    status = tmp_path / "status"
    status.write_text("Name:\tpython\nVmPeak:\t  900000 kB\nVmHWM:\t   81920 kB\nVmRSS:\t 40960 kB\n")
    assert peak_rss_mb(status) == 80.0
    assert peak_rss_mb(tmp_path / "missing") is None

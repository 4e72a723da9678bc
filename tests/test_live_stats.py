"""The live stats contract (`edge_fer.contracts.live_stats`): what the daemon writes is what the
monitor reads, the unversioned file of an older daemon still reads, and anything else is one
LiveStatsError."""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_fer.contracts import live_stats
from edge_fer.contracts.live_stats import (
    FORMAT_VERSION,
    LATER_FIGURES,
    LiveStats,
    LiveStatsError,
    LiveStatsMissing,
    Spread,
)
from edge_fer.monitor.daemon_stats import DaemonWatcher
from edge_fer.runtime.stats import STAGES, RunStats

FIXTURES = Path(__file__).parent / "fixtures"
# What the daemon wrote before the format had a version (edge-fer run on the shipped demo).
UNVERSIONED = FIXTURES / "stats_unversioned.json"


def _running_stats() -> RunStats:
    stats = RunStats()
    stats.source = "file:demo.mp4"
    for i in range(6):
        timing = {"capture": 1.0 + i, "detect": 20.0, "classify": 1.5, "total": 25.0 + i}
        stats.add_frame(timing, [1, 2][: i % 3], ["happy"] * (i % 3), detected=i % 2 == 0)
        stats.add_outputs(0.1 * i)
    stats.bad_frames, stats.reconnects = 2, 1
    return stats


def _valid_doc() -> dict:
    return _running_stats().live()


@pytest.mark.fast
def test_what_the_daemon_writes_reads_back_the_same(tmp_path):
    snapshot = _running_stats().snapshot()
    path = tmp_path / "run" / "stats.json"  # the folder is made
    dev_ino = live_stats.write(path, snapshot)
    assert dev_ino == (os.stat(path).st_dev, os.stat(path).st_ino)
    assert os.stat(path).st_mode & 0o777 == 0o640
    assert live_stats.read(path) == snapshot
    doc = json.loads(path.read_text())
    assert doc["format_version"] == FORMAT_VERSION == 1
    assert list(doc["latency_ms"]) == list(STAGES) and doc["window_frames"] == 6
    assert doc["detection_frames"] == 3 and doc["dropped_frames"] == 2 and doc["faces"] == 2


@pytest.mark.fast
def test_the_unversioned_file_of_an_older_daemon_is_migrated():
    raw = json.loads(UNVERSIONED.read_text())
    assert "format_version" not in raw
    stats = live_stats.read(UNVERSIONED)
    assert stats.format_version == 1 and stats.pid == raw["pid"] and stats.run_id == raw["run_id"]
    assert stats.fps == raw["fps"] and stats.window_frames == raw["window_frames"]
    assert {k: asdict(v) for k, v in stats.latency_ms.items()} == raw["latency_ms"]
    assert asdict(stats.outputs_ms) == raw["outputs_ms"]
    # Older still: no run id, no detection/window counts, no outputs' time. Said as unknown.
    oldest = {k: v for k, v in raw.items() if k not in LATER_FIGURES}
    migrated = live_stats.decode(json.dumps(oldest).encode())
    assert all(getattr(migrated, k) is None for k in LATER_FIGURES)
    assert migrated.frames == raw["frames"] and migrated.latency_ms == stats.latency_ms


@pytest.mark.fast
def test_only_an_unversioned_file_may_lack_the_later_figures():
    doc = _valid_doc()
    doc["outputs_ms"] = None
    with pytest.raises(LiveStatsError, match="'outputs_ms' must be an object"):
        live_stats.decode(json.dumps(doc).encode(), "s.json")
    del doc["window_frames"]
    with pytest.raises(LiveStatsError, match="'window_frames' is missing"):
        live_stats.decode(json.dumps(doc).encode(), "s.json")


@pytest.mark.fast
def test_unknown_keys_are_ignored_and_a_newer_format_is_named():
    doc = _valid_doc()
    doc["gpu_ms"] = {"p50": 1.0}  # a later addition of the same format
    assert live_stats.decode(json.dumps(doc).encode()).frames == 6
    doc["format_version"] = 2
    with pytest.raises(LiveStatsError, match="stats format 2, newer than this edge-fer reads .1.; upgrade"):
        live_stats.decode(json.dumps(doc).encode(), "s.json")


def _with(key: str, value: object) -> bytes:
    doc = _valid_doc()
    node, _, leaf = key.rpartition(".")
    target = doc
    for part in filter(None, node.split(".")):
        target = target[part]
    if value is KeyError:
        del target[leaf]
    else:
        target[leaf] = value
    return json.dumps(doc).encode()


BAD_DOCUMENTS = {
    "not json": (b"{'pid': 1}", "is not JSON"),
    "bad utf-8": (b"\xff\xfe{}", "is not JSON"),
    "a list": (b"[1, 2]", "is not a JSON object"),
    "nested too deep": (b"[" * 100_000, "is not JSON"),
    "NaN": (_with("fps", 0).replace(b'"fps": 0', b'"fps": NaN'), "NaN is not a number JSON allows"),
    "Infinity": (_with("time", 0).replace(b'"time": 0', b'"time": Infinity'), "Infinity"),
    "huge float": (_with("uptime_s", 0).replace(b'"uptime_s": 0', b'"uptime_s": 1e999'), "'uptime_s'"),
    "text fps": (_with("fps", "fast"), "'fps' must be a finite number, not 'fast'"),
    "bool pid": (_with("pid", True), "'pid' must be a whole number of at least 1"),
    "negative pid": (_with("pid", -5), "'pid' must be a whole number of at least 1"),
    "float frames": (_with("frames", 3.5), "'frames' must be a whole number"),
    "negative faces": (_with("faces", -1), "'faces' must be a whole number of at least 0"),
    "no time": (_with("time", KeyError), "'time' is missing"),
    "no stage": (_with("latency_ms.detect", KeyError), "'latency_ms.detect' is missing"),
    "stage not an object": (_with("latency_ms.total", [1]), "'latency_ms.total' must be an object"),
    "bad percentile": (_with("latency_ms.total.p95", None), "'latency_ms.total.p95' must be a finite"),
    "source not text": (_with("source", 7), "'source' must be text"),
    "version as text": (_with("format_version", "1"), "format_version '1' is not a whole number"),
    "version zero": (_with("format_version", 0), "format_version 0 is not a stats format"),
}


@pytest.mark.parametrize("data, needle", BAD_DOCUMENTS.values(), ids=BAD_DOCUMENTS.keys())
@pytest.mark.fast
def test_a_malformed_document_is_one_error_naming_the_file(tmp_path, data, needle):
    path = tmp_path / "stats.json"
    path.write_bytes(data)
    with pytest.raises(LiveStatsError, match="stats.json") as caught:
        live_stats.read(path)
    assert needle in str(caught.value) and "\n" not in str(caught.value)
    assert not live_stats.is_live_stats(path)


@pytest.mark.fast
def test_files_that_are_not_regular_or_too_big_are_refused_without_reading(tmp_path):
    with pytest.raises(LiveStatsMissing, match="no "):
        live_stats.read(tmp_path / "none.json")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    t0 = time.monotonic()
    with pytest.raises(LiveStatsError, match="is a FIFO"):
        live_stats.read(fifo)  # never blocks waiting for a writer
    assert time.monotonic() - t0 < 2
    with pytest.raises(LiveStatsError, match="is a directory"):
        live_stats.read(tmp_path)
    with pytest.raises(LiveStatsError, match="is a character device"):
        live_stats.read(Path("/dev/zero"))
    big = tmp_path / "big.json"
    doc = _valid_doc()
    doc["padding"] = "x" * live_stats.MAX_BYTES
    big.write_text(json.dumps(doc))
    with pytest.raises(LiveStatsError, match="the limit is"):
        live_stats.read(big)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
KEYS = sorted(_valid_doc()) + [f"latency_ms.{s}" for s in STAGES] + ["latency_ms.total.p50", "outputs_ms.max"]


@given(st.sampled_from(KEYS), JSON | st.just(KeyError))
@settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
def test_any_change_to_one_field_reads_or_is_a_live_stats_error(key, value):
    try:
        stats = live_stats.decode(_with(key, value))
    except LiveStatsError as exc:
        assert "\n" not in str(exc)
        return
    assert isinstance(stats, LiveStats) and stats.pid >= 1 and isinstance(stats.outputs_ms, Spread)


@pytest.mark.fast
def test_the_monitor_shows_the_figures_of_an_unversioned_file(tmp_path):
    doc = json.loads(UNVERSIONED.read_text())
    doc.update(time=time.time(), pid=os.getpid())  # fresh, and naming a live process
    path = tmp_path / "stats.json"
    path.write_text(json.dumps(doc))
    sample = DaemonWatcher(path).sample()
    assert sample.running and sample.reason == "running"
    assert sample.fps == doc["fps"] and sample.latency_ms == doc["latency_ms"]
    assert (sample.faces, sample.dropped_frames) == (doc["faces"], doc["dropped_frames"])


@pytest.mark.parametrize("document", ['{"time": 1e300, "pid": -5, "fps": "fast"}', '{"pid": 1}'])
@pytest.mark.fast
def test_the_monitor_says_why_it_ignores_a_bad_file(tmp_path, document):
    path = tmp_path / "stats.json"
    path.write_text(document)
    sample = DaemonWatcher(path).sample()
    assert not sample.running and sample.reason.startswith("daemon stats unusable (")
    assert str(path) in sample.reason and sample.reason.endswith("; ignoring them")


@pytest.mark.fast
def test_the_daemon_takes_over_the_file_an_older_daemon_left_and_writes_the_new_format(tmp_path):
    from edge_fer.outputs.stats_file import StatsFile

    path = tmp_path / "stats.json"
    path.write_bytes(UNVERSIONED.read_bytes())  # left by an older edge-fer killed with -9
    out = StatsFile(path, 0.01)
    out.on_frame(None, _running_stats())  # type: ignore[arg-type]
    assert live_stats.read(path).format_version == FORMAT_VERSION
    out.close()
    assert not path.exists()

"""Output paths are checked against each other and against the files the daemon reads, at
start and on every reload, however they are spelled (relative, absolute, a symlink, a hard
link); the stats path is never someone else's file, and the daemon removes only the stats
file it wrote."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from edge_fer.config import Config, ConfigError, check_output_paths, validate
from edge_fer.outputs.base import OutputError
from edge_fer.outputs.stats_file import StatsFile
from edge_fer.runtime.stats import RunStats
from testkit.programs import Daemon
from testkit.programs import write_config as _write

ROOT = Path(__file__).resolve().parents[1]


def config(tmp_path: Path, **outputs: str | None) -> Config:
    c = Config()
    c.source = f"file:{tmp_path / 'in.mp4'}"
    c.stats.path = None
    for key, value in outputs.items():
        section, leaf = key.split("__")
        setattr(
            getattr(c, section),
            leaf,
            None if value is None else (value if section == "events" else Path(value)),
        )
    return validate(c)


@pytest.mark.fast
def test_outputs_naming_one_file_however_spelled_are_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "r.json").write_text("{}")
    os.link(tmp_path / "r.json", tmp_path / "hard.json")
    (tmp_path / "soft.json").symlink_to(tmp_path / "r.json")
    for events in ("r.json", str(tmp_path / "r.json"), "./sub/../r.json", "hard.json", "soft.json"):
        with pytest.raises(ConfigError) as err:
            check_output_paths(config(tmp_path, events__path=events, report__path=str(tmp_path / "r.json")))
        text = str(err.value)
        assert "report.path and events.path name the same file" in text and "\n" not in text, text
    with pytest.raises(ConfigError, match="record and stats.path name the same file"):
        check_output_paths(_record(tmp_path))  # neither exists yet: compared by resolved path
    ok = config(tmp_path, events__path="e.jsonl", report__path="r.json", stats__path="s.json")
    assert check_output_paths(ok) is ok
    both_null = config(tmp_path, events__path="/dev/null", report__path=None)
    assert check_output_paths(both_null) is both_null


def _record(tmp_path: Path) -> Config:
    c = config(tmp_path, stats__path=str(tmp_path / "not-yet" / "s.mp4"))
    c.record = Path(tmp_path / "not-yet" / ".." / "not-yet" / "s.mp4")
    return c


@pytest.mark.fast
def test_an_output_naming_an_input_is_refused(tmp_path, shipped_model):
    video = tmp_path / "in.mp4"
    video.write_bytes(b"video")
    cfg_file = tmp_path / "config.yaml"
    cfg_file.write_text("{}")
    cases = {
        "the source video": dict(report__path=str(video)),
        "model.path": dict(events__path=str(shipped_model)),
        "the model's metadata": dict(stats__path=str(shipped_model.with_suffix(".json"))),
        "the config file": dict(report__path=str(cfg_file)),
        "detector.yunet_model": dict(events__path=str(Config().detector.yunet_file)),
    }
    for name, outputs in cases.items():
        with pytest.raises(ConfigError, match=f"names the same file as {name}"):
            check_output_paths(config(tmp_path, **outputs), cfg_file)
    c = config(tmp_path)
    c.record = video
    with pytest.raises(ConfigError, match="record names the same file as the source video"):
        check_output_paths(c)
    assert video.read_bytes() == b"video"


@pytest.mark.fast
def test_a_stats_path_that_is_someone_elses_file_is_refused_and_kept(tmp_path):
    mine = tmp_path / "notes.txt"
    mine.write_text("my notes")
    for content in ("my notes", "", '{"frames": 3}', "[1, 2]"):
        mine.write_text(content)
        with pytest.raises(OutputError, match="exists and is not an edge-fer stats file"):
            StatsFile(mine, 0.1)
        assert mine.read_text() == content


@pytest.mark.fast
def test_a_stale_stats_file_of_a_crashed_run_is_taken_over_and_removed(tmp_path):
    path = tmp_path / "stats.json"
    path.write_text(json.dumps(RunStats().live()))  # what a daemon killed with -9 leaves
    out = StatsFile(path, 0.01)
    out.on_frame(None, RunStats())  # type: ignore[arg-type]
    assert path.exists()
    out.close()
    assert not path.exists()


@pytest.mark.fast
def test_the_stats_file_is_removed_only_while_it_is_the_one_written(tmp_path):
    path = tmp_path / "stats.json"
    out = StatsFile(path, 0.01)
    out.on_frame(None, RunStats())  # type: ignore[arg-type]
    replacement = tmp_path / "other"
    replacement.write_text("someone else's, moved in since")
    replacement.replace(path)
    out.close()
    assert path.read_text() == "someone else's, moved in since"
    never = tmp_path / "never.json"
    StatsFile(never, 1).close()
    assert not never.exists()


@pytest.mark.fast
def test_a_foreign_file_at_the_stats_lock_path_is_never_truncated(tmp_path):
    from edge_fer.core.safe_io import PathLock, PathRefused

    lock = tmp_path / ".stats.json.lock"
    lock.write_text("important")
    with pytest.raises(PathRefused, match="is not a lock file"):
        PathLock(tmp_path / "stats.json").acquire()
    assert lock.read_text() == "important"


def test_the_daemon_refuses_colliding_outputs_at_start_and_loses_nothing(tmp_path, demo_video, shipped_model):
    events = tmp_path / "events.jsonl"
    events.write_text('{"frame": 1}\n{"frame": 2}\n')
    unrelated = tmp_path / "unrelated.txt"
    unrelated.write_text("keep me")
    common = ["--source", f"file:{demo_video}", "--display", "none", "--model", str(shipped_model)]
    common += ["--detector", "haar", "--max-frames", "5", "--config", str(tmp_path / "none.yaml")]
    (tmp_path / "none.yaml").write_text("{}")
    cases = [
        (
            ["--events-jsonl", str(events), "--report-json", "../" + tmp_path.name + "/events.jsonl"],
            "same file",
        ),
        (["--stats-path", str(unrelated)], "not an edge-fer stats file"),
        (["--report-json", str(demo_video)], "the source video"),
    ]
    for extra, needle in cases:
        proc = subprocess.run(
            [sys.executable, "-m", "edge_fer.apps.daemon", *common, *extra],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        errors = proc.stderr.strip().splitlines()
        assert proc.returncode == 2, proc.stderr
        assert needle in errors[-1] and "config error" in errors[-1] and "Traceback" not in proc.stderr
    assert events.read_text() == '{"frame": 1}\n{"frame": 2}\n'
    assert unrelated.read_text() == "keep me"
    report = tmp_path / "report.json"
    with report.open("w") as stdout:  # edge-fer --events-jsonl - --report-json report.json > report.json
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "edge_fer.apps.daemon",
                *common,
                "--events-jsonl",
                "-",
                "--report-json",
                str(report),
            ],
            stdout=stdout,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
    assert (
        proc.returncode == 2 and "report.path and events.path '-' (stdout) name the same file" in proc.stderr
    )
    assert demo_video.stat().st_size > 10_000


def test_a_reload_with_colliding_outputs_is_refused_and_the_daemon_goes_on(
    tmp_path, shipped_model, demo_video
):
    stats = tmp_path / "stats.json"
    events = tmp_path / "events.jsonl"
    good = {
        "source": f"file:{demo_video}",
        "display": {"mode": "none"},
        "model": {"path": str(shipped_model)},
        "detector": {"kind": "haar"},
        "stats": {"path": str(stats), "interval_s": 0.1},
        "events": {"path": str(events)},
        "log_level": "INFO",
    }
    cfg = tmp_path / "config.yaml"
    _write(cfg, good)
    daemon = Daemon(cfg, stats)
    try:
        daemon.classifying()
        link = tmp_path / "report-link.json"
        link.symlink_to(events)
        _write(cfg, {**good, "report": {"path": str(link)}})
        daemon.proc.send_signal(1)  # SIGHUP
        daemon.wait(lambda: "config reload failed" in daemon.log, 30, "the refused reload")
        assert "report.path and events.path name the same file" in daemon.log
        daemon.classifying()
        _write(cfg, {**good, "report": {"path": str(cfg)}})
        daemon.proc.send_signal(1)
        daemon.wait(lambda: daemon.log.count("config reload failed") == 2, 30, "the second refused reload")
        assert "report.path names the same file as the config file" in daemon.log
        daemon.classifying()
    finally:
        code = daemon.stop()
    assert code == 0, daemon.log[-2000:]
    rows = [json.loads(line) for line in events.read_text().splitlines()]
    assert len(rows) > 20 and all("frame" in r or "seq" in r or r for r in rows)
    assert yaml.safe_load(cfg.read_text())["report"]["path"] == str(cfg)  # the config was not overwritten
    assert not stats.exists()

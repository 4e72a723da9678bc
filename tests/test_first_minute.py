"""The first minute of a headless daemon explains itself: a summary a few seconds after the
first frame, a final one whatever stopped it, never `0.0 fps`; and `faces_seen` counts people
(a new face in a track's place is a new face in the report, the events and MQTT), on videos of
real FER2013 faces replaced by other people at the same place."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest

from testkit.mqtt import MOSQUITTO, Broker, Subscriber

ROOT = Path(__file__).resolve().parents[1]
STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")


@pytest.fixture(scope="module")
def swaps(tmp_path_factory, data_dir) -> tuple[Path, int]:
    """One face place, a new person every 45 frames (1.5 s): 10 people in 450 frames
    (lossless FFV1, so every machine decodes the same frames)."""
    from edge_fer.data.demo_video import build_demo_video

    out = tmp_path_factory.mktemp("swaps") / "swaps.avi"
    meta = build_demo_video(data_dir, out, frames=450, faces=1, hold=45, seed=3)
    people = len({tuple(s) for s in meta["sources"]})
    assert people == 10
    return out, people


def _args(video: Path, model: Path, tmp_path: Path, *more: str) -> list[str]:
    return [
        sys.executable, "-m", "edge_fer.apps.daemon", "--source", f"file:{video}", "--display", "none",
        "--model", str(model), "--stats-path", str(tmp_path / "stats.json"), *more,
    ]  # fmt: skip


def _when(line: str) -> float:
    return datetime.strptime(STAMP.match(line).group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()


def test_headless_the_first_summary_comes_within_seconds_and_a_signal_gets_a_final_one(
    tmp_path, swaps, shipped_model
):
    """As under nohup or systemd (no terminal, default log_summary_s of 60 s): a summary about
    3 s after the first frame with frames, fps, faces and labels; SIGTERM ends with the run's."""
    video, _ = swaps
    proc = subprocess.Popen(
        _args(video, shipped_model, tmp_path),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 90
        while (
            not any("edge_fer.runtime.summary: first 3 s: " in ln for ln in lines)
            and time.monotonic() < deadline
        ):
            assert proc.poll() is None, "".join(lines)
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        # Not communicate(): it would read stderr too, racing the reader thread for the last lines.
        proc.wait(timeout=20)
        out = proc.stdout.read()
    finally:
        proc.kill()
    reader.join(timeout=5)
    err = "".join(lines)
    assert proc.returncode == 0, err
    assert not out  # stdout stays clean: the summaries are log lines
    ready = next(ln for ln in lines if "ready: first frame classified" in ln)
    first = next(ln for ln in lines if "edge_fer.runtime.summary: first 3 s: " in ln)
    assert 2.5 <= _when(first) - _when(ready) <= 4.5, (ready, first)
    summary = first.split("edge_fer.runtime.summary: ", 1)[1]
    assert re.match(
        r"first 3 s: \d+ frames, [1-9][0-9.]* fps \| \d+ faces? seen \(\d+ new\), a face in", summary
    ), summary
    now = r"(now #\d+ \w+ [01]\.\d\d|no face now)"
    assert re.search(r"\| (\w+ (<1|\d+)%(, )?)+ \| " + now + r" \|", summary), summary
    final = next(ln for ln in lines if "edge_fer.runtime.summary: stopped (signal) after " in ln)
    assert re.search(
        r": \d+ frames, [1-9][0-9.]* fps \| \d+ faces? seen, a face in \d+% of frames \| ", final
    ), final
    assert " 0.0 fps" not in err and "Traceback" not in err


def test_faces_seen_counts_the_people_in_the_report_the_events_and_mqtt(tmp_path, swaps, shipped_model):
    """10 people one after another at the same place: 10 faces (one id each) in the report,
    the events and MQTT's tracked faces, and in the final summary of a video that ended."""
    if MOSQUITTO is None:
        pytest.skip("mosquitto not installed (apt install mosquitto)")
    video, people = swaps
    broker = Broker(tmp_path)
    sub = Subscriber(broker.port)
    report, events = tmp_path / "report.json", tmp_path / "events.jsonl"
    try:
        proc = subprocess.run(
            _args(
                video, shipped_model, tmp_path, "--no-loop", "--pace", "fast", "--report-json", str(report),
                "--events-jsonl", str(events), "--mqtt", f"mqtt://127.0.0.1:{broker.port}",
            ),
            cwd=ROOT, capture_output=True, text=True, timeout=180,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert sub.wait_for("/availability", "offline", timeout=10)
        tracked = {t["id"] for _, _, p, _ in sub.topics("/state") for t in json.loads(p)["tracked"]}
        face_messages = {json.loads(p)["id"] for _, _, p, _ in sub.topics("/face")}
    finally:
        sub.close()
        broker.stop()
    r = json.loads(report.read_text())
    lines = [json.loads(line) for line in events.read_text().splitlines()]
    ids = [[f["id"] for f in e["faces"]] for e in lines]
    assert len(lines) == r["frames"] == 450
    assert r["faces_seen"] == people, r["faces_seen"]
    assert {i for frame in ids for i in frame} == tracked == face_messages == set(range(1, people + 1))
    # One id per person: each id holds one run of frames, changing where the person changes.
    changes = [n for n in range(1, len(ids)) if ids[n] != ids[n - 1] and ids[n] and ids[n - 1]]
    assert all(n % 45 in (0, 1, 2) for n in changes), changes
    final = next(
        ln for ln in proc.stderr.splitlines() if "edge_fer.runtime.summary: stopped (eos) after " in ln
    )
    assert "450 frames, " in final and f"| {people} faces seen, a face in " in final, final


@pytest.mark.parametrize("ending", ["closed", "error"])
def test_the_final_summary_whatever_stopped_the_daemon(tmp_path, monkeypatch, capfd, ending):
    """The window closed, or an error after frames (a camera gone for good, a failed restore
    after a reload): the error line, then the run's summary. An error before the first frame
    has only its error line."""
    from edge_fer.apps import daemon as cli
    from edge_fer.runtime import daemon
    from edge_fer.sources.base import CaptureError

    def serve(config, load, signals, notifier, stats, max_frames) -> str:
        for face in (1, 1, 2):
            stats.add_frame({"capture": 1.0, "detect": 5.0, "classify": 0.5, "total": 6.5}, [face], ["sad"])
            time.sleep(0.01)
        if ending == "error":
            raise CaptureError("source file:x failed and could not be reopened")
        return ending

    def fails_at_start(*_args) -> str:
        raise CaptureError("no frame source found")

    watched = (signal.SIGUSR1, signal.SIGUSR2, signal.SIGHUP, signal.SIGTERM, signal.SIGINT, signal.SIGPIPE)
    previous = {s: signal.getsignal(s) for s in watched}
    streams = sys.stdin, sys.stdout, sys.stderr  # main() makes its own on fds 0-2
    args = ["--display", "none", "--stats-path", str(tmp_path / "stats.json")]
    try:
        monkeypatch.setattr(daemon, "run_daemon", serve)
        code = cli.main(args)
        err = capfd.readouterr().err
        monkeypatch.setattr(daemon, "run_daemon", fails_at_start)
        start_code = cli.main(args)
        start_err = capfd.readouterr().err
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        sys.stdin, sys.stdout, sys.stderr = streams
    assert code == (cli.EXIT_SOURCE if ending == "error" else 0), err
    lines = err.splitlines()
    final = next(
        n for n, ln in enumerate(lines) if f"edge_fer.runtime.summary: stopped ({ending}) after " in ln
    )
    assert (
        ": 3 frames, " in lines[final]
        and "| 2 faces seen, a face in 100% of frames | sad 100% over 3" in lines[final]
    )
    if ending == "error":
        assert "camera error: source file:x failed" in lines[final - 1]
    assert start_code == cli.EXIT_SOURCE and "no frame source found" in start_err
    assert "stopped (" not in start_err

"""Each input kind has one total boundary: the config file, the model and its metadata, the
source spec, output paths, the process's own setting (signals, stdio, NOTIFY_SOCKET). Every
bad input of every kind gives that boundary's typed error with a one-line message, in the
loader and through the real `edge-fer` (exit code, no traceback, no hang)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from edge_fer.config import Config, ConfigError, check_source, load_config, validate
from edge_fer.emotions.classifier import ModelError, load_classifier, read_metadata
from testkit.hostile import ALIAS_BOMB
from testkit.programs import assert_one_line_error, edge_fer

ROOT = Path(__file__).resolve().parents[1]

CONFIG_FILES = [
    ("zero", "0", "must be a mapping of keys to values"),
    ("false", "false", "must be a mapping of keys to values"),
    ("list", "[]", "must be a mapping of keys to values"),
    ("quoted-empty", "''", "must be a mapping of keys to values"),
    ("duplicate", "smoothing: {window: 3}\nsmoothing: {window: 5}\n", "has the key 'smoothing' twice"),
    ("duplicate-inner", "stats:\n  interval_s: 1\n  interval_s: 2\n", "has the key 'interval_s' twice"),
    ("alias-bomb", ALIAS_BOMB, "expands to more than 10000 values"),
    ("self-alias", "a: &x [1, *x]\n", "contains itself"),
    ("deep", "[" * 20000 + "]" * 20000, "nests values deeper than 32 levels"),
    ("deep-maps", "{a: " * 5000 + "1" + "}" * 5000, "nests values deeper than 32 levels"),
    ("huge-int", "smoothing: {window: " + "9" * 5000 + "}\n", "holds a value YAML cannot build"),
    ("python-tag", "source: !!python/object/apply:os.system [true]\n", "not valid YAML"),
    ("tilde-user", "stats: {path: ~nosuchuser/stats.json}\n", "user 'nosuchuser', which does not exist"),
    ("long-name", f"report: {{path: /tmp/{'n' * 300}.json}}\n", "is 305 bytes long; the limit is 255"),
    ("long-path", f"record: /{'d/' * 2100}v.mp4\n", "the limit is 4095"),
    ("webcam-digits", "source: 'webcam:" + "1" * 30 + "'\n", "a webcam number is 0 to 1023"),
    ("camera-index", f"camera: {{index: {2**63}}}\n", "expected a camera number from 0 to 1023"),
    ("file-tilde", "source: 'file:~nosuchuser/v.mp4'\n", "user 'nosuchuser'"),
    ("events-tilde", "events: {path: '~nosuchuser/e.jsonl'}\n", "user 'nosuchuser'"),
    ("nul-source", 'source: "file:/tmp/a\\0b"\n', "config key 'source'"),
    ("non-str-key", "{[1, 2]: 3}\n", "not valid YAML"),
    ("int-key", "1: 2\n", "unknown config key '1'"),
]


@pytest.mark.fast
@pytest.mark.parametrize("name, text, needle", CONFIG_FILES, ids=[c[0] for c in CONFIG_FILES])
def test_config_files_that_are_not_configs_are_config_errors(tmp_path, name, text, needle):
    path = tmp_path / "config.yaml"
    path.write_text(text)
    t0 = time.monotonic()
    with pytest.raises(ConfigError, match=None) as err:
        load_config(path)
    assert needle in str(err.value) and "\n" not in str(err.value)
    assert len(str(err.value)) < 600 and time.monotonic() - t0 < 5


@pytest.mark.fast
def test_empty_and_comment_only_configs_still_give_the_defaults(tmp_path):
    for text in ("", "# nothing here\n", "---\n"):
        path = tmp_path / "config.yaml"
        path.write_text(text)
        assert load_config(path) == validate(Config())


@pytest.mark.fast
def test_special_files_as_config_are_refused_without_reading_them(tmp_path):
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    big = tmp_path / "big.yaml"
    big.write_text("# " + "x" * (1 << 20) + "\n")
    cases = [
        (fifo, "is a FIFO"),
        (Path("/dev/zero"), "is a character device"),
        (tmp_path, "is a directory"),
        (big, "the limit is 1048576"),
        (Path("~nosuchuser/config.yaml"), "user 'nosuchuser'"),
        (Path("/tmp/" + "c" * 5000), "the limit is 4095"),
    ]
    t0 = time.monotonic()
    for path, needle in cases:
        with pytest.raises(ConfigError, match=needle):
            load_config(path)
    assert time.monotonic() - t0 < 5


def test_the_daemon_refuses_a_fifo_config_and_an_alias_bomb_at_once(tmp_path, video_args):
    fifo = tmp_path / "config.yaml"
    os.mkfifo(fifo)
    assert_one_line_error(edge_fer([*video_args, "--config", str(fifo)], timeout=60), 2, "is a FIFO")
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(ALIAS_BOMB)
    assert_one_line_error(edge_fer([*video_args, "--config", str(bomb)], timeout=60), 2, "expands to more")


@pytest.mark.fast
@pytest.mark.parametrize(
    "spec, ok",
    [
        ("auto", True),
        ("picamera2", True),
        ("webcam", True),
        ("webcam:1023", True),
        ("webcam:1024", False),
        ("webcam:" + "9" * 30, False),
        ("webcam:\u0663", False),  # an Arabic-Indic digit: not a camera number
        ("webcam:-1", False),
        ("file:/tmp/v.mp4", True),
        ("file:~nosuchuser/v.mp4", False),
        ("file:/tmp/" + "v" * 300, False),
        ("file:", False),
        ("camera", False),
        ("", False),
    ],
)
def test_source_specs(spec, ok):
    if ok:
        assert check_source(spec) == spec
    else:
        with pytest.raises(ConfigError, match="config key 'source'"):
            check_source(spec)


# --- models and their metadata -------------------------------------------------------------


BAD_PROGRAMS = [
    ("five_outputs", "outputs (15, 5) per batch of 15, but this edge-fer needs (15, 7)"),
    ("nine_outputs", "outputs (15, 9)"),
    ("rank3_output", "outputs (15, 1, 7)"),
    ("nan_output", "non-finite scores"),
    ("constant_output", "every test face the same scores"),
    ("fixed_called_dynamic", "fails on a batch of 1 faces"),
]


def test_programs_that_are_wrong_are_refused_at_load(bad_models):
    for name, needle in BAD_PROGRAMS:
        with pytest.raises(ModelError, match=None) as err:
            load_classifier(bad_models / f"{name}.pte")
        assert needle in str(err.value), (name, str(err.value))
    good = load_classifier(bad_models / "good_tiny.pte")  # the acceptance test can pass
    assert good.classify_batch(np.zeros((3, 48, 48), np.uint8)).shape == (3, 7)
    good.close()


def test_the_daemon_exits_3_on_a_wrong_program_before_ready(bad_models, video_args):
    for name in ("five_outputs", "nan_output"):
        proc = edge_fer([*video_args, "--model", str(bad_models / f"{name}.pte"), "--max-frames", "5"])
        assert_one_line_error(proc, 3, "model error")
        assert "ready" not in proc.stderr


def _model(tmp_path: Path, shipped_model: Path, meta: bytes | None = None, edit=None) -> Path:
    model = tmp_path / "m.pte"
    shutil.copy(shipped_model, model)
    data = json.loads(shipped_model.with_suffix(".json").read_text())
    if edit is not None:
        edit(data)
    model.with_suffix(".json").write_bytes(meta if meta is not None else json.dumps(data).encode())
    return model


METADATA = [
    ("input-string", lambda m: m.update(input="batch of 15"), "'input' must be an object"),
    ("input-list", lambda m: m.update(input=[15]), "'input' must be an object"),
    (
        "dynamic-string",
        lambda m: m.update(input={"dynamic_batch": "yes"}),
        "dynamic_batch must be true or false",
    ),
    ("mean-huge", lambda m: m["preprocess"].update(mean=1e308), "preprocess.mean 1e+308 must be in [0, 1]"),
    ("std-huge", lambda m: m["preprocess"].update(std=1e3), "preprocess.std 1000"),
    ("size-float", lambda m: m["preprocess"].update(input_size=47.5), "whole number of pixels"),
    ("name-dict", lambda m: m.update(name={"a": 1}), "'name' must be a string"),
    ("classes-int", lambda m: m.update(classes=7), "predicts 7"),
]


@pytest.mark.fast
@pytest.mark.parametrize("name, edit, needle", METADATA, ids=[c[0] for c in METADATA])
def test_metadata_values_outside_what_can_work_are_model_errors(tmp_path, shipped_model, name, edit, needle):
    with pytest.raises(ModelError, match=None) as err:
        read_metadata(_model(tmp_path, shipped_model, edit=edit))
    assert needle in str(err.value)


@pytest.mark.fast
def test_metadata_bytes_and_files_that_are_not_json_objects(tmp_path, shipped_model):
    good = shipped_model.with_suffix(".json").read_bytes()
    for raw, needle in (
        (good.replace(b'"name"', b'"n\xe9me"'), "is not UTF-8"),
        (b"[" * 100000, "is not valid JSON"),
        (b"null", "must be a JSON object"),
        (b"\x00" * 10, "is not valid JSON"),
    ):
        with pytest.raises(ModelError, match=needle):
            read_metadata(_model(tmp_path, shipped_model, meta=raw))
    model = _model(tmp_path, shipped_model)
    meta = model.with_suffix(".json")
    meta.unlink()
    os.mkfifo(meta)
    with pytest.raises(ModelError, match="is a FIFO"):
        read_metadata(model)
    meta.unlink()
    model = _model(tmp_path, shipped_model, edit=lambda m: m.update(input=None))  # null: fixed batch
    load_classifier(model).close()


@pytest.mark.fast
def test_model_files_that_are_special_or_huge_are_refused_without_reading_them(tmp_path):
    fifo = tmp_path / "m.pte"
    os.mkfifo(fifo)
    huge = tmp_path / "huge.pte"
    with open(huge, "wb") as f:
        f.truncate(2 << 30)  # a sparse 2 GiB file: reading it whole would take the memory
    t0 = time.monotonic()
    for path, needle in (
        (fifo, "is a FIFO"),
        (Path("/dev/zero"), "is a character device"),
        (tmp_path, "is a directory"),
        (huge, "is not an ExecuTorch program"),
        (tmp_path / ("m" * 300 + ".pte"), "cannot be read"),
    ):
        with pytest.raises(ModelError, match=needle):
            load_classifier(path)
    assert time.monotonic() - t0 < 5


def test_a_pickle_that_runs_code_is_refused_before_it_runs(tmp_path, video_args):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    code = "import os, pickle\nclass P:\n    def __reduce__(self):\n"
    code += f"        return (os.system, ('touch {marker}',))\n"
    code += f"open({str(evil)!r}, 'wb').write(pickle.dumps({{'kind': P(), 'arch': 1, 'state_dict': 2}}))\n"
    subprocess.run([sys.executable, "-c", code], check=True)
    proc = edge_fer([*video_args, "--model", str(evil), "--max-frames", "5"])
    assert_one_line_error(proc, 3, "model error", "pickled objects other than weights")
    assert not marker.exists()


# --- outputs, signals, stdio ---------------------------------------------------------------


def test_output_paths_that_are_special_files_are_config_errors(tmp_path, video_args):
    fifo = tmp_path / "events.fifo"
    os.mkfifo(fifo)
    for flags, needle in (
        (["--events-jsonl", str(fifo)], "is a FIFO, not a regular file"),
        (["--report-json", str(fifo)], "is a FIFO, not a regular file"),
        (["--stats-path", str(tmp_path)], "is a directory, not a regular file"),
        (["--stats-path", "/dev/null"], "is a character device, not a regular file"),
        (["--events-jsonl", f"/tmp/{'e' * 300}"], "the limit is 255"),
    ):
        proc = edge_fer([*video_args, *flags, "--max-frames", "5"], timeout=60)
        assert_one_line_error(proc, 2, needle)
    assert stat_is_fifo(fifo)


def stat_is_fifo(path: Path) -> bool:
    import stat

    return stat.S_ISFIFO(os.lstat(path).st_mode)


def _start(args: list[str], **kw) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "edge_fer.apps.daemon", *args],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **kw.pop("env", {})},
        **kw,
    )


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()[-2000:]
        time.sleep(0.05)


def test_a_second_daemon_on_the_same_stats_path_refuses(tmp_path, video_args):
    stats = Path(video_args[video_args.index("--stats-path") + 1])
    first = _start(video_args, stdout=subprocess.DEVNULL)
    try:
        _wait_for(stats, first)
        proc = edge_fer([*video_args, "--max-frames", "5"], timeout=60)
        assert_one_line_error(proc, 2, f"in use by pid {first.pid}", "its own stats.path")
        assert first.poll() is None and json.loads(stats.read_text())["pid"] == first.pid
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=20)
    assert first.returncode == 0 and not stats.exists()
    assert not list(stats.parent.glob(".stats.json.lock"))


def _signal_mask(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1], 16)
    return 0


def test_signals_during_start_up_and_usr1_usr2_never_kill_it(tmp_path, video_args):
    """SIGHUP, SIGUSR1 and SIGUSR2 sent while it is still importing and loading: handled
    (a status line), never fatal; the daemon then runs and stops cleanly."""
    stats = Path(video_args[video_args.index("--stats-path") + 1])
    proc = _start(video_args, stdout=subprocess.DEVNULL)
    try:
        hup = 1 << (signal.SIGHUP - 1)
        deadline = time.monotonic() + 30
        while not _signal_mask(proc.pid, "SigCgt") & hup:  # handlers in place
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.002)
        for sig in (signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGHUP):
            proc.send_signal(sig)
            time.sleep(0.05)
        _wait_for(stats, proc)
        proc.send_signal(signal.SIGUSR1)
        time.sleep(0.5)
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0 and "Traceback" not in err, err[-2000:]
    assert "received SIGUSR2: " in err and err.count("received SIGUSR1: ") == 2
    assert "frames," in err.split("received SIGUSR1: ")[-1].splitlines()[0]


def test_closed_stdout_and_a_missing_notify_socket_do_not_crash(tmp_path, video_args):
    events = tmp_path / "events.jsonl"
    args = [*video_args, "--max-frames", "10", "--console", "on", "--events-jsonl", str(events)]
    env = {**os.environ, "NOTIFY_SOCKET": str(tmp_path / "missing.sock")}
    proc = subprocess.run(
        [sys.executable, "-m", "edge_fer.apps.daemon", *args],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        timeout=120,
        pass_fds=(),
        preexec_fn=lambda: os.close(1),  # edge-fer ... >&-
    )
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert proc.stderr.count("cannot notify systemd through NOTIFY_SOCKET") == 1
    lines = events.read_text().splitlines()
    assert len(lines) == 10 and all(json.loads(line)["frame"] == i for i, line in enumerate(lines))


class _NanForFaceTwo:
    """A classifier whose second face's scores are NaN (a program that misbehaves on some
    input after passing its acceptance test)."""

    classes = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")

    def __init__(self) -> None:
        from edge_fer.emotions.preprocess import PreprocessSpec

        self.spec = PreprocessSpec()

    def classify_batch(self, faces: np.ndarray) -> np.ndarray:
        probs = np.full((len(faces), 7), 1 / 7, np.float32)
        if len(faces) > 1:
            probs[1] = np.nan
        return probs


class _TwoFaces:
    name = "fake"

    def detect(self, image: np.ndarray) -> list:
        return [(10, 10, 60, 60), (200, 10, 60, 60)]


@pytest.mark.fast
def test_non_finite_scores_never_reach_an_output(tmp_path, caplog):
    from edge_fer.config import DetectorConfig, SmoothingConfig, TrackerConfig
    from edge_fer.faces.finder import FaceFinder
    from edge_fer.outputs.events import EventsLog
    from edge_fer.runtime.pipeline import Pipeline
    from edge_fer.sources.base import RawFrame

    near = DetectorConfig(tile_zoom=0, track_zoom_px=0)  # the stub's boxes only from the whole frame
    pipeline = Pipeline(
        FaceFinder(_TwoFaces, near), _NanForFaceTwo(), near, TrackerConfig(), SmoothingConfig()
    )
    log = EventsLog(str(tmp_path / "e.jsonl"))
    image = np.zeros((240, 320, 3), np.uint8)
    for seq in range(3):
        result = pipeline.step(RawFrame(image), float("nan"), seq)  # a NaN timing too
        assert [f.id for f in result.faces] == [1]
        assert all(np.isfinite(f.probs).all() and np.isfinite(f.score) for f in result.faces)
        log.on_frame(result, None)
    log.close()
    lines = (tmp_path / "e.jsonl").read_text().splitlines()
    events = [json.loads(line, parse_constant=pytest.fail) for line in lines]  # strict JSON
    assert len(events) == 3 and events[0]["timing_ms"]["capture"] is None
    assert caplog.text.count("non-finite scores") == 1


def test_metrics_server_keeps_threads_bounded_and_scrapes_working_under_slow_clients():
    import socket
    import threading
    from urllib.request import urlopen

    from prometheus_client import CollectorRegistry
    from prometheus_client.core import CounterMetricFamily

    from edge_fer.core.metrics_server import serve_registry

    class Renders:
        count = 0

        def collect(self):
            Renders.count += 1
            yield CounterMetricFamily("renders_test", "times the registry was rendered", value=self.count)

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Renders())
    server = serve_registry(registry, 0, "127.0.0.1", "metrics")
    port = server.server_address[1]
    base = threading.active_count()
    clients = []
    try:
        for _ in range(300):  # half-sent requests, held open
            c = socket.create_connection(("127.0.0.1", port), timeout=5)
            c.send(b"GET /metr")
            clients.append(c)
        time.sleep(1)
        assert threading.active_count() <= base + 9
        for _ in range(5):  # a scraper still gets through: slow clients are pushed out
            assert b"renders_test_total" in urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
        before, t0 = Renders.count, time.monotonic()
        for _ in range(50):
            urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
        # a flood is served from shared renders: at most one per 0.5 s, not one per request
        assert Renders.count - before <= (time.monotonic() - t0) / 0.5 + 1
        assert threading.active_count() <= base + 9
    finally:
        for c in clients:
            c.close()
        server.close()


def test_sigterm_during_start_up_stops_it_cleanly(video_args):
    proc = _start(video_args, stdout=subprocess.DEVNULL)
    term = 1 << (signal.SIGTERM - 1)
    deadline = time.monotonic() + 30
    while not _signal_mask(proc.pid, "SigCgt") & term:
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.002)
    proc.send_signal(signal.SIGTERM)
    t0 = time.monotonic()
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0 and time.monotonic() - t0 < 3 and "Traceback" not in err, err[-2000:]


def test_monitor_inputs_that_are_special_files(tmp_path):
    from testkit.programs import monitor

    fifo = tmp_path / "stats.fifo"
    os.mkfifo(fifo)
    for flags, needle in (
        (["--stats", str(fifo)], "is a FIFO, not the daemon's stats file"),
        (["--stats", "/dev/zero"], "is a character device"),
        (["--csv", str(fifo)], "is a FIFO, not a regular file"),
        (["--csv", "/dev/full"], "cannot write /dev/full (No space left on device)"),
        (["--csv", "~nosuchuser/m.csv"], "user 'nosuchuser'"),
    ):
        proc = monitor(["--seconds", "0.5", "--interval", "0.1", *flags], timeout=30)
        assert_one_line_error(proc, 2, needle)


@pytest.mark.fast
def test_monitor_reads_a_stats_file_that_turns_into_a_fifo_without_blocking(tmp_path):
    from edge_fer.monitor.daemon_stats import DaemonWatcher

    stats = tmp_path / "stats.json"
    os.mkfifo(stats)
    t0 = time.monotonic()
    sample = DaemonWatcher(stats).sample()
    assert not sample.running and "is a FIFO" in sample.reason and time.monotonic() - t0 < 2

"""The exit-code table: docs/exit-codes.md holds exactly what edge_fer/core/exit_codes.py says, and
every row is walked: for each code and each program the table names, a real run that must
end with that code and one line (no traceback)."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from edge_fer.core.exit_codes import ALL, MEANINGS, ExitCode, parse_table, table_markdown

ROOT = Path(__file__).resolve().parents[1]
MEM = "not enough memory"
DAEMON, CLASSIFY, MONITOR = ALL
LAUNCH = {
    DAEMON: [sys.executable, "-m", "edge_fer.apps.daemon"],
    CLASSIFY: [sys.executable, "-c", "from edge_fer.core.memory import classify; classify()"],
    MONITOR: [sys.executable, "-c", "from edge_fer.core.memory import monitor; monitor()"],
}


def limits(address_mib: int | None = None, file_bytes: int | None = None) -> Callable[[], None]:
    def apply() -> None:
        if address_mib is not None:
            resource.setrlimit(resource.RLIMIT_AS, (address_mib << 20, address_mib << 20))
        if file_bytes is not None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past it is EFBIG, not death
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_bytes, file_bytes))

    return apply


def run(program: str, args: list[str], preexec: Callable[[], None] | None = None, timeout: float = 120):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("DISPLAY", None)
    return subprocess.run(
        [*LAUNCH[program], *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        errors="backslashreplace",
        timeout=timeout,
        preexec_fn=preexec,
    )


@pytest.mark.fast
def test_the_docs_hold_exactly_the_table_in_code():
    docs = (ROOT / "docs" / "exit-codes.md").read_text()
    assert table_markdown() in docs, "regenerate it: python -m edge_fer.core.exit_codes"
    rows = parse_table(docs)
    assert set(rows) == {int(c) for c in ExitCode}
    for code, meaning in MEANINGS.items():
        assert rows[int(code)][2] == meaning.programs


@pytest.mark.fast
def test_the_daemon_help_and_module_docs_name_the_codes():
    import edge_fer.apps.daemon

    for code in ExitCode:
        if code != ExitCode.OK:
            assert f"{int(code)} " in edge_fer.apps.daemon.__doc__


@pytest.fixture(scope="module")
def cases(tmp_path_factory, shipped_model: Path, demo_video: Path, data_dir: Path) -> dict:
    """(code, program) -> (arguments, preexec, what the one line must say)."""
    tmp = tmp_path_factory.mktemp("codes")
    face = sorted((data_dir / "test" / "happy").glob("*.jpg"))[0]
    photo = tmp / "still.jpg"
    photo.write_bytes(face.read_bytes())
    secret = tmp / "password"
    secret.write_text("hunter2\n")
    secret.chmod(0o644)
    stats = tmp / "daemon-stats.json"
    stats.write_text("{}")
    base = ["--display", "none", "--console", "off", "--model", str(shipped_model)]
    stats_flag = ["--stats-path", str(tmp / "stats.json")]
    video = ["--source", f"file:{demo_video}", "--pace", "fast"]
    return {
        (ExitCode.OK, DAEMON): ([*base, *stats_flag, *video, "--max-frames", "3"], None, ""),
        (ExitCode.OK, CLASSIFY): ([str(face), "--no-detect", "--model", str(shipped_model)], None, ""),
        (ExitCode.OK, MONITOR): (["--stats", str(stats), "--seconds", "0.3", "--interval", "0.1"], None, ""),
        (ExitCode.INTERNAL, DAEMON): None,  # an in-process test below: a bug cannot be asked for
        (ExitCode.INTERNAL, MONITOR): (
            ["--stats", str(stats), "--seconds", "1.5", "--interval", "0.02", "--csv", str(tmp / "rows.csv")],
            limits(file_bytes=300),
            "--csv: writing",
        ),
        (ExitCode.CONFIG, DAEMON): (
            [*base, *stats_flag, "--source", os.fsdecode(b"file:/tmp/a\xffb.mp4")],
            None,
            "not UTF-8",
        ),
        (ExitCode.CONFIG, CLASSIFY): (
            [str(tmp / "missing.jpg"), "--model", str(shipped_model)],
            None,
            "missing",
        ),
        (ExitCode.CONFIG, MONITOR): (["--stats", os.fsdecode(b"/tmp/\xff/stats.json")], None, "UTF-8"),
        (ExitCode.MODEL, DAEMON): ([*base[:-1], str(tmp / "none.pte"), *stats_flag, *video], None, "model"),
        (ExitCode.MODEL, CLASSIFY): ([str(face), "--model", str(tmp / "none.pte")], None, "model"),
        (ExitCode.SOURCE, DAEMON): (
            [*base, *stats_flag, "--source", f"file:{photo}"],
            None,
            "edge-fer-classify",
        ),
        (ExitCode.DISPLAY, DAEMON): (
            ["--display", "drm", "--console", "off", "--model", str(shipped_model), *stats_flag, *video],
            None,
            "display",
        ),
        (ExitCode.MEMORY, DAEMON): (
            [*base, *stats_flag, *video],
            limits(address_mib=300),
            "not enough memory",
        ),
        (ExitCode.MEMORY, CLASSIFY): (
            [str(face), "--no-detect"],
            limits(address_mib=300),
            "not enough memory",
        ),
        (ExitCode.MEMORY, MONITOR): (["--seconds", "0.2"], limits(address_mib=100), MEM),
    }


def test_every_row_of_the_table_has_a_case(cases):
    named = {(code, program) for code, meaning in MEANINGS.items() for program in meaning.programs}
    assert named == set(cases)


@pytest.mark.parametrize(
    ("code", "program"),
    [(c, p) for c, m in MEANINGS.items() for p in m.programs if (c, p) != (ExitCode.INTERNAL, DAEMON)],
    ids=lambda v: v.name if isinstance(v, ExitCode) else v,
)
def test_each_row_is_what_the_program_returns(cases, code, program):
    args, preexec, words = cases[(code, program)]
    proc = run(program, args, preexec)
    assert proc.returncode == code, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    if code != ExitCode.OK:
        said = [line for line in proc.stderr.splitlines() if words.lower() in line.lower()]
        assert said, proc.stderr


def test_a_camera_password_file_readable_by_others_is_a_config_error(tmp_path, shipped_model):
    secret = tmp_path / "password"
    secret.write_text("hunter2\n")
    secret.chmod(0o644)
    config = tmp_path / "config.yaml"
    config.write_text(f"stream:\n  username: admin\n  password_file: {secret}\n")
    proc = run(
        DAEMON,
        ["--config", str(config), "--source", "rtsp://127.0.0.1:9/cam", "--display", "none",
         "--console", "off", "--model", str(shipped_model), "--stats-path", str(tmp_path / "s.json")],
    )  # fmt: skip
    assert proc.returncode == ExitCode.CONFIG, proc.stderr
    assert "chmod 600" in proc.stderr and "hunter2" not in proc.stderr


def test_an_internal_error_is_one_line_and_code_1(monkeypatch, capfd, tmp_path, demo_video, shipped_model):
    import edge_fer.apps.daemon
    import edge_fer.runtime.daemon

    def broken(*_args, **_kwargs):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(edge_fer.runtime.daemon, "run_daemon", broken)
    sigs = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGPIPE)
    before = {sig: signal.getsignal(sig) for sig in sigs}
    try:
        code = edge_fer.apps.daemon.main(
            ["--display", "none", "--console", "off", "--source", f"file:{demo_video}",
             "--model", str(shipped_model), "--stats-path", str(tmp_path / "s.json")]
        )  # fmt: skip
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)
    assert code == ExitCode.INTERNAL
    err = capfd.readouterr().err
    assert "internal error: ZeroDivisionError: a bug" in err and "Traceback" not in err


@pytest.mark.parametrize("limit_mib", [300, 350, 400, 450])
def test_under_a_tight_memory_limit_the_daemon_says_so_in_one_line(
    limit_mib, tmp_path, demo_video, shipped_model
):
    proc = run(
        DAEMON,
        ["--display", "none", "--console", "off", "--source", f"file:{demo_video}", "--pace", "fast",
         "--model", str(shipped_model), "--stats-path", str(tmp_path / "s.json"), "--max-frames", "5"],
        limits(address_mib=limit_mib),
    )  # fmt: skip
    assert proc.returncode == ExitCode.MEMORY, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "not enough memory" in lines[0] and f"{limit_mib} MiB" in lines[0]


@pytest.mark.fast
def test_a_memory_failure_while_loading_is_the_memory_line_not_a_model_error():
    from edge_fer.core.memory import is_memory_error
    from edge_fer.emotions.classifier import ModelError

    try:
        try:
            raise MemoryError()
        except MemoryError:
            raise ModelError("model x cannot be loaded (MemoryError: )") from None
    except ModelError as exc:
        assert is_memory_error(exc)
    assert not is_memory_error(ModelError("model x is not an ExecuTorch program"))
    assert is_memory_error(RuntimeError("can't start new thread"))
    assert is_memory_error(ImportError("libfoo.so: failed to map segment from shared object"))
    assert is_memory_error(OSError(12, "Cannot allocate memory"))


def test_an_allocation_that_fails_while_loading_is_the_memory_line(monkeypatch, capfd, tmp_path, demo_video):
    """Past the start-up floor, memory runs out as exceptions (the model's MemoryError wrapped
    in a ModelError, OpenCV's bad_alloc in a DetectorError): the same line and code 6, not
    'model error' (3)."""
    import edge_fer.runtime.daemon
    from edge_fer.emotions.classifier import ModelError

    def no_memory(*_args, **_kwargs):
        try:
            raise MemoryError()
        except MemoryError:
            raise ModelError("model x.pte cannot be loaded (MemoryError: )") from None

    import edge_fer.apps.daemon

    monkeypatch.setattr(edge_fer.runtime.daemon, "open_classifier", no_memory)
    sigs = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGPIPE)
    before = {sig: signal.getsignal(sig) for sig in sigs}
    try:
        code = edge_fer.apps.daemon.main(
            ["--display", "none", "--console", "off", "--source", f"file:{demo_video}",
             "--stats-path", str(tmp_path / "s.json")]
        )  # fmt: skip
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)
    assert code == ExitCode.MEMORY
    err = capfd.readouterr().err
    assert "not enough memory to run edge-fer (ModelError: model x.pte cannot be loaded" in err
    assert "model error" not in err and "Traceback" not in err

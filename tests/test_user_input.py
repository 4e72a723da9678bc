"""The user-input boundary (edge_fer/core/user_input.py): every path and URL a user gives, by flag,
config file, reload or tool argument, is refused in one line naming it (escaped) when the
libraries below cannot take it; nothing of it reaches OpenCV's C++ (where a byte that is not
UTF-8 was a SIGSEGV)."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edge_fer.core.user_input import InputRefused, file_arg, path_arg, shown, user_file, user_path, user_url

ROOT = Path(__file__).resolve().parents[1]
XFF = os.fsdecode(b"\xff")  # how argv carries the byte \xff: the lone surrogate \udcff


def run(
    args: list[str], module: str = "edge_fer.apps.daemon", timeout: float = 90
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        errors="backslashreplace",
        timeout=timeout,
    )


@pytest.mark.fast
@pytest.mark.parametrize(
    ("value", "why"),
    [
        (f"/tmp/a{XFF}b.mp4", "the byte \\xff, which is not UTF-8"),
        (b"/tmp/a\xc3.mp4", "the byte \\xc3"),
        ("/tmp/a\ud800", "U+D800"),
        ("/tmp/a\0b", "NUL"),
        ("/tmp/a\nb", "control character"),
        ("/tmp/a\x85b", "control character"),  # C1 controls steer terminals too
        ("/tmp/" + "n" * 300, "255"),
        ("/" + "d/" * 2100, "4095"),
        ("~nosuchuser/x", "nosuchuser"),
        ("", "empty"),
    ],
)
def test_unusable_paths_are_refused_naming_the_value_escaped(value, why):
    with pytest.raises(InputRefused) as refused:
        user_path(value, "--model")
    text = str(refused.value)
    assert text.startswith("--model '") and why in text and "\n" not in text
    text.encode("utf-8")  # printable anywhere: no surrogate left in the message


@pytest.mark.fast
def test_a_usable_path_is_returned_expanded():
    assert user_path("~/x.pte", "--model") == Path.home() / "x.pte"
    assert user_path("/tmp/caf\u00e9.mp4", "--model") == Path("/tmp/caf\u00e9.mp4")  # UTF-8 is fine


@pytest.mark.fast
def test_a_file_to_read_must_be_a_regular_file(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    (tmp_path / "big").write_bytes(b"x" * 100)
    for path, why in (
        (fifo, "a FIFO, not a regular file"),
        (tmp_path, "a directory"),
        (Path("/dev/zero"), "a character device"),
        (tmp_path / "gone", "does not exist"),
    ):
        with pytest.raises(InputRefused, match=why):
            user_file(path, "--yunet-model")
    with pytest.raises(InputRefused, match="100 bytes; the limit is 10"):
        user_file(tmp_path / "big", "--yunet-model", max_bytes=10)
    assert user_file(tmp_path / "big", "x") == tmp_path / "big"


@pytest.mark.fast
@pytest.mark.parametrize(
    ("url", "why"),
    [
        (f"http://cam{XFF}/video", "not UTF-8"),
        ("rtsp://cam/a b", "space"),
        ("rtsp://cam/a\tb", "control character"),
        ("rtsp://:554/x", "no host"),
        ("rtsp://cam:99999/x", "Port"),
        ("ftp://cam/x", "scheme"),
        ("http://cam/" + "x" * 5000, "limit is 4096"),
    ],
)
def test_unusable_urls_are_refused(url, why):
    with pytest.raises(InputRefused, match=why):
        user_url(url, "--source")


@pytest.mark.fast
def test_shown_escapes_what_a_terminal_or_log_would_choke_on():
    assert shown(f"a{XFF}b\n\x1b[31m") == "'a\\xffb\\n\\x1b[31m'"
    assert shown("x" * 200).endswith("...'") and len(shown("x" * 200)) < 90


@pytest.mark.fast
def test_argparse_types_give_the_flag_and_the_reason():
    parser = argparse.ArgumentParser(prog="tool")
    parser.add_argument("--out", type=path_arg)
    parser.add_argument("--model", type=file_arg)
    with pytest.raises(SystemExit) as stop:
        parser.parse_args(["--out", f"/tmp/{XFF}"])
    assert stop.value.code == 2
    with pytest.raises(SystemExit):
        parser.parse_args(["--model", "/dev/zero"])


# --- every entry point, for real ------------------------------------------------------------


@pytest.fixture()
def common(tmp_path, shipped_model) -> list[str]:
    return ["--display", "none", "--console", "off", "--model", str(shipped_model),
            "--stats-path", str(tmp_path / "stats.json"), "--max-frames", "3"]  # fmt: skip


@pytest.mark.parametrize(
    "flags",
    [
        ["--source", f"file:/tmp/a{XFF}b.mp4"],
        ["--source", f"http://127.0.0.1:1/a{XFF}b"],
        ["--source", f"rtsp://h{XFF}/x"],
        ["--source", "file:/tmp/a\x85b.mp4"],
        ["--yunet-model", f"/tmp/a{XFF}b.onnx"],
        ["--model", f"/tmp/a{XFF}b.pte"],
        ["--config", f"/tmp/a{XFF}b.yaml"],
        ["--stats-path", f"/tmp/a{XFF}/s.json"],
        ["--events-jsonl", f"/tmp/a{XFF}.jsonl"],
        ["--report-json", f"/tmp/a{XFF}.json"],
        ["--mqtt", f"mqtt://h{XFF}:1883"],
    ],
    ids=lambda flags: flags[0],
)
def test_every_daemon_flag_refuses_a_byte_that_is_not_utf8(common, demo_video, flags):
    proc = run([*common, "--source", f"file:{demo_video}", *flags])
    assert proc.returncode == 2, proc.stderr  # not -11 (SIGSEGV)
    assert "Traceback" not in proc.stderr
    # one line: a logged ERROR (values the config checks) or the flag parser's own error
    lines = [line for line in proc.stderr.splitlines() if "ERROR" in line or ": error:" in line]
    assert len(lines) == 1 and ("not UTF-8" in lines[0] or "control character" in lines[0]), proc.stderr


def test_a_config_file_holding_an_escaped_surrogate_is_a_config_error(tmp_path, common):
    config = tmp_path / "config.yaml"
    for text in (
        'source: "file:/tmp/a\\udcffb.mp4"\n',
        'source: "http://cam/\\udcff"\n',
        'detector:\n  yunet_model: "/tmp/\\udcff.onnx"\n',
        'stream:\n  username: u\n  password_file: "/tmp/\\udcff"\n',
        'mqtt:\n  url: mqtt://h\n  topic_prefix: "a\\udcff"\n',
    ):
        config.write_text(text)
        proc = run([*common, "--config", str(config)])
        assert proc.returncode == 2 and "not UTF-8" in proc.stderr and "Traceback" not in proc.stderr, text


def test_a_reload_to_an_unusable_source_keeps_the_running_one(tmp_path, common, demo_video):
    config = tmp_path / "config.yaml"
    config.write_text(f"source: file:{demo_video}\npace: fast\n")
    stats = tmp_path / "stats.json"
    args = [a for a in common if a not in ("--max-frames", "3")]
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge_fer.apps.daemon", *args, "--config", str(config)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        errors="backslashreplace",
    )
    try:
        deadline = time.monotonic() + 60
        while not stats.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        config.write_text('source: "file:/tmp/a\\udcffb.mp4"\n')
        proc.send_signal(signal.SIGHUP)
        time.sleep(3)
        assert proc.poll() is None, "the daemon died on the reload"
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "config reload failed, keeping the running config" in err and "not UTF-8" in err


def test_tools_and_the_monitor_refuse_it_in_one_line():
    monitor = run(["--stats", f"/tmp/{XFF}/stats.json", "--seconds", "1"], module="edge_fer.apps.monitor")
    assert monitor.returncode == 2 and "not UTF-8" in monitor.stderr and "Traceback" not in monitor.stderr
    tool = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "make_demo_video.py"), "--out", f"/tmp/{XFF}.mp4"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        errors="backslashreplace",
        timeout=60,
    )
    assert tool.returncode == 2 and "not UTF-8" in tool.stderr and "Traceback" not in tool.stderr


@pytest.mark.fast
def test_every_path_flag_of_every_program_and_tool_goes_through_the_boundary():
    """A path flag typed `Path` skips the checks above (a byte that is not UTF-8 would reach
    OpenCV): programs, tools and benchmarks type them path_arg or file_arg, and parse with
    FlagParser (one-line errors)."""
    root = Path(__file__).resolve().parents[1]
    sources = [*root.glob("edge_fer/**/*.py"), *root.glob("tools/*.py"), *root.glob("benchmarks/*.py")]
    for path in sources:
        text = path.read_text()
        where = path.relative_to(root)
        assert "type=Path" not in text, f"{where}: a path flag typed Path; use path_arg or file_arg"
        assert "argparse.ArgumentParser(" not in text, f"{where}: parse with user_input.FlagParser"

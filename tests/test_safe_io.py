"""The one safe writer and reader (edge_fer.core.safe_io): what it refuses, what it never follows,
and that a second daemon cannot take a stats path that is in use."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from edge_fer.core import safe_io
from edge_fer.core.safe_io import LockHeld, PathLock, PathRefused

pytestmark = pytest.mark.fast


def test_atomic_write_replaces_the_file_with_its_mode_whatever_the_umask(tmp_path):
    target = tmp_path / "stats.json"
    target.write_text("old")
    old = os.umask(0o077)
    try:
        safe_io.write_json_atomic(target, {"a": 1}, mode=0o640)
    finally:
        os.umask(old)
    assert json.loads(target.read_text()) == {"a": 1}
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["stats.json"]  # no temp file left


def test_a_symlink_planted_at_the_old_predictable_temp_name_is_never_followed(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious")
    os.chmod(victim, 0o600)
    target = tmp_path / "stats.json"
    for name in (f".{target.name}.{os.getpid()}.tmp", f".{target.name}.tmp"):
        (tmp_path / name).symlink_to(victim)
    for _ in range(20):
        safe_io.write_json_atomic(target, {"frames": 1})
    assert victim.read_text() == "precious" and stat.S_IMODE(victim.stat().st_mode) == 0o600
    assert json.loads(target.read_text()) == {"frames": 1}


def test_special_targets_are_refused_not_replaced(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for target in (tmp_path, fifo, Path("/dev/null")):
        with pytest.raises(PathRefused, match="not a regular file"):
            safe_io.write_atomic(target, b"x")
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_a_link_to_a_regular_file_is_replaced_by_a_file_not_written_through(tmp_path):
    real = tmp_path / "real"
    real.write_text("keep")
    link = tmp_path / "link.json"
    link.symlink_to(real)
    safe_io.write_atomic(link, b"{}")
    assert real.read_text() == "keep" and not link.is_symlink() and link.read_text() == "{}"


def test_json_is_always_valid_nan_and_infinity_become_null():
    import numpy as np

    text = safe_io.dumps_json({"a": float("nan"), "b": [float("inf"), 1.5], "c": np.float32("nan")})
    assert json.loads(text) == {"a": None, "b": [None, 1.5], "c": None}
    assert "NaN" not in text and "Infinity" not in text


def test_bounded_reads_refuse_fifos_devices_directories_and_big_files(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    big = tmp_path / "big"
    big.write_bytes(b"x" * 2000)
    t0 = time.monotonic()
    cases = ((fifo, "a FIFO"), (Path("/dev/zero"), "a character device"), (tmp_path, "a directory"))
    for path, needle in cases:
        with pytest.raises(PathRefused, match=needle):
            safe_io.read_bounded(path, 1000)
    with pytest.raises(PathRefused, match="2000 bytes; the limit is 1000"):
        safe_io.read_bounded(big, 1000)
    assert safe_io.read_bounded(big, 2000) == b"x" * 2000
    assert time.monotonic() - t0 < 2  # nothing blocked


def test_streams_take_files_and_char_devices_never_fifos_and_never_block(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(PathRefused, match="a FIFO"):
        safe_io.open_stream(fifo)
    # with a reader on the other end the open would succeed: it is still refused
    reader = threading.Thread(target=lambda: open(fifo, "rb").close(), daemon=True)  # noqa: SIM115
    reader.start()
    time.sleep(0.2)
    with pytest.raises(PathRefused, match="a FIFO"):
        safe_io.open_stream(fifo)
    if reader.is_alive():  # refused before it was opened: let the reader go
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    reader.join(timeout=5)
    for path in (Path("/dev/null"), tmp_path / "events.jsonl"):
        fd = safe_io.open_stream(path)
        os.write(fd, b"line\n")
        os.close(fd)
    assert (tmp_path / "events.jsonl").read_bytes() == b"line\n"
    with pytest.raises(PathRefused, match="a directory"):
        safe_io.open_stream(tmp_path)


def test_path_lengths_past_the_os_limits_are_refused_with_the_limit():
    with pytest.raises(PathRefused, match="the limit is 4095"):
        safe_io.check_length("/" + "a/" * 3000)
    with pytest.raises(PathRefused, match="the limit is 255"):
        safe_io.check_length("/tmp/" + "n" * 256)
    with pytest.raises(PathRefused, match="NUL"):
        safe_io.check_length("/tmp/a\0b")
    safe_io.check_length("/tmp/" + "n" * 255)


HOLD = """
import sys, time
from edge_fer.core.safe_io import PathLock
lock = PathLock(sys.argv[1]); lock.acquire(); print("held", flush=True); time.sleep(30)
"""


def test_a_second_process_cannot_take_a_locked_path_and_release_frees_it(tmp_path):
    stats = tmp_path / "run" / "stats.json"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(stats)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(LockHeld, match=f"in use by pid {holder.pid}"):
            PathLock(stats).acquire()
    finally:
        holder.kill()
        holder.wait()
    lock = PathLock(stats)
    lock.acquire()  # the kernel dropped the dead holder's lock
    assert lock.lock_path.read_text().strip() == str(os.getpid())
    lock.release()
    assert not lock.lock_path.exists()

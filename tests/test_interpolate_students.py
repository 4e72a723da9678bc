"""tools/interpolate_students.py refuses bad inputs with one line, before minutes of evaluation."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
V10T = ROOT / "artifacts" / "v10t"


def _tool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "tools" / "interpolate_students.py"), *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def _other_inputs(tmp_path: Path) -> Path:
    ckpt = torch.load(V10T / "pruned.pt", weights_only=True)
    ckpt["preprocess"] = {**ckpt["preprocess"], "input_size": 64}
    torch.save(ckpt, tmp_path / "big.pt")
    return tmp_path / "big.pt"


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("out is a folder", "is a directory, not a regular file"),
        ("out is a FIFO", "is a FIFO, not a regular file"),
        ("out is /dev/null", "is a character device, not a regular file"),
        ("out under a file", "cannot be used (Not a directory)"),
        ("out names no file", "it is empty"),
        ("a student twice", "--robust names one student twice"),
        ("other inputs", "was trained on other inputs"),
        ("other net", "not all one architecture"),
    ],
)
def test_bad_inputs_are_one_line_before_any_evaluation(case, message, tmp_path):
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "file").write_text("x")
    pruned, student = str(V10T / "pruned.pt"), str(V10T / "student.pt")
    out = {
        "out is a folder": str(tmp_path),
        "out is a FIFO": str(tmp_path / "fifo"),
        "out is /dev/null": "/dev/null",
        "out under a file": str(tmp_path / "file" / "student.pt"),
        "out names no file": "",
    }.get(case, str(tmp_path / "out" / "student.pt"))
    robust = {
        "a student twice": [student, student],
        "other inputs": [str(_other_inputs(tmp_path))],
        "other net": [str(ROOT / "teachers" / "t4" / "teacher.pt")],
    }.get(case, [student])
    proc = _tool(
        "--clean", pruned, "--robust", *robust, "--pick", "0.5", "--out", out, "--data", str(tmp_path)
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-1500:]
    lines = proc.stderr.strip().splitlines()
    # one line; or argparse's usage then its one-line error, for a flag its type= refuses
    assert message in lines[-1] and (len(lines) == 1 or lines[0].startswith("usage:")), proc.stderr
    assert proc.stdout == ""  # refused before the table's first line
    assert (tmp_path / "fifo").is_fifo() and Path("/dev/null").is_char_device()
    assert not list(tmp_path.glob("*.tmp"))

"""tools/evaluate.py writes its summary and confusion PNG into its --out folder (runs/eval/ by
default), never into the folder it is run from."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _evaluate(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "tools" / "evaluate.py"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_outputs_go_to_the_out_folder_not_the_cwd(tmp_path, data_dir, shipped_model):
    faces = tmp_path / "faces"
    for class_dir in sorted((data_dir / "test").iterdir()):
        (faces / class_dir.name).mkdir(parents=True)
        for f in sorted(class_dir.glob("*.jpg"))[:3]:
            shutil.copy(f, faces / class_dir.name / f.name)
    cwd, out = tmp_path / "cwd", tmp_path / "out" / "eval"
    cwd.mkdir()
    proc = _evaluate(cwd, "--data", str(faces), "--model", str(shipped_model), "--out", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    assert list(cwd.iterdir()) == []
    stem = f"{shipped_model.stem}_on_faces"
    summary = json.loads((out / f"{stem}.json").read_text())
    assert summary == json.loads(proc.stdout.splitlines()[-1]) and summary["n"] == 21
    if "skipped (needs matplotlib" not in proc.stdout:
        assert (out / f"{stem}_confusion.png").stat().st_size > 1000
    assert f"summary: {out / stem}.json" in proc.stdout


def test_an_out_folder_that_cannot_be_made_is_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    proc = _evaluate(tmp_path, "--data", str(tmp_path), "--out", str(blocker / "eval"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith(f"error: --out {blocker / 'eval'}: cannot create it") and "writable folder" in line

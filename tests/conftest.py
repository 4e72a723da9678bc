"""Shared fixtures: the real FER2013 folder, real faces, a real test video, the shipped model."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge_fer.config import DEFAULT_MODEL as SHIPPED_MODEL
from edge_fer.core.paths import DEFAULT_DATA as DATA
from edge_fer.core.paths import DEFAULT_YUNET as YUNET

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures"


def needs_data() -> pytest.MarkDecorator:
    return pytest.mark.skipif(
        not (DATA / "train").is_dir(), reason=f"FER2013 not found at {DATA} (set EDGE_FER_DATA)"
    )


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not (DATA / "train").is_dir():
        pytest.skip(f"FER2013 not found at {DATA} (set EDGE_FER_DATA)")
    return DATA


@pytest.fixture(scope="session")
def yunet_model() -> Path:
    if not YUNET.is_file():
        pytest.skip(f"YuNet model not found at {YUNET} (set EDGE_FER_YUNET)")
    return YUNET


@pytest.fixture(scope="session")
def small_fer(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Path:
    """A small copy of the FER2013 folder layout with real images (12 per class and split)."""
    root = tmp_path_factory.mktemp("fer_small")
    for split in ("train", "test"):
        for class_dir in sorted((data_dir / split).iterdir()):
            files = sorted(class_dir.glob("*.jpg"))[:12]
            (root / split / class_dir.name).mkdir(parents=True)
            for f in files:
                shutil.copy(f, root / split / class_dir.name / f.name)
    return root


@pytest.fixture(scope="session")
def public_faces(data_dir: Path):
    """400 real PublicTest faces (stratified), preprocessed like the model expects."""
    from edge_fer.data.fer2013 import load_split, stratified_subset
    from edge_fer.emotions.preprocess import PreprocessSpec

    faces = load_split(data_dir, "public", PreprocessSpec())
    return faces.subset(stratified_subset(faces.labels, 400 / len(faces), 0))


@pytest.fixture(scope="session")
def shipped_model() -> Path:
    if not SHIPPED_MODEL.is_file():
        pytest.fail(f"the shipped model {SHIPPED_MODEL} is missing")
    return SHIPPED_MODEL


@pytest.fixture(scope="session")
def demo_video(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Path:
    """A real 640x480 video of FER2013 faces (built here, never committed)."""
    from edge_fer.data.demo_video import build_demo_video

    out = tmp_path_factory.mktemp("video") / "faces.mp4"
    build_demo_video(data_dir, out, frames=90, faces=1, hold=15, seed=0)
    return out


@pytest.fixture()
def video_args(tmp_path: Path, shipped_model: Path, demo_video: Path) -> list[str]:
    """edge-fer flags for a headless run on the demo video with the shipped model."""
    stats = str(tmp_path / "stats.json")
    return ["--source", f"file:{demo_video}", "--display", "none", "--model", str(shipped_model),
            "--stats-path", stats]  # fmt: skip


@pytest.fixture()
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def bad_models(tmp_path_factory) -> Path:
    """The programs of tests/bad_models.py, exported once per session in a child process."""
    out = tmp_path_factory.mktemp("bad_models")
    done = subprocess.run(
        [sys.executable, str(Path(__file__).parent / "bad_models.py"), str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return out


def train(*args: str) -> subprocess.CompletedProcess:
    """Run tools/train_mobilenet.py as users do, in its own process, so a native crash in
    training fails a test with its exit status instead of killing the whole session."""
    return subprocess.run(
        [sys.executable, str(Path(__file__).resolve().parents[1] / "tools" / "train_mobilenet.py"), *args],
        capture_output=True,
        text=True,
        timeout=900,
    )


@pytest.fixture(scope="session")
def quick_run(tmp_path_factory, data_dir) -> Path:
    """Every training stage for real, as a user runs them (--quick, recipes/quick.yaml, on the
    smallest slice that still has faces of every class: 287 train, 179 validation): all but
    export in one process, then export on its own in a fresh one (as when shipping a run
    later), shipping into <runs>/ship. Shared by the training, recipe and ONNX tests."""
    runs = tmp_path_factory.mktemp("runs")
    common = ("--quick", "--subset", "0.01", "--data", str(data_dir), "--runs", str(runs),
              "--name", "t", "--threads", "2", "--device", "cpu")  # fmt: skip
    proc = train(*common, "--stages", "teacher,distill,prune,quantize", "--qat-always", "--qat-epochs", "1",
                 "--average-last", "1", "--finetune-average-last", "1", "--teacher-tta")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert not (runs / "t" / "edge_fer_student.pte").exists()
    proc = train(*common, "--stages", "export", "--ship", str(runs / "ship"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    return runs / "t"

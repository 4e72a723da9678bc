"""Shared fixtures: the real FER2013 folder, real faces, a real test video, the shipped model;
and the suite's own checks: a test leaves nothing in the checkout, and a test of the fast tier
(`-m fast`) stays fast. The helpers tests share with the benchmarks live in `testkit`."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis.configuration import set_hypothesis_home_dir

from edge_fer.config import DEFAULT_MODEL as SHIPPED_MODEL
from edge_fer.core.paths import DEFAULT_DATA as DATA
from edge_fer.core.paths import DEFAULT_YUNET as YUNET
from testkit import FAKES
from testkit.programs import train
from testkit.scripts import load_script

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures"
# The fast tier: units and contracts, under a minute in all. A test marked `fast` whose setup or
# call takes longer than this (on an idle machine; see _fast_limit) fails when the tier runs,
# naming itself. EDGE_FER_FAST_LIMIT_S sets another limit.
FAST_LIMIT_S = 2.0
FAST_TIER_BUDGET_S = 60.0
# Session fixtures that export models or train: never in the fast tier.
FAST_REFUSES = {"bad_models", "quick_run", "demo_video"}


def _fast_tier_run(config: pytest.Config) -> bool:
    """Whether this run selects the fast tier (`-m fast`, `-m "fast and not web"`, ...)."""
    return re.search(r"(?<!not )\bfast\b", config.option.markexpr or "") is not None


def _fast_limit() -> tuple[float, float]:
    """The limit for one fast test now, and the load factor in it: on a shared machine (the
    1-minute load average above the core count) a test waits for a core as long as the others
    run, so the limit stretches by load per core."""
    load = max(1.0, os.getloadavg()[0] / (os.cpu_count() or 1))
    return float(os.environ.get("EDGE_FER_FAST_LIMIT_S", FAST_LIMIT_S)) * load, load


def pytest_configure(config: pytest.Config) -> None:
    # Hypothesis keeps its example database and caches in ./.hypothesis by default, i.e. in the
    # checkout; one scratch folder per run instead (a test module may still choose its own).
    home = tempfile.mkdtemp(prefix="edge-fer-hypothesis-")
    config.stash[_HYPOTHESIS_HOME] = home
    set_hypothesis_home_dir(home)
    config.stash[_STARTED] = time.monotonic()


def pytest_unconfigure(config: pytest.Config) -> None:
    home = config.stash.get(_HYPOTHESIS_HOME, None)
    if home:
        shutil.rmtree(home, ignore_errors=True)


_HYPOTHESIS_HOME = pytest.StashKey[str]()
_STARTED = pytest.StashKey[float]()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A fast test is never also slow, nor built on a session fixture that exports models or
    trains (it would make the whole tier wait for it)."""
    for item in items:
        if item.get_closest_marker("fast") is None:
            continue
        if item.get_closest_marker("slow") is not None:
            raise pytest.UsageError(f"{item.nodeid} is marked both fast and slow: keep one")
        heavy = sorted(FAST_REFUSES & set(getattr(item, "fixturenames", ())))
        if heavy:
            raise pytest.UsageError(
                f"{item.nodeid} is marked fast but uses {', '.join(heavy)}, which take minutes to make"
            )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    if not (
        report.when in ("setup", "call")
        and report.passed
        and item.get_closest_marker("fast") is not None
        and _fast_tier_run(item.config)
    ):
        return
    limit, load = _fast_limit()
    if report.duration > limit:
        report.outcome = "failed"
        report.longrepr = (
            f"{item.nodeid} is marked fast but its {report.when} took {report.duration:.1f} s (the limit is "
            f"{limit:.1f} s, load {load:.1f} per core): make it quicker or take its fast mark away"
        )


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    if not _fast_tier_run(config):
        return
    took = time.monotonic() - config.stash[_STARTED]
    verdict = "within" if took <= FAST_TIER_BUDGET_S else "OVER"
    terminalreporter.write_line(
        f"fast tier: {took:.0f} s from start to end, {verdict} its {FAST_TIER_BUDGET_S:.0f} s budget"
    )


def _new_entries(folder: Path, before: set[str]) -> list[str]:
    """Entries of `folder` that were not in `before` and that git does not ignore."""
    try:
        new = sorted(set(os.listdir(folder)) - before)
    except OSError:
        return []
    if not new:
        return []
    done = subprocess.run(
        ["git", "-C", str(folder), "check-ignore", "--", *new], capture_output=True, text=True
    )
    # 0: some are ignored, 1: none; otherwise not a git checkout (an exported tree): none are
    ignored = set(done.stdout.splitlines()) if done.returncode in (0, 1) else set()
    return [name for name in new if name not in ignored]


@pytest.fixture(autouse=True)
def _leaves_the_checkout_clean():
    """A test that writes into the checkout (or the current folder), say a file or folder
    named by a relative path it generated, fails here, naming what it left."""
    folders = {ROOT, Path.cwd()}
    before = {folder: set(os.listdir(folder)) for folder in folders}
    yield
    left = {folder: _new_entries(folder, names) for folder, names in before.items()}
    left = {folder: names for folder, names in left.items() if names}
    if left:
        pytest.fail(f"the test left {left} behind: write into tmp_path instead", pytrace=False)


@pytest.fixture()
def fake_picamera2(monkeypatch):
    """The picamera2 fake (testkit/fakes/picamera2), loaded fresh and imported by this process
    under picamera2's own name until the test ends."""
    fake = load_script(FAKES / "picamera2" / "__init__.py", "picamera2")
    monkeypatch.setitem(sys.modules, "picamera2", fake)
    return fake


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
    """The programs of testkit/bad_models.py, exported once per session in a child process."""
    out = tmp_path_factory.mktemp("bad_models")
    done = subprocess.run(
        [sys.executable, "-m", "testkit.bad_models", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return out


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

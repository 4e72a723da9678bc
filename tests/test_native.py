"""The torch-free ExecuTorch runner: built with the real compiler against the real wheel, run on
the shipped program, compared with executorch's own Python extension."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from edge_fer.emotions.classifier import ModelError, PteClassifier
from edge_fer.native import EtRunner, NativeBuildError, RunnerError, build_library, ensure_library

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def library() -> Path:
    return ensure_library()


def random_faces(n: int) -> np.ndarray:
    return np.random.default_rng(n).integers(0, 256, (n, 48, 48), dtype=np.uint8)


def test_native_and_python_extension_give_the_same_probabilities(shipped_model):
    native = PteClassifier(shipped_model, runtime="native")
    pybind = PteClassifier(shipped_model, runtime="pybind")
    assert (native.runtime, pybind.runtime) == ("native", "pybind")
    faces = random_faces(native.batch + 3)  # more than one call's worth
    for n in (1, 4, len(faces)):
        np.testing.assert_allclose(
            native.classify_batch(faces[:n]), pybind.classify_batch(faces[:n]), atol=1e-6
        )
    native.close()


def test_runner_checks_batch_and_shape(library, shipped_model):
    runner = EtRunner(library, shipped_model)
    assert runner.input_sizes == (15, 1, 48, 48) and runner.output_sizes == (15, 7)
    assert runner.run(np.zeros((3, 1, 48, 48), np.float32)).shape == (3, 7)
    with pytest.raises(RunnerError, match="batch 16 is outside 1..15"):
        runner.run(np.zeros((16, 1, 48, 48), np.float32))
    with pytest.raises(RunnerError, match=r"does not match the program's \(N, 1, 48, 48\)"):
        runner.run(np.zeros((2, 1, 40, 48), np.float32))
    runner.close()
    with pytest.raises(RunnerError, match="closed"):
        runner.run(np.zeros((1, 1, 48, 48), np.float32))


@pytest.mark.fast
def test_a_broken_program_is_a_model_error(tmp_path, shipped_model):
    broken = tmp_path / "broken.pte"
    data = bytearray(shipped_model.read_bytes())
    broken.write_bytes(bytes(data[: len(data) // 3]))  # a truncated copy keeps the magic
    broken.with_suffix(".json").write_text(shipped_model.with_suffix(".json").read_text())
    with pytest.raises(ModelError, match="ExecuTorch could not load .*broken.pte"):
        PteClassifier(broken, runtime="native")


def test_runtime_choice_native_fails_clearly_and_auto_falls_back(monkeypatch, shipped_model, caplog):
    def unavailable(*_args, **_kwargs):
        raise NativeBuildError("no C++ compiler found to build the ExecuTorch runner")

    monkeypatch.setattr("edge_fer.native.ensure_library", unavailable)
    with pytest.raises(ModelError, match="model.runtime is native, but no C\\+\\+ compiler"):
        PteClassifier(shipped_model, runtime="native")
    fallback = PteClassifier(shipped_model, runtime="auto")
    assert fallback.runtime == "pybind"
    assert "falling back to executorch's Python extension" in caplog.text
    with pytest.raises(ModelError, match="not one of auto, native, pybind"):
        PteClassifier(shipped_model, runtime="tflite")


@pytest.mark.fast
def test_build_reports_missing_compiler_and_compile_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-compiler"))
    with pytest.raises(NativeBuildError, match="no C\\+\\+ compiler found"):
        build_library(tmp_path / "out")
    failing = tmp_path / "failing-cxx"
    failing.write_text("#!/bin/sh\necho 'et_runner.cpp:1:1: error: simulated failure' >&2\nexit 1\n")
    failing.chmod(0o755)
    monkeypatch.setenv("CXX", str(failing))
    with pytest.raises(NativeBuildError, match="simulated failure .*build.log"):
        build_library(tmp_path / "out")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["build.log"]  # nothing half-built


def test_a_read_only_build_folder_is_a_build_error_not_a_crash(monkeypatch, shipped_model, caplog):
    """Under ProtectSystem=strict the package folder is read-only: `runtime: auto` must fall
    back with a warning, never die of an OSError."""
    read_only = Path("/proc/edge-fer-build")  # not writable, even for root
    with pytest.raises(NativeBuildError, match="cannot create /proc/edge-fer-build"):
        build_library(read_only)
    import edge_fer.native.build as build_module

    monkeypatch.setattr(build_module, "DEFAULT_BUILD_DIR", read_only)
    fallback = PteClassifier(shipped_model, runtime="auto")
    assert fallback.runtime == "pybind" and "falling back" in caplog.text


def test_build_command_line_builds_and_prunes_stale_builds(tmp_path):
    stale = tmp_path / "libet_runner-0.0-x86_64-000000000000.so"
    stale.write_bytes(b"old")
    done = subprocess.run(
        [str(BIN / "edge-fer-build-runtime"), "--build-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    built = Path(done.stdout.strip())
    assert built.parent == tmp_path and built.is_file() and not stale.exists()
    bad = subprocess.run(
        [str(BIN / "edge-fer-build-runtime"), "--force", "--build-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "CXX": "/nonexistent/c++"},
    )
    assert bad.returncode == 1
    assert bad.stderr.strip().count("\n") == 0 and "no C++ compiler found" in bad.stderr
    assert built.is_file()  # a failed rebuild leaves the working one in place


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120, cwd=ROOT
    )


def test_thread_pool_is_shared_so_a_second_thread_count_is_refused_while_one_is_open(library, shipped_model):
    done = run_python(f"""
        import numpy as np
        from edge_fer.native import EtRunner, RunnerError
        first = EtRunner({str(library)!r}, {str(shipped_model)!r}, threads=1)
        try:
            EtRunner({str(library)!r}, {str(shipped_model)!r}, threads=2)
        except RunnerError as exc:
            print("refused:", exc)
        first.close()
        second = EtRunner({str(library)!r}, {str(shipped_model)!r}, threads=2)
        print("ran", second.run(np.zeros((4, 1, 48, 48), np.float32)).shape)
    """)
    assert done.returncode == 0, done.stderr
    assert "refused:" in done.stdout and "thread pool is shared" in done.stdout
    assert "ran (4, 7)" in done.stdout


def test_daemon_never_imports_torch_with_the_native_runtime(tmp_path, shipped_model):
    import cv2

    video = tmp_path / "frames.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 30, (320, 240))
    for i in range(10):
        writer.write(np.full((240, 320, 3), 20 * i, np.uint8))
    writer.release()
    report = tmp_path / "report.json"
    done = run_python(f"""
        import sys
        from edge_fer.apps import daemon as cli
        code = cli.main(["--source", "file:{video}", "--display", "none",
                         "--max-frames", "5", "--runtime", "native", "--stats-path",
                         "{tmp_path / "stats.json"}", "--report-json", "{report}"])
        print("torch imported:", "torch" in sys.modules)
        sys.exit(code)
    """)
    assert done.returncode == 0, done.stderr
    assert "torch imported: False" in done.stdout
    assert json.loads(report.read_text())["frames"] == 5


def test_runtime_logs_errors_but_not_its_info_chatter(library, shipped_model):
    done = run_python(f"""
        from edge_fer.native import EtRunner, RunnerError
        EtRunner({str(library)!r}, {str(shipped_model)!r})
        try:
            EtRunner({str(library)!r}, {str(ROOT / "README.md")!r})
        except RunnerError as exc:
            print("refused:", exc)
    """)
    assert done.returncode == 0 and "refused:" in done.stdout
    assert "cpuinfo" not in done.stderr and "Resetting threadpool" not in done.stderr
    assert "executorch E program.cpp" in done.stderr  # why the program was refused

"""Every training stage for real, in --quick mode on a small slice of FER2013, then the
exported program against its float model and tools/evaluate.py against its own report."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from testkit.programs import train

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


# The smallest slice that still has faces of every class: see conftest.py's quick_run.
TINY = ("--quick", "--subset", "0.01")


def test_all_stages_write_their_outputs(quick_run):
    for name in (
        "config.json",
        "teacher.pt",
        "student.pt",
        "pruned.pt",
        "int8.pt2",
        "edge_fer_student.pte",
        "edge_fer_student.json",
        "report.md",
        "training_curves.png",
        "confusion_int8.png",
        "quantize.json",
        "teacher_state.pt",
        "distill_state.pt",
        "prune_state.pt",
        "qat_state.pt",
    ):
        assert (quick_run / name).is_file(), name
    quantized = json.loads((quick_run / "quantize.json").read_text())
    assert quantized["qat"]["qat_epochs"] == 1 and 0 <= quantized["ptq"]["int8_float_agreement"] <= 1
    assert quantized["float_modules"] == ["features.0", "features.1"]  # the --float-blocks default
    for stage in ("teacher", "distill", "prune", "quantize", "export"):
        assert "seconds" in json.loads((quick_run / f"{stage}.done.json").read_text())
    for stage in ("teacher", "distill", "prune"):
        rows = (quick_run / f"{stage}_metrics.jsonl").read_text().splitlines()
        assert rows and 0 <= json.loads(rows[-1])["val_accuracy"] <= 1
    student = torch.load(quick_run / "student.pt", weights_only=False)
    pruned = torch.load(quick_run / "pruned.pt", weights_only=False)
    n = lambda ck: sum(v.numel() for k, v in ck["state_dict"].items() if "running" not in k)  # noqa: E731
    assert n(pruned) < n(student)  # channels were removed, not masked
    meta = json.loads((quick_run / "edge_fer_student.json").read_text())
    assert meta["model_bytes"] == (quick_run / "edge_fer_student.pte").stat().st_size
    assert meta["preprocess"]["input_size"] == 48 and meta["classes"][3] == "happy"
    assert meta["preprocess"]["margin"] == -0.05  # the --crop-margin default reaches the daemon
    assert "max_sharpness" not in meta["preprocess"]  # the blur bridge is gone
    assert set(meta["training_seconds"]) == {"teacher", "distill", "prune"}
    assert 0 <= meta["accuracy"]["pte_float_agreement"] <= 1
    average = json.loads((quick_run / "distill_average.json").read_text())
    assert average["averaged_epochs"] == [1, 1] and 0 <= average["val_accuracy"] <= 1
    average = json.loads((quick_run / "prune_average.json").read_text())  # --finetune-average-last
    assert average["averaged_epochs"] == [1, 1] and 0 <= average["val_accuracy"] <= 1
    prune_settings = json.loads((quick_run / "prune.done.json").read_text())["settings"]
    assert prune_settings["teacher_tta"] and prune_settings["finetune_average_last"] == 1


def test_resume_skips_finished_stages(quick_run, data_dir):
    proc = train(
        *TINY, "--data", str(data_dir), "--runs", str(quick_run.parent), "--name", "t", "--device", "cpu"
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("skipping") == 5


def test_export_runs_on_its_own_and_ships(quick_run, data_dir, tmp_path):
    """The fixture exported the finished run in a fresh process (as when shipping it later),
    reading its saved int8 graph, and shipped it; a run without one gets a one-line error."""
    ship = quick_run.parent / "ship"
    assert sorted(p.name for p in ship.iterdir()) == [
        "edge_fer_student.json", "edge_fer_student.pte",
        "edge_fer_student_confusion.png", "edge_fer_student_curves.png",
    ]  # fmt: skip
    assert (ship / "edge_fer_student.pte").read_bytes() == (quick_run / "edge_fer_student.pte").read_bytes()
    assert json.loads((ship / "edge_fer_student.json").read_text()) == json.loads(
        (quick_run / "edge_fer_student.json").read_text()
    )

    proc = train(*TINY, "--data", str(data_dir), "--device", "cpu", "--stages", "export",
                 "--runs", str(tmp_path), "--name", "empty")  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "run the quantize stage first" in proc.stderr.strip().splitlines()[-1]


def test_too_many_float_blocks_is_a_one_line_error(quick_run, data_dir, tmp_path):
    import shutil

    (tmp_path / "fb").mkdir()
    shutil.copy2(quick_run / "pruned.pt", tmp_path / "fb" / "pruned.pt")
    proc = train(*TINY, "--data", str(data_dir), "--device", "cpu", "--runs", str(tmp_path),
                 "--name", "fb", "--stages", "quantize", "--float-blocks", "99")  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "--float-blocks 99: cannot keep 99 feature blocks float" in proc.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "fb" / "int8.pt2").exists()


def test_student_without_kd_needs_no_teacher(data_dir, tmp_path):
    def distill(name: str, *flags: str) -> subprocess.CompletedProcess:
        return train(*TINY, "--data", str(data_dir), "--runs", str(tmp_path), "--name", name,
                     "--stages", "distill", "--device", "cpu", *flags)  # fmt: skip

    proc = distill("c", "--alpha", "0")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads((tmp_path / "c" / "distill.done.json").read_text())["alpha"] == 0
    proc = distill("d")
    assert proc.returncode == 1 and "no teacher for distillation" in proc.stderr


def test_an_ensemble_teaches_a_warm_started_student(quick_run, data_dir, tmp_path):
    teacher, student = quick_run / "teacher.pt", quick_run / "student.pt"
    proc = train(*TINY, "--data", str(data_dir), "--runs", str(tmp_path), "--name", "e",
                 "--stages", "teacher,distill", "--device", "cpu", "--width", "1.0",
                 "--teachers", f"{teacher},{teacher}", "--init-student", str(student))  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "continuing from" in proc.stdout
    done = json.loads((tmp_path / "e" / "teacher.done.json").read_text())
    assert not (tmp_path / "e" / "teacher.pt").exists()  # evaluated, not trained
    assert [m["path"] for m in done["ensemble"]] == [str(teacher)] * 2
    # Two copies of one net vote like that net.
    assert done["accuracy_tta"] == done["ensemble"][0]["accuracy_tta"]
    assert done["ensemble"][0]["epochs"] == 1 and done["training_seconds"] > 0
    # The warm start keeps the checkpoint's architecture, not --width.
    before = torch.load(student, weights_only=False)["arch"]
    after = torch.load(tmp_path / "e" / "student.pt", weights_only=False)["arch"]
    assert after == before
    distilled = json.loads((tmp_path / "e" / "distill.done.json").read_text())
    assert distilled["init_student"] == str(student)
    from edge_fer.training.report import read_metrics

    curves = read_metrics(tmp_path / "e")  # the members' curves sit in their own runs
    assert set(curves) == {"teacher t", "distill"} and len(curves["teacher t"]) == 1


def test_a_soup_averages_the_students_before_mixing_back(quick_run, data_dir, tmp_path):
    from edge_fer.emotions.preprocess import PreprocessSpec
    from edge_fer.nets.checkpoint import load_model, save_model

    student = quick_run / "student.pt"
    model, ckpt = load_model(student)
    with torch.no_grad():  # a second fine-tune of the same net: the same weights, moved
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.add_(0.01 * torch.randn_like(tensor))
    other = tmp_path / "other.pt"
    save_model(other, model, PreprocessSpec.from_dict(ckpt["preprocess"]), {"val_accuracy": 0.0})
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "student.pt").write_bytes(student.read_bytes())
    proc = train(*TINY, "--data", str(data_dir), "--runs", str(tmp_path), "--name", "s", "--stages", "prune",
                 "--device", "cpu", "--keep-ratio", "1", "--init-student", str(student), "--soup", str(other),
                 "--wise-alpha", "0.5")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "soup of 2 students" in proc.stdout
    # 0.5 * init + 0.5 * mean(student, other), with init the student itself: 0.75 / 0.25.
    start, moved, kept = _weights(student), _weights(other), _weights(tmp_path / "s" / "pruned.pt")
    for name, value in kept.items():
        if value.is_floating_point():
            assert torch.allclose(value, 0.75 * start[name] + 0.25 * moved[name], atol=1e-6), name
    done = json.loads((tmp_path / "s" / "prune.done.json").read_text())
    assert done["soup"] == [str(other)] and done["wise_alpha"] == 0.5
    # A soup ingredient that is not there is named before any stage runs.
    proc = train(*TINY, "--data", str(data_dir), "--runs", str(tmp_path), "--name", "s2", "--stages", "prune",
                 "--keep-ratio", "1", "--soup", str(tmp_path / "missing.pt"))  # fmt: skip
    assert proc.returncode != 0 and "missing.pt does not exist" in proc.stderr
    assert "Traceback" not in proc.stderr


ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("case", "message", "code"),
    [
        ("corrupt", "is not a checkpoint edge-fer can read", 2),
        ("other net", "the students differ in architecture", 1),
        ("twice", "--soup names one student twice", 2),
        ("own student", "--soup lists this run's own student", 2),
        ("a folder", "is not a regular file", 2),
        ("wise without init", "set --init-student", 2),
        ("wise with pruning", "--wise-alpha mixes back an unpruned fine-tune; it needs --keep-ratio 1", 2),
    ],
)
def test_a_bad_soup_is_refused_before_any_stage_runs(case, message, code, data_dir, tmp_path):
    """Soup ingredients are checked when the run starts, not when it reaches prune hours later."""
    junk, v10t = tmp_path / "junk.pt", str(ROOT / "artifacts" / "v10t" / "pruned.pt")
    junk.write_bytes(b"\x80junk")
    soup = {
        "corrupt": ["--soup", str(junk), "--init-student", v10t],
        "other net": ["--soup", str(ROOT / "teachers" / "t4" / "teacher.pt"), "--init-student", v10t],
        "twice": ["--soup", f"{v10t},{v10t}"],
        "own student": ["--soup", str(tmp_path / "b" / "student.pt")],
        "a folder": ["--soup", str(tmp_path), "--init-student", v10t],
        "wise without init": ["--wise-alpha", "0.5"],
        "wise with pruning": ["--wise-alpha", "0.5", "--keep-ratio", "0.9", "--init-student", v10t],
    }[case]
    keep = [] if case == "wise with pruning" else ["--keep-ratio", "1"]
    proc = train(*TINY, "--data", str(data_dir), "--runs", str(tmp_path), "--name", "b", *keep, *soup)
    assert proc.returncode == code and message in proc.stderr, proc.stderr[-1000:]
    # One error line (after argparse's usage block for a setting), no stage started.
    assert message in proc.stderr.strip().splitlines()[-1] and "Traceback" not in proc.stderr
    assert "running on" not in proc.stdout


def _weights(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)["state_dict"]


def test_a_stage_killed_mid_way_resumes_to_the_same_weights(data_dir, tmp_path):
    """SIGKILL the teacher stage after its first epoch checkpoint; the rerun continues from
    there and ends with exactly the weights of a run that was never stopped."""
    import signal
    import time

    args = [
        "--quick",
        "--data",
        str(data_dir),
        "--stages",
        "teacher",
        "--device",
        "cpu",
        "--threads",
        "1",
        "--teacher-epochs",
        "3",
        "--subset",
        "0.01",
    ]
    straight = train(*args, "--runs", str(tmp_path), "--name", "straight")
    assert straight.returncode == 0, straight.stderr[-2000:]

    state = tmp_path / "killed" / "teacher_state.pt"
    proc = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "tools" / "train_mobilenet.py"),
            *args,
            "--runs",
            str(tmp_path),
            "--name",
            "killed",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    while not state.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    epoch = torch.load(state, map_location="cpu", weights_only=False)["epoch"]
    assert epoch < 3 and not (tmp_path / "killed" / "teacher.done.json").exists()

    resumed = train(*args, "--runs", str(tmp_path), "--name", "killed")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resuming after epoch {epoch}/3" in resumed.stdout
    a, b = _weights(tmp_path / "straight" / "teacher.pt"), _weights(tmp_path / "killed" / "teacher.pt")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    rows = (tmp_path / "killed" / "teacher_metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["epoch"] for r in rows] == [1, 2, 3]


def test_pte_matches_float_and_evaluate_matches_its_matrix(quick_run, public_faces, tmp_path):
    from edge_fer.emotions.classifier import PteClassifier, TorchClassifier

    pte = PteClassifier(quick_run / "edge_fer_student.pte")
    flt = TorchClassifier(quick_run / "pruned.pt")
    agree = (
        pte.classify_batch(public_faces.images).argmax(1) == flt.classify_batch(public_faces.images).argmax(1)
    ).mean()
    assert agree >= 0.9
    folder = tmp_path / "faces"
    import cv2

    for i, (img, label) in enumerate(zip(public_faces.images[:70], public_faces.labels[:70], strict=True)):
        d = folder / ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"][label]
        d.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(d / f"PublicTest_{i}.png"), img)
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "tools/evaluate.py"),
            "--data",
            str(folder),
            "--model",
            str(quick_run / "edge_fer_student.pte"),
            "--json",
            "--plot",
            str(tmp_path / "cm.png"),
            "--out",
            str(tmp_path / "eval"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.splitlines()[-1])
    cm = np.array(report["confusion_matrix"])
    assert report["n"] == cm.sum() == 70
    assert report["accuracy"] == pytest.approx(np.trace(cm) / cm.sum())
    for i, name in enumerate(["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]):
        assert report["per_class"][name]["support"] == cm[i].sum()
    assert {"accuracy", "macro_f1", "n", "per_class", "model_bytes"} <= set(report)
    assert (tmp_path / "cm.png").stat().st_size > 1000
    # The daemon's classifier gives the same predictions as evaluate.py on the same images.
    from edge_fer.data.fer2013 import load_image_folder

    faces = load_image_folder(folder, pte.spec)
    preds = pte.classify_batch(faces.images).argmax(1)
    from edge_fer.evaluation.metrics import confusion_matrix

    assert confusion_matrix(faces.labels, preds).tolist() == report["confusion_matrix"]


def _train_cli():
    """The edge-fer-train program (edge_fer.apps.train), to call its argument checks in this process."""
    from edge_fer.apps import train

    return train


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--stages", "teach"], "unknown stage"),
        (["--keep-ratio", "1.5"], "--keep-ratio"),
        (["--crop-margin", "-0.5"], "--crop-margin must be in [-0.25, 1]"),
        (["--qat-lr", "0"], "--qat-lr must be positive"),
        (["--qat-epochs", "-1"], "--qat-epochs must be 0 or more"),
        (["--float-blocks", "-2"], "--float-blocks must be 0 or more"),
        (["--kd-views", "12"], "--kd-views was removed"),
        (["--kd-mixup", "-1"], "--kd-mixup must be in [0, 10]"),
        (
            ["--average-last", "40", "--distill-epochs", "30"],
            "--average-last must be between 0 and --distill-epochs",
        ),
        (
            ["--finetune-average-last", "7", "--finetune-epochs", "5"],
            "--finetune-average-last must be between 0 and",
        ),
    ],
)
def test_training_cli_rejects_bad_flags(flags, message, capsys):
    """Each bad flag is exit 2 with one line naming it (argparse's usage line above it)."""
    with pytest.raises(SystemExit) as stop:
        _train_cli().parse_args(flags)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert message in err.strip().splitlines()[-1] and "Traceback" not in err


def test_training_cli_rejects_bad_input(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        _train_cli().parse_args(["--teachers", f"{tmp_path / 'a.pt'},{tmp_path / 'b.pt'}"])
    assert stop.value.code == 2 and "a.pt does not exist" in capsys.readouterr().err
    # a missing dataset is found by the stage itself, in the real command
    proc = train(
        "--data", str(tmp_path / "missing"), "--runs", str(tmp_path), "--stages", "teacher", "--device", "cpu"
    )
    assert proc.returncode == 2 and "missing" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1  # one clear line, no traceback

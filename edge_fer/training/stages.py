"""The training pipeline as stages over one run folder (runs/<name>/).

  teacher   FaceVGG (dense 3x3 convs, bf16) on FER2013 train        -> teacher.pt
  distill   MobileNetV2 student (total stride 8), KD from the live
            teacher on the same augmented batch                     -> student.pt
  prune     structured channel pruning + KD fine-tune               -> pruned.pt
  quantize  int8 pt2e (XNNPACK quantizer), calibrated on real faces -> int8.pt2
  export    ExecuTorch XNNPACK program + metadata, report           -> edge_fer_student.pte/.json

A stage is done only when it wrote `<stage>.done.json`; a stage that stopped part-way
resumes from its last epoch checkpoint (`<stage>_state.pt`).
"""

from __future__ import annotations

import copy
import json
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from edge_fer.contracts.model_card import ModelCard
from edge_fer.data.fer2013 import FaceSet, load_split, stratified_subset
from edge_fer.emotions.classifier import PteClassifier, write_metadata
from edge_fer.emotions.labels import EMOTIONS
from edge_fer.emotions.preprocess import PreprocessSpec, normalize
from edge_fer.evaluation.metrics import confusion_matrix, plot_confusion, summarize
from edge_fer.nets import FaceVGG
from edge_fer.nets.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_model,
    model_kind,
    save_atomic,
    save_model,
    takes_input_of,
)
from edge_fer.nets.ensemble import load_ensemble
from edge_fer.nets.macs import count_macs
from edge_fer.nets.students import is_student, student_class
from edge_fer.training.augment import augment_batch
from edge_fer.training.loop import (
    FitConfig,
    TrainingError,
    class_weights,
    evaluate_model,
    fit,
    kd_loss,
    predict_logits,
)
from edge_fer.training.progress import Steps
from edge_fer.training.prune import describe, prune_student
from edge_fer.training.quantize import (
    convert_qat,
    export_graph,
    export_pte,
    float_prefix,
    load_int8_graph,
    prepare_qat,
    quantize_int8,
)
from edge_fer.training.report import plot_curves, read_rows, write_record, write_report
from edge_fer.training.settings import STAGES, TrainSettings, portable, portable_record

__all__ = ["STAGES", "Run", "TrainSettings", "TrainingError", "run_stages"]

# The exported program takes a dynamic batch (one call per frame). torch.export's upper bound
# is exclusive in ExecuTorch's memory plan: a bound of 16 plans for 15 faces, which the
# metadata records as the real limit.
MAX_FACES = 16


class Run:
    """A run folder: settings, data (loaded once), per-stage outputs and done markers."""

    def __init__(self, settings: TrainSettings) -> None:
        self.settings = settings
        self.dir = settings.runs / settings.name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.device = torch.device(settings.device)
        # Faces come cropped in training; the margin is for the daemon's detector boxes.
        self.spec = PreprocessSpec(input_size=settings.input_size, margin=settings.crop_margin)
        self._data: tuple[FaceSet, FaceSet] | None = None
        self._recorded = False

    def record_invocation(self) -> None:
        """Append these settings to invocations.jsonl (once, before the first stage runs): a
        later `--stages export` must not rewrite how the earlier stages were trained (each
        done marker records its own settings too). A rerun that finds everything done writes
        nothing, so a tracked run folder (teachers/) stays as it is."""
        if self._recorded:
            return
        with (self.dir / "invocations.jsonl").open("a") as f:
            f.write(json.dumps(self.settings.to_json()) + "\n")
        if not (self.dir / "config.json").exists():
            write_record(self.dir / "config.json", json.dumps(self.settings.to_json(), indent=2))
        self._recorded = True

    def path(self, name: str) -> Path:
        return self.dir / name

    def is_done(self, stage: str) -> bool:
        return self.path(f"{stage}.done.json").is_file()

    def mark_done(self, stage: str, summary: dict) -> None:
        write_record(self.path(f"{stage}.done.json"), json.dumps(summary, indent=2) + "\n")

    def data(self) -> tuple[FaceSet, FaceSet]:
        """(train, PublicTest validation), subset for --quick/--subset runs."""
        if self._data is None:
            s = self.settings
            t0 = time.perf_counter()
            train = load_split(s.data, "train", self.spec)
            val = load_split(s.data, "public", self.spec)
            if s.subset < 1:
                train = train.subset(stratified_subset(train.labels, s.subset, 0))
                val = val.subset(stratified_subset(val.labels, max(s.subset * 4, 0.05), 0))
            self._data = train, val
            print(
                f"data: {len(train)} train / {len(val)} validation (PublicTest) faces "
                f"loaded in {time.perf_counter() - t0:.1f}s"
            )
        return self._data


def _saver(run: Run, name: str, extra: dict | None = None) -> Callable[[torch.nn.Module, dict], None]:
    def save(model: torch.nn.Module, record: dict) -> None:
        save_model(run.path(name), model, run.spec, {**record, **(extra or {})})

    return save


def stage_teacher(run: Run) -> dict:
    """Train the FaceVGG teacher, or, with --teachers, evaluate the given ensemble."""

    s = run.settings
    if s.teachers:
        return _evaluate_ensemble(run)
    train, val = run.data()
    model = FaceVGG(widths=s.teacher_widths, input_size=s.input_size)
    # No KD, mixup or degradations for the teacher: only the optimisation settings carry over.
    cfg = FitConfig(
        epochs=s.teacher_epochs,
        lr=s.teacher_lr,
        batch_size=s.batch_size,
        weight_decay=s.weight_decay * 10,
        pct_start=s.pct_start,
        eval_tta=True,
        bf16=True,
    )
    save = _saver(run, "teacher.pt")
    best = fit(model, train, val, run.spec, cfg, run.device, run.dir, "teacher", save, seed=s.seed)
    teacher, _ = load_model(run.path("teacher.pt"))
    result = evaluate_model(teacher.to(run.device), val, run.spec, tta=True)
    print(
        f"teacher: best epoch {best['epoch']}, PublicTest accuracy {result['accuracy']:.4f} "
        f"(hflip TTA), macro-F1 {result['macro_f1']:.4f}"
    )
    return {
        "best_epoch": best["epoch"],
        "accuracy_tta": result["accuracy"],
        "macro_f1_tta": result["macro_f1"],
    }


def _member_training(path: Path) -> dict:
    """Epochs and seconds a teacher checkpoint took, from the metrics file beside it."""

    rows = read_rows(path.with_name(f"{path.stem}_metrics.jsonl"))
    return {"epochs": len(rows), "seconds": round(sum(r["seconds"] for r in rows), 1)} if rows else {}


def _evaluate_ensemble(run: Run) -> dict:

    _, val = run.data()
    ensemble, ckpts = load_ensemble(run.settings.teachers, run.spec)
    faces = torch.from_numpy(val.images)
    members, logits = [], []
    for path, member, ckpt in zip(run.settings.teachers, ensemble.members, ckpts, strict=True):
        member_logits = predict_logits(member.to(run.device), faces, run.spec, tta=True)
        result = summarize(confusion_matrix(val.labels, member_logits.argmax(1).numpy()))
        logits.append(member_logits)
        members.append({"path": portable(path), "kind": ckpt["kind"], "accuracy_tta": result["accuracy"],
                        "macro_f1_tta": result["macro_f1"], **_member_training(Path(path))})  # fmt: skip
        print(f"teacher {path}: PublicTest accuracy {result['accuracy']:.4f} (hflip TTA)")
    mean = torch.stack(logits).mean(0)
    result = summarize(confusion_matrix(val.labels, mean.argmax(1).numpy()))
    print(
        f"teacher ensemble of {len(members)}: PublicTest accuracy {result['accuracy']:.4f} "
        f"(hflip TTA), macro-F1 {result['macro_f1']:.4f}"
    )
    return {
        "ensemble": members,
        "accuracy_tta": result["accuracy"],
        "macro_f1_tta": result["macro_f1"],
        "training_seconds": sum(m.get("seconds", 0) for m in members),
    }


def _teacher(run: Run) -> torch.nn.Module:
    if run.settings.teachers:
        return load_ensemble(run.settings.teachers, run.spec)[0].to(run.device)
    if not run.path("teacher.pt").is_file():
        raise TrainingError(
            f"no teacher for distillation at {run.path('teacher.pt')}; run the "
            "teacher stage first, or pass --alpha 0 to train without one"
        )
    teacher, _ = load_model(run.path("teacher.pt"))
    return teacher.to(run.device)


def distill_into(
    run: Run,
    model: torch.nn.Module,
    stage: str,
    out_name: str,
    epochs: int,
    lr: float,
    extra: dict | None = None,
) -> dict:
    """Train `model` with KD from the live teacher (plain CE when alpha is 0)."""
    s = run.settings
    train, val = run.data()
    cfg = distill_config(s, stage, epochs, lr)
    teacher = _teacher(run) if s.alpha > 0 else None
    save = _saver(run, out_name, extra)
    return fit(
        model, train, val, run.spec, cfg, run.device, run.dir, stage, save, teacher, seed=s.seed,
        average_last=s.average_last if stage == "distill" else s.finetune_average_last,
    )  # fmt: skip


def distill_config(s: TrainSettings, stage: str, epochs: int, lr: float) -> FitConfig:
    """How distill and the fine-tune after pruning train (what their state files record)."""
    # bf16 slows depthwise convs on this CPU, so fp32; the fine-tune warms up for half as long.
    pct_start = s.pct_start if stage == "distill" else s.pct_start / 2
    return FitConfig.from_settings(s, epochs, lr, bf16=False, pct_start=pct_start)


def stage_distill(run: Run) -> dict:

    s = run.settings
    if s.init_student is not None:
        model, ckpt = load_model(s.init_student)
        if not is_student(model) or not takes_input_of(ckpt, run.spec):
            raise TrainingError(
                f"--init-student {s.init_student} is not a student trained at "
                f"--input-size {s.input_size}; pass a student.pt from an earlier run"
            )
        print(f"student: continuing from {s.init_student} ({ckpt['metrics'].get('val_accuracy', 0):.4f})")
    else:
        model = student_class(s.student).from_settings(s)
    best = distill_into(run, model, "distill", "student.pt", s.distill_epochs, s.student_lr)
    print(f"student: best epoch {best['epoch']}, PublicTest accuracy {best['val_accuracy']:.4f}")
    return {
        "best_epoch": best["epoch"],
        "accuracy": best["val_accuracy"],
        "macro_f1": best["val_macro_f1"],
        "alpha": s.alpha,
        "temperature": s.temperature,
        "init_student": portable(s.init_student) if s.init_student else None,
    }


def _same_architecture(models: list[torch.nn.Module], what: str) -> list[dict]:
    states = [m.state_dict() for m in models]
    first = states[0]
    for other in states[1:]:
        if other.keys() != first.keys() or any(first[k].shape != v.shape for k, v in other.items()):
            raise TrainingError(
                f"{what}: the students differ in architecture (not all one architecture); pass "
                "fine-tunes of one start"
            )
    return states


def interpolate_weights(start: torch.nn.Module, end: torch.nn.Module, alpha: float) -> torch.nn.Module:
    """A copy of `end` whose floating tensors are (1-alpha)*start + alpha*end (same architecture;
    batch-norm statistics interpolated with the weights)."""
    a, b = _same_architecture([start, end], "wise_alpha")
    mixed = copy.deepcopy(end)
    mixed.load_state_dict(
        {k: (1 - alpha) * a[k] + alpha * v if v.is_floating_point() else v for k, v in b.items()}
    )
    return mixed.eval()


def average_weights(models: list[torch.nn.Module]) -> torch.nn.Module:
    """A uniform model soup: a copy of the first model whose floating tensors are the mean of
    all the models' (same architecture, fine-tuned from one start, so one basin)."""
    states = _same_architecture(models, "soup")
    soup = copy.deepcopy(models[0])
    soup.load_state_dict({
        k: torch.stack([st[k] for st in states]).mean(0) if v.is_floating_point() else v
        for k, v in states[0].items()
    })  # fmt: skip
    return soup.eval()


def load_fine_tunes(
    paths: list[Path], spec: PreprocessSpec, start: torch.nn.Module | None, what: str
) -> list[torch.nn.Module]:
    """The students at `paths` (CheckpointError if one does not load), each once, each taking
    the inputs `spec` makes and, with `start`, of its architecture (TrainingError naming the
    `what` option if not): the ingredients of a soup or of a weight interpolation."""
    if len({Path(p).resolve() for p in paths}) < len(paths):
        raise TrainingError(f"{what} names one student twice; a soup takes each fine-tune once")
    students = []
    for path in paths:
        if not Path(path).exists():
            raise TrainingError(
                f"{what}: {portable(path)} does not exist; run the recipe that trains it first"
            )
        student, ckpt = load_model(path)
        if not takes_input_of(ckpt, spec):
            raise TrainingError(
                f"{what}: {portable(path)} was trained on other inputs (preprocess "
                f"{ckpt['preprocess']}) than {spec.to_dict()}; pass fine-tunes of one start"
            )
        students.append(student)
    _same_architecture([*([start] if start is not None else []), *students], what)
    return students


def check_soup(run: Run) -> None:
    """The --soup students load, take this run's inputs and have init_student's architecture."""
    s = run.settings
    start = load_model(s.init_student)[0] if s.init_student is not None else None
    load_fine_tunes(list(s.soup), run.spec, start, "soup")


def _soup_and_interpolate(run: Run, val: FaceSet) -> dict:
    """This run's student averaged with the --soup students, then mixed back towards
    init_student by `wise_alpha` (WiSE-FT); either step may be off."""
    s = run.settings
    if s.wise_alpha < 1 and s.init_student is None:
        raise TrainingError("wise_alpha < 1 mixes the student back towards init_student; set init_student")
    students = [load_model(run.path("student.pt"))[0]]
    for path in s.soup:
        if not Path(path).is_file():
            raise TrainingError(f"soup: {portable(path)} does not exist; run the recipe that trains it first")
        students.append(load_model(path)[0])
    model = average_weights(students) if len(students) > 1 else students[0]
    if len(students) > 1:
        soup_accuracy = evaluate_model(model, val, run.spec)["accuracy"]
        print(f"prune: no cut; soup of {len(students)} students: {soup_accuracy:.4f}")
    if s.wise_alpha < 1:
        model = interpolate_weights(load_model(s.init_student)[0], model, s.wise_alpha)
    result = evaluate_model(model, val, run.spec)
    save_model(run.path("pruned.pt"), model, run.spec, {"val_accuracy": result["accuracy"],
               "val_macro_f1": result["macro_f1"], "wise_alpha": s.wise_alpha,
               "soup": [portable(p) for p in s.soup]})  # fmt: skip
    print(f"prune: no cut; kept student (wise_alpha {s.wise_alpha:g}): {result['accuracy']:.4f}")
    params = sum(p.numel() for p in model.parameters())
    return {"params": [params, params], "kept_unpruned": True, "wise_alpha": s.wise_alpha,
            "soup": [portable(p) for p in s.soup], "accuracy": result["accuracy"]}  # fmt: skip


def stage_prune(run: Run) -> dict:
    """Cut the student's weakest hidden channels and fine-tune it (--keep-ratio < 1), or keep
    it whole, averaged with --soup and mixed back by --wise-alpha when those are set."""
    s = run.settings
    _, val = run.data()
    if s.keep_ratio >= 1.0:  # nothing to cut: the student goes on as it is, no fine-tune
        if s.wise_alpha < 1.0 or s.soup:
            return _soup_and_interpolate(run, val)
        shutil.copy2(run.path("student.pt"), run.path("pruned.pt"))
        student, ckpt = load_model(run.path("pruned.pt"))
        print("prune: --keep-ratio 1, student.pt kept as pruned.pt unchanged")
        return {"params": [sum(p.numel() for p in student.parameters())] * 2, "kept_unpruned": True,
                "accuracy": ckpt["metrics"].get("val_accuracy")}  # fmt: skip
    student, _ = load_model(run.path("student.pt"))
    pruned = prune_student(student, s.keep_ratio)
    before = evaluate_model(pruned.to(run.device), val, run.spec)["accuracy"]
    macs = (count_macs(student.cpu(), s.input_size), count_macs(pruned.cpu(), s.input_size))
    params = (sum(p.numel() for p in student.parameters()), sum(p.numel() for p in pruned.parameters()))
    print(
        f"pruned: params {params[0]} -> {params[1]}, MMACs {macs[0] / 1e6:.2f} -> "
        f"{macs[1] / 1e6:.2f}, hidden widths {describe(pruned)}; accuracy before "
        f"fine-tune {before:.4f}"
    )
    best = distill_into(
        run,
        pruned,
        "prune",
        "pruned.pt",
        s.finetune_epochs,
        s.student_lr * 0.2,
        extra={"accuracy_before_finetune": before},
    )
    print(f"pruned student: best epoch {best['epoch']}, accuracy {best['val_accuracy']:.4f}")
    return {
        "params": list(params),
        "macs": list(macs),
        "accuracy_before_finetune": before,
        "accuracy": best["val_accuracy"],
        "best_epoch": best["epoch"],
    }


def _predict(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([model(x[i : i + 256]) for i in range(0, len(x), 256)]).argmax(1)


def quantization_report(run: Run, float_model: torch.nn.Module, int8: torch.nn.Module) -> dict:
    """PublicTest accuracy of both and how often int8 gives the float model's label."""

    _, val = run.data()
    x = torch.from_numpy(normalize(val.images, run.spec))
    q_pred, f_pred = _predict(int8, x), _predict(float_model.eval(), x)
    q = summarize(confusion_matrix(val.labels, q_pred.numpy()))
    f = summarize(confusion_matrix(val.labels, f_pred.numpy()))
    return {"float_accuracy": f["accuracy"], "int8_accuracy": q["accuracy"],
            "int8_macro_f1": q["macro_f1"],
            "int8_float_agreement": float((q_pred == f_pred).float().mean())}  # fmt: skip


def qat_finetune(run: Run, float_model: torch.nn.Module, calibration: torch.Tensor) -> torch.nn.Module:
    """Quantization-aware fine-tuning that distils the float model into its own int8 version
    (KL to the float model's outputs on augmented faces, plus a little CE), so int8 keeps the
    float model's answers. Checkpoints each epoch in qat_state.pt and resumes from it.

    Opt-in (--qat-epochs N): measured, it did not help here. On run v2, 2 epochs took int8/float
    agreement from 97.7% (PTQ) to 97.0%; on v4's pruned student, 97.41% by PTQ, frozen-BN QAT
    left 97.2% (edge_fer/models/README.md). Keeping the stem and first block float
    (--float-blocks 2) is what met the 98% target instead. Kept for students whose PTQ falls
    short, and tested by the quick run."""

    s = run.settings
    train, _ = run.data()
    teacher = copy.deepcopy(float_model).eval()
    prepared = prepare_qat(copy.deepcopy(float_model), calibration, float_prefix(float_model, s.float_blocks))
    optimizer = torch.optim.SGD(prepared.parameters(), lr=s.qat_lr, momentum=0.9)
    steps = max(1, len(train) // s.batch_size)
    state_path, start = run.path("qat_state.pt"), 0
    if state_path.exists():
        state = torch.load(state_path, map_location="cpu", weights_only=False)
        prepared.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"])
        start = state["epoch"]
        print(f"[quantize] resuming QAT after epoch {start}/{s.qat_epochs}")
    faces = torch.from_numpy(train.images)
    labels = torch.from_numpy(train.labels)
    weights = class_weights(train.class_counts(), 0.25)
    total = s.qat_epochs * steps
    for epoch in range(start, s.qat_epochs):
        perm = torch.randperm(len(train))
        t0 = time.perf_counter()
        for i in range(steps):
            step = epoch * steps + i
            for group in optimizer.param_groups:  # cosine to zero over the QAT epochs
                group["lr"] = s.qat_lr * 0.5 * (1 + math.cos(math.pi * step / total))
            idx = perm[i * s.batch_size : (i + 1) * s.batch_size]
            x = augment_batch(faces[idx].float().unsqueeze(1) / 255.0)
            x = (x - run.spec.mean) / run.spec.std
            with torch.no_grad():
                target = teacher(x)
            logits = prepared(x)
            loss = 0.9 * kd_loss(logits, target, 1.0) + 0.1 * F.cross_entropy(
                logits, labels[idx], weight=weights
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        state = {"epoch": epoch + 1, "model": prepared.state_dict(),
                 "optimizer": optimizer.state_dict(), "rng": torch.get_rng_state()}  # fmt: skip
        save_atomic(state, state_path)
        print(f"[quantize] QAT epoch {epoch + 1}/{s.qat_epochs}: loss {float(loss):.4f}, "
              f"{time.perf_counter() - t0:.0f}s")  # fmt: skip
    return convert_qat(prepared)


def stage_quantize(run: Run) -> dict:
    """int8 by post-training quantization; with --qat-epochs N > 0 (opt-in, see qat_finetune),
    by QAT as well when PTQ costs more than 0.5 point or int8 agrees with float on fewer than
    98% of faces (or always, with --qat-always). The better of the two by agreement is kept as
    int8.pt2. The first --float-blocks layers stay float in both."""

    s = run.settings
    train, _ = run.data()
    model, _ = load_model(run.path("pruned.pt"))
    try:
        float_modules = float_prefix(model, s.float_blocks)
    except ValueError as exc:
        raise CheckpointError(f"--float-blocks {s.float_blocks}: {exc}; pass a smaller number") from None
    calib_idx = stratified_subset(train.labels, min(1.0, s.calibration / len(train)), s.seed)
    calibration = torch.from_numpy(normalize(train.images[calib_idx], run.spec))
    t0 = time.perf_counter()
    steps = Steps("quantize", 3)
    steps(f"int8 calibrated on {len(calib_idx)} training faces")
    ptq = quantize_int8(model, calibration, float_modules=float_modules)
    steps("int8 against float on PublicTest")
    stats = {"method": "ptq", "calibration_faces": len(calib_idx), "float_modules": list(float_modules),
             **quantization_report(run, model, ptq)}  # fmt: skip
    print(f"int8 (PTQ): accuracy {stats['int8_accuracy']:.4f} (float {stats['float_accuracy']:.4f}), "
          f"agreement with float {stats['int8_float_agreement']:.4f}")  # fmt: skip
    chosen = ptq
    missed = stats["float_accuracy"] - stats["int8_accuracy"] > 0.005 or stats["int8_float_agreement"] < 0.98
    if s.qat_epochs > 0 and (missed or s.qat_always):
        print(f"[quantize] PTQ {'missed the targets' if missed else 'done'}; {s.qat_epochs} QAT epoch(s)")
        qat = qat_finetune(run, model, calibration)
        qat_stats = {"method": "qat", "qat_epochs": s.qat_epochs, **quantization_report(run, model, qat)}
        print(f"int8 (QAT): accuracy {qat_stats['int8_accuracy']:.4f}, agreement with float "
              f"{qat_stats['int8_float_agreement']:.4f}")  # fmt: skip
        stats["ptq"] = dict(stats)
        if qat_stats["int8_float_agreement"] >= stats["int8_float_agreement"]:
            chosen = qat
            stats.update(qat_stats)
        stats["qat"] = qat_stats
    steps("saving the int8 graph")
    torch.export.save(export_graph(chosen, calibration[:2], MAX_FACES), run.path("int8.pt2"))
    steps.close()
    stats["seconds"] = time.perf_counter() - t0
    write_record(run.path("quantize.json"), json.dumps(stats, indent=2))
    return stats


@dataclass
class ProgramScores:
    """How the lowered program does on PublicTest."""

    summary: dict  # accuracy, macro-F1, confusion matrix... (metrics.summarize)
    float_agreement: float  # how often it gives the float model's label
    batch: int  # the most faces one call takes


def lower(run: Run, quantized: torch.nn.Module) -> tuple[Path, int]:
    """The int8 graph -> edge_fer_student.pte, an ExecuTorch XNNPACK program taking 1 to
    MAX_FACES-1 faces per call; (its path, its size in bytes)."""
    s = run.settings
    pte = run.path("edge_fer_student.pte")
    example = torch.zeros(1, 1, s.input_size, s.input_size)
    return pte, export_pte(quantized, example, pte, max_batch=MAX_FACES)


def evaluate_program(run: Run, pte: Path, pruned: torch.nn.Module) -> ProgramScores:
    """The program run as the daemon runs it, on PublicTest, and its agreement with its float
    model (XNNPACK's int8 kernels round differently from PyTorch's reference ones that
    quantize.json measured)."""
    _, val = run.data()
    classifier = PteClassifier(pte, threads=1, spec=run.spec)
    probs = classifier.classify_batch(val.images)
    summary = summarize(confusion_matrix(val.labels, probs.argmax(1)))
    float_labels = _predict(pruned.eval(), torch.from_numpy(normalize(val.images, run.spec))).numpy()
    agreement = float((probs.argmax(1) == float_labels).mean()) if len(val) else 0.0
    classifier.close()
    return ProgramScores(summary, agreement, classifier.batch)


def _best_of_stages(run: Run) -> dict[str, dict]:
    """The best validation record of each trained net (the teacher actually used, ensemble or
    not, as its done marker says: hflip TTA)."""
    best_of = {
        stage: load_checkpoint(run.path(f))["metrics"]
        for stage, f in (("teacher", "teacher.pt"), ("student", "student.pt"), ("pruned", "pruned.pt"))
        if run.path(f).exists()
    }
    teacher_done = _done_record(run, "teacher")
    if "accuracy_tta" in teacher_done:
        best_of["teacher"] = {"val_accuracy": teacher_done["accuracy_tta"]}
    return best_of


def _done_record(run: Run, stage: str) -> dict:
    return json.loads(run.path(f"{stage}.done.json").read_text()) if run.is_done(stage) else {}


def _stage_seconds(run: Run) -> dict[str, int]:
    """Training seconds per stage, from the metrics files (an ensemble teacher's members
    trained in their own runs: their total from the teacher's done marker)."""
    seconds = {
        stage: round(sum(row["seconds"] for row in read_rows(run.path(f"{stage}_metrics.jsonl"))))
        for stage in ("teacher", "distill", "prune")
        if run.path(f"{stage}_metrics.jsonl").exists()
    }
    teacher_done = _done_record(run, "teacher")
    if "training_seconds" in teacher_done:
        seconds["teacher"] = teacher_done["training_seconds"]
    return seconds


def card_of(run: Run, pruned: torch.nn.Module, size: int, scores: ProgramScores) -> ModelCard:
    """The model card of the exported program: what the runtime needs (classes, preprocessing,
    dynamic batch) and, for people, the net, its scores and how it was trained."""
    s = run.settings
    summary = scores.summary
    return ModelCard(
        classes=EMOTIONS,
        preprocess=run.spec,
        dynamic_batch=True,
        name=f"edge-fer emotion student ({type(pruned).__name__}, pruned, int8)",
        input={
            "shape": [scores.batch, 1, s.input_size, s.input_size],
            "dtype": "float32",
            "layout": "NCHW grayscale",
        },  # fmt: skip
        details={
            "student": model_kind(pruned),
            "arch": pruned.arch_dict(),
            "params": sum(p.numel() for p in pruned.parameters()),
            "macs": count_macs(pruned, s.input_size),
            "model_bytes": size,
            "accuracy": {
                "publictest_int8": summary["accuracy"],
                "publictest_macro_f1": summary["macro_f1"],
                "publictest_n": summary["n"],
                **json.loads(run.path("quantize.json").read_text()),
                "pte_float_agreement": scores.float_agreement,
                **{f"{k}_val_accuracy": v["val_accuracy"] for k, v in _best_of_stages(run).items()},
            },
            "training_seconds": _stage_seconds(run),
            "training": {
                stage: portable_record(_done_record(run, stage).get("settings") or {})
                for stage in STAGES[:-1]
                if run.is_done(stage)
            },
            # The recipe file this export ran from (recipes/*.yaml) and its SHA-256: rerun it to
            # rebuild the model (each stage's own settings are under "training").
            "recipe": {"path": portable(s.recipe), "sha256": s.recipe_sha256} if s.recipe else None,
        },
    )


def ship(run: Run, pte: Path) -> None:
    """Copy the program, its card and its plots into --ship (edge_fer/models/ for the shipped one)."""
    folder = run.settings.ship
    folder.mkdir(parents=True, exist_ok=True)
    for src, name in (
        (pte, pte.name),
        (pte.with_suffix(".json"), f"{pte.stem}.json"),
        (run.path("training_curves.png"), f"{pte.stem}_curves.png"),
        (run.path("confusion_int8.png"), f"{pte.stem}_confusion.png"),
    ):
        shutil.copy2(src, folder / name)
    print(f"shipped to {folder}")


def stage_export(run: Run) -> dict:
    """Lower the int8 graph to the shipped program, evaluate it, write its card, plots and
    report, and ship it (--ship)."""
    quantized = load_int8_graph(run.path("int8.pt2"))  # both inputs checked before the work
    pruned, _ = load_model(run.path("pruned.pt"))
    steps = Steps("export", 3)
    steps("lowering the int8 graph to an ExecuTorch XNNPACK program")
    pte, size = lower(run, quantized)
    steps("running the program on PublicTest")
    scores = evaluate_program(run, pte, pruned)
    steps("plots, metadata and report")
    summary = scores.summary
    card = card_of(run, pruned, size, scores)
    plot_confusion(
        np.array(summary["confusion_matrix"]),
        str(run.path("confusion_int8.png")),
        f"int8 student, PublicTest ({summary['accuracy'] * 100:.1f}%)",
    )
    plot_curves(run.dir, run.path("training_curves.png"))
    write_metadata(pte, card)
    write_report(run.dir, card.to_json(), summary)
    steps.close()
    print(
        f"exported {pte} ({size} bytes): int8 PublicTest accuracy {summary['accuracy']:.4f}, "
        f"macro-F1 {summary['macro_f1']:.4f}, agreement with float {scores.float_agreement:.4f}"
    )
    if run.settings.ship:
        ship(run, pte)
    return {"accuracy": summary["accuracy"], "macro_f1": summary["macro_f1"], "bytes": size}


STAGE_FUNCS: dict[str, Callable[[Run], dict]] = {
    "teacher": stage_teacher,
    "distill": stage_distill,
    "prune": stage_prune,
    "quantize": stage_quantize,
    "export": stage_export,
}


def run_stages(settings: TrainSettings, stages: list[str] | None) -> None:
    """Run the named stages in order; when `stages` is None, every stage up to
    `settings.last_stage` that is not done yet."""
    run = Run(settings)
    last = STAGES.index(settings.last_stage)
    prunes = "prune" in stages if stages else STAGES.index("prune") <= last and not run.is_done("prune")
    if settings.soup and prunes:
        check_soup(run)  # now, not after hours of distillation
    for stage in STAGES:
        if stages is not None and stage not in stages:
            continue
        if stages is None and STAGES.index(stage) > last:
            break
        if stages is None and run.is_done(stage):
            print(f"[{stage}] done ({run.path(stage + '.done.json')}), skipping")
            continue
        if stages is not None and run.is_done(stage):
            # Asked for again explicitly: start the stage over.
            run.path(f"{stage}.done.json").unlink()
            run.path(f"{stage}_state.pt").unlink(missing_ok=True)
        run.record_invocation()
        print(f"[{stage}] running on {run.device}")
        t0 = time.perf_counter()
        torch.manual_seed(settings.seed)  # torch seeds itself randomly per process: init too
        summary = STAGE_FUNCS[stage](run)
        run.mark_done(stage, {**summary, "seconds": round(time.perf_counter() - t0, 1),
                              "settings": settings.to_json()})  # fmt: skip

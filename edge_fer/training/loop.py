"""One resumable training loop for every stage: teacher, distillation and post-pruning fine-tune.

Faces live in memory as uint8; each step augments a batch with tensor ops (then mixup and
camera degradations, when asked). With a teacher (a live module run on the same batch, on the
clean faces or the degraded ones, see FitConfig.teacher_sees) the loss is
(1-a)*CE + a*T^2*KL(student/T || teacher/T); with mixup, the CE term takes both faces' labels
weighted by the mix and the teacher labels the mixed faces.

Every epoch ends with an atomic training-state checkpoint (model, optimizer, scheduler, RNG,
metrics so far, best record, weight average), so a stopped run continues from the last
finished epoch and ends with the same weights as one that was never stopped.

`fit` reads top to bottom: `prepare`, restore a saved state, then per epoch `train_epoch`,
`evaluate_epoch`, keep the best, fold the weight average, `save_state`; at the end the
averaged weights compete with the best epoch (`finish_average`).

A state's FitConfig is saved with a `format_version`; `migrate_config` reads older ones.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from functools import cache, partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from edge_fer.data.fer2013 import FaceSet
from edge_fer.emotions.labels import EMOTIONS
from edge_fer.emotions.preprocess import PreprocessSpec
from edge_fer.evaluation.metrics import confusion_matrix, summarize
from edge_fer.nets.checkpoint import save_atomic
from edge_fer.training.augment import augment_batch, mix_batch
from edge_fer.training.degrade import degraded_suite_sample, random_degrade
from edge_fer.training.progress import ON_TTY
from edge_fer.training.report import write_record

if TYPE_CHECKING:
    from edge_fer.training.settings import TrainSettings


class TrainingError(RuntimeError):
    """A run that cannot go on as asked (e.g. a saved state from other settings); the message
    names the file and the fix. The CLI prints it as one line."""


@dataclass
class FitConfig:
    """How one stage trains; stored in its state checkpoint so a resume can check it.

    A field that is also a training setting has the setting's name and meaning
    (edge_fer/training/settings.py); `from_settings` copies those. The defaults here are a bare
    loop's (no teacher, no mixup, no degradations), for stages and tests that build one by hand."""

    epochs: int
    lr: float
    batch_size: int = 128
    weight_decay: float = 5e-4
    pct_start: float = 0.2  # OneCycle warm-up fraction
    alpha: float = 0.0  # KD weight: (1-a)*CE + a*T^2*KL; > 0 needs a live teacher
    temperature: float = 4.0  # KD temperature T
    class_weight_power: float = 0.25  # 0: plain CE, 1: inverse-frequency weights
    label_smoothing: float = 0.1
    eval_tta: bool = False
    bf16: bool = False  # bf16 autocast for the trained model (fast for dense convs on AVX-512 BF16)
    teacher_bf16: bool = True  # bf16 autocast for a live teacher's forward
    teacher_tta: bool = False  # a live teacher's targets: mean logits of the faces and their mirror
    kd_mixup: float = 0.0  # > 0: mixup with lam ~ Beta(a, a); the live teacher sees the mix
    # > 0: each camera degradation (degrade.py) hits each training face with this probability.
    degrade: float = 0.0
    # > 0: a second chance of the far-face degradation per face (multi-resolution training).
    multires: float = 0.0
    # What a live teacher labels when faces are degraded: "clean" (robust distillation: the
    # student learns to give the clean face's answer to the degraded face) or "degraded".
    teacher_sees: str = "clean"

    @classmethod
    def from_settings(cls, settings: TrainSettings, epochs: int, lr: float, **stage: Any) -> FitConfig:
        """The config of a stage of a run: every field named like a setting takes the setting's
        value, `stage` sets the rest (and what the stage does differently)."""
        shared = {f.name: getattr(settings, f.name) for f in fields(cls) if hasattr(settings, f.name)}
        return cls(**{**shared, "epochs": epochs, "lr": lr, **stage})

    @property
    def degrades(self) -> bool:
        """Whether training faces go through camera degradations at all."""
        return self.degrade > 0 or self.multires > 0


# The saved FitConfig's format (the "format_version" key of a state's "config"). Version 1
# (no key) named three fields unlike the settings and held two of dropped experiments.
FIT_CONFIG_VERSION = 2
_RENAMED_IN_V2 = {"kd_alpha": "alpha", "kd_temperature": "temperature", "mixup": "kd_mixup"}
# Fields of dropped experiments (cached teacher views, AdamW), at the value every state saved
# before they went holds: such a state still resumes, any other value cannot.
_RETIRED = {"kd_views": 0, "optimizer": "sgd"}


def saved_config(cfg: FitConfig) -> dict:
    """`cfg` as a state checkpoint stores it (versioned)."""
    return {"format_version": FIT_CONFIG_VERSION, **asdict(cfg)}


def migrate_config(saved: dict, path: Path | str = "the state") -> dict:
    """A saved FitConfig of any version as this version's fields: version 1 names renamed,
    retired fields at their old value dropped, fields added since at their defaults (each
    new field's default reproduces what runs did before it). TrainingError for a field this
    edge-fer no longer has at a value that changed training."""
    config = dict(saved)
    version = config.pop("format_version", 1)
    if version == 1:
        config = {_RENAMED_IN_V2.get(k, k): v for k, v in config.items()}
    known = {f.name for f in fields(FitConfig)}
    for key, value in list(config.items()):
        if key in known:
            continue
        if key not in _RETIRED or _RETIRED[key] != value:
            raise TrainingError(
                f"{path} was saved with {key}={value}, which this edge-fer no longer has; delete it "
                "(and its metrics file) to start the stage over"
            )
        del config[key]
    defaults = asdict(FitConfig(epochs=config.get("epochs", 1), lr=config.get("lr", 1.0)))
    return {**defaults, **config}


def class_weights(counts: np.ndarray, power: float) -> torch.Tensor:
    """Inverse-frequency class weights softened by `power`, mean 1 over samples."""
    freq = counts / counts.sum()
    w = np.where(counts > 0, (1.0 / np.maximum(freq, 1e-12)) ** power, 0.0)
    w = w / (w * freq).sum()
    return torch.tensor(w, dtype=torch.float32)


def to_input(faces_u8: torch.Tensor, spec: PreprocessSpec) -> torch.Tensor:
    """uint8 (B, S, S) -> normalized float (B, 1, S, S), like preprocess.normalize."""
    x = faces_u8.float().unsqueeze(1) * (1.0 / 255.0)
    return (x - spec.mean) / spec.std


@cache
def native_bf16(device_type: str) -> bool:
    """Whether this machine computes in bf16 natively: CUDA, or a CPU with AVX-512 BF16 / AMX.
    Elsewhere (an AVX2-only CPU, the Pi) bf16 is emulated, 7-20x slower than fp32 for a
    teacher's convs (measured on an AVX2 EPYC), so autocast stays off there."""
    if device_type == "cuda":
        return True
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def autocast(device: torch.device, enabled: bool) -> torch.autocast:
    """bf16 autocast when `enabled` and the hardware runs bf16 natively (else plain fp32)."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled and native_bf16(device.type))


def uses_bf16(model: nn.Module) -> bool:
    """bf16 helps dense convs ~1.9x on this CPU and slows depthwise ones: on only for nets
    without grouped convs."""
    return not any(isinstance(m, nn.Conv2d) and m.groups > 1 for m in model.modules())


def forward_logits(model: nn.Module, x: torch.Tensor, tta: bool) -> torch.Tensor:
    """float32 logits of `model` on a normalized batch; with `tta`, the mean over the batch
    and its mirror image (the flip-TTA prediction teachers are quoted and distilled at)."""
    logits = model(x).float()
    if tta:
        logits = (logits + model(torch.flip(x, dims=[3])).float()) / 2
    return logits


@torch.no_grad()
def predict_logits(
    model: nn.Module,
    faces: torch.Tensor,
    spec: PreprocessSpec,
    tta: bool = False,
    batch_size: int = 512,
    bf16: bool | None = None,
) -> torch.Tensor:
    """Logits for uint8 faces (N, S, S); with `tta`, averaged with the mirrored face."""
    model.eval()
    device = next(model.parameters()).device
    bf16 = uses_bf16(model) if bf16 is None else bf16
    # Feed a channels_last model channels_last input: a per-batch conversion costs ~20%.
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.in_channels > 1]
    last = convs and convs[-1].weight.is_contiguous(memory_format=torch.channels_last)
    layout = torch.channels_last if last and not convs[-1].weight.is_contiguous() else torch.contiguous_format
    out = []
    for start in range(0, len(faces), batch_size):
        x = to_input(faces[start : start + batch_size].to(device), spec).contiguous(memory_format=layout)
        with autocast(device, bf16):
            logits = forward_logits(model, x, tta)
        out.append(logits.cpu())
    return torch.cat(out) if out else torch.zeros(0, len(EMOTIONS))


def evaluate_model(model: nn.Module, data: FaceSet, spec: PreprocessSpec, tta: bool = False) -> dict:
    """Accuracy, macro-F1 and confusion matrix of `model` on `data`."""
    logits = predict_logits(model, torch.from_numpy(data.images), spec, tta)
    return summarize(confusion_matrix(data.labels, logits.argmax(1).numpy()))


def memory_format_for(model: nn.Module, device: torch.device) -> torch.memory_format:
    """channels_last (~20-45% faster training here) unless a dense conv is narrower than 16
    channels: libtorch 2.13's CPU conv backward segfaults on channels_last with 8 channels."""
    dense = [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d) and m.groups == 1]
    if device.type == "cpu" and dense and min(dense) < 16:
        return torch.contiguous_format
    return torch.channels_last


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temp: float) -> torch.Tensor:
    """T^2 * KL(softmax(teacher/T) || softmax(student/T)), batch mean."""
    return (
        F.kl_div(
            F.log_softmax(student_logits / temp, 1),
            F.log_softmax(teacher_logits / temp, 1),
            reduction="batchmean",
            log_target=True,
        )
        * temp
        * temp
    )


@dataclass
class TrainState:
    """What a stage has done so far: resumable, saved after every epoch."""

    epoch: int = 0  # epochs finished
    best: dict = field(default_factory=lambda: {"val_accuracy": -1.0})
    history: list[dict] = field(default_factory=list)
    # Running mean of the weights at the ends of the last epochs: {"first_epoch", "n", "weights"}.
    average: dict | None = None

    def add(self, record: dict, metrics_path: Path) -> None:
        """Count a finished epoch: its record joins the history and the metrics file."""
        self.epoch = record["epoch"]
        self.history.append(record)
        with metrics_path.open("a") as f:
            f.write(json.dumps(record) + "\n")


def make_optimizer(
    model: nn.Module, cfg: FitConfig, steps_per_epoch: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.OneCycleLR]:
    """SGD (momentum 0.9, nesterov; no weight decay on biases and norms) under OneCycle."""
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    optimizer = torch.optim.SGD(groups, lr=cfg.lr, momentum=0.9, nesterov=True)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer,
        max_lr=cfg.lr,
        epochs=cfg.epochs,
        steps_per_epoch=steps_per_epoch,
        pct_start=cfg.pct_start,
        div_factor=25.0,
        final_div_factor=1e3,
    )
    return optimizer, scheduler


def save_state(
    path: Path,
    state: TrainState,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    cfg: FitConfig,
    train_n: int,
) -> None:
    """The `<stage>_state.pt` checkpoint, written atomically."""
    save_atomic(
        {
            "epoch": state.epoch,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "rng": {"torch": torch.get_rng_state()},
            "best": state.best,
            "history": state.history,
            "config": saved_config(cfg),
            "train_n": train_n,
            "average": state.average,
        },
        path,
    )


def restore_state(
    path: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    cfg: FitConfig,
    train_n: int,
    average_last: int,
) -> TrainState:
    """Load a `<stage>_state.pt` into model, optimizer, scheduler and the RNG; TrainingError
    when it was saved with other settings."""
    saved = torch.load(path, map_location="cpu", weights_only=False)
    if not same_config(saved.get("config", {}), cfg, path) or saved.get("train_n") != train_n:
        raise TrainingError(
            f"{path} was saved by a run with other settings; resume with the same flags, or "
            f"delete it (and {path.name.replace('_state.pt', '_metrics.jsonl')}) to start the stage over"
        )
    model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    torch.set_rng_state(saved["rng"]["torch"])
    state = TrainState(saved["epoch"], saved["best"], saved["history"], saved.get("average"))
    if state.average is not None and state.average["first_epoch"] != cfg.epochs - average_last + 1:
        raise TrainingError(
            f"{path} averages the weights from epoch {state.average['first_epoch']}, "
            f"not over the last {average_last}; resume with the same --average-last"
        )
    return state


def same_config(saved: dict, cfg: FitConfig, path: Path | str = "the state") -> bool:
    """Whether a state's saved FitConfig (any version, see `migrate_config`) is `cfg`."""
    return migrate_config(saved, path) == asdict(cfg)


@dataclass
class Batches:
    """The training faces on the device and how each step turns some of them into a batch."""

    faces: torch.Tensor  # (N, S, S) uint8
    labels: torch.Tensor  # (N,) int64
    spec: PreprocessSpec
    layout: torch.memory_format
    cfg: FitConfig

    def make(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, float]:
        """(student input, teacher input, labels, mixed-in labels, mix weight) for faces `idx`:
        augmented, mixed (mixup), then degraded for the student; the teacher gets the clean
        mix when it sees clean faces."""
        y = self.labels[idx]
        clean = augment_batch(self.faces[idx].float().unsqueeze(1) / 255.0)
        clean, y, y_mix, lam = mix_batch(clean, y, self.cfg.kd_mixup)
        degraded = random_degrade(clean, self.cfg.degrade, multires=self.cfg.multires)
        x = _normalized(degraded, self.spec, self.layout)
        x_teacher = x
        if self.cfg.degrades and self.cfg.teacher_sees == "clean":
            x_teacher = _normalized(clean, self.spec, self.layout)
        return x, x_teacher, y, y_mix, lam


def train_epoch(
    model: nn.Module,
    teacher: nn.Module | None,
    batches: Batches,
    ce: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    steps: int,
    desc: str,
) -> tuple[float, float]:
    """One pass of `steps` batches over a fresh permutation; (mean loss, train accuracy)."""
    cfg = batches.cfg
    device = batches.faces.device
    model.train()
    perm = torch.randperm(len(batches.faces), device=device)
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device)
    steps_bar = tqdm(range(steps), desc=desc, unit="step", leave=False, dynamic_ncols=True, mininterval=5.0,
                     disable=not ON_TTY)  # fmt: skip
    for i in steps_bar:
        x, x_teacher, y, y_mix, lam = batches.make(perm[i * cfg.batch_size : (i + 1) * cfg.batch_size])
        t_logits = None
        if teacher is not None:
            with torch.no_grad(), autocast(device, cfg.teacher_bf16):
                t_logits = forward_logits(teacher, x_teacher, cfg.teacher_tta)
        with autocast(device, cfg.bf16):
            logits = model(x).float()
        loss = ce(logits, y)
        if lam < 1.0:
            loss = lam * loss + (1 - lam) * ce(logits, y_mix)
        if t_logits is not None:
            loss = (1 - cfg.alpha) * loss + cfg.alpha * kd_loss(logits, t_logits, cfg.temperature)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        loss_sum += loss.detach()
        correct += (logits.argmax(1) == y).sum()
    return float(loss_sum) / steps, float(correct) / (steps * cfg.batch_size)


def evaluate_epoch(
    model: nn.Module, val: FaceSet, degraded_val: FaceSet | None, spec: PreprocessSpec, tta: bool
) -> dict:
    """PublicTest accuracy and macro-F1 (and the degraded faces' accuracy and the selection
    score, when training on degraded faces)."""
    result = evaluate_model(model, val, spec, tta=tta)
    return {
        "val_accuracy": result["accuracy"],
        "val_macro_f1": result["macro_f1"],
        **_robust_scores(model, result, degraded_val, spec),
    }


def fit(
    model: nn.Module,
    train: FaceSet,
    val: FaceSet,
    spec: PreprocessSpec,
    cfg: FitConfig,
    device: torch.device,
    out_dir: Path,
    stage: str,
    save_best: Callable[[nn.Module, dict], None],
    teacher: nn.Module | None = None,
    seed: int = 0,
    average_last: int = 0,
) -> dict:
    """Train `model` for `cfg.epochs`, resuming from `out_dir/<stage>_state.pt` if it exists.

    A `teacher` (needed when cfg.alpha > 0) labels every batch live. With `average_last`
    K > 0, the weights at the end of each of the last K epochs are averaged (uniformly,
    SWA-style; the running mean is part of the resumable state); after the last epoch the
    average gets batch-norm statistics recomputed on the training faces and is kept if it
    beats every single epoch. `save_best(model, record)` is called whenever the selection
    score improves. Per-epoch records go to `out_dir/<stage>_metrics.jsonl`. Returns the best
    epoch's record.
    """
    if (cfg.alpha > 0) != (teacher is not None):
        raise ValueError(f"fit: alpha={cfg.alpha} needs a teacher exactly when it is > 0")
    out_dir = Path(out_dir)
    state_path, metrics_path = out_dir / f"{stage}_state.pt", out_dir / f"{stage}_metrics.jsonl"
    batches, ce, steps = prepare(model, teacher, train, spec, cfg, device)
    optimizer, scheduler = make_optimizer(model, cfg, steps)
    torch.manual_seed(seed)
    state = TrainState()
    if state_path.exists():
        state = restore_state(state_path, model, optimizer, scheduler, cfg, len(train), average_last)
        print(f"[{stage}] resuming after epoch {state.epoch}/{cfg.epochs} "
              f"(best so far {state.best['val_accuracy']:.4f})")  # fmt: skip
    write_record(metrics_path, "".join(json.dumps(r) + "\n" for r in state.history))
    degraded_val = degraded_validation(val, cfg)

    bar = tqdm(range(state.epoch, cfg.epochs), desc=stage, unit="epoch", dynamic_ncols=True,
               initial=state.epoch, total=cfg.epochs, disable=not ON_TTY)  # fmt: skip
    for epoch in bar:
        t0 = time.perf_counter()
        loss, accuracy = train_epoch(model, teacher, batches, ce, optimizer, scheduler, steps,
                                     f"{stage} epoch {epoch + 1}")  # fmt: skip
        record = {
            "stage": stage,
            "epoch": epoch + 1,
            "lr": scheduler.get_last_lr()[0],
            "train_loss": loss,
            "train_accuracy": accuracy,
            **evaluate_epoch(model, val, degraded_val, spec, cfg.eval_tta),
            "seconds": time.perf_counter() - t0,
        }
        state.add(record, metrics_path)
        if _score(record) > _score(state.best):
            state.best = record
            save_best(model, record)
        if average_last > 0 and epoch + 1 > cfg.epochs - average_last:
            state.average = _add_to_average(state.average, model, epoch + 1)
        save_state(state_path, state, model, optimizer, scheduler, cfg, len(train))
        show_epoch(bar, record, state.best, cfg.epochs)
    if state.average is not None:
        return finish_average(
            model, state, batches.faces, val, degraded_val, spec, cfg, out_dir, stage, save_best
        )
    return state.best


def prepare(
    model: nn.Module,
    teacher: nn.Module | None,
    train: FaceSet,
    spec: PreprocessSpec,
    cfg: FitConfig,
    device: torch.device,
) -> tuple[Batches, Callable[[torch.Tensor, torch.Tensor], torch.Tensor], int]:
    """Move the nets and the training faces to `device` (channels_last where it pays); the
    batches, the class-weighted, label-smoothed CE and the steps per epoch."""
    layout = memory_format_for(model, device)
    model.to(device).to(memory_format=layout)
    if teacher is not None:
        teacher.to(device).to(memory_format=memory_format_for(teacher, device)).eval()
    batches = Batches(torch.from_numpy(train.images).to(device), torch.from_numpy(train.labels).to(device),
                      spec, layout, cfg)  # fmt: skip
    weights = class_weights(train.class_counts(), cfg.class_weight_power).to(device)
    ce = partial(F.cross_entropy, weight=weights, label_smoothing=cfg.label_smoothing)
    return batches, ce, max(1, len(train) // cfg.batch_size)


def degraded_validation(val: FaceSet, cfg: FitConfig) -> FaceSet | None:
    """With degraded training faces, selection weighs degraded PublicTest faces (one fixed
    draw of the suite) as much as the clean ones; None otherwise."""
    if not cfg.degrades:
        return None
    degraded = degraded_suite_sample(torch.from_numpy(val.images)).numpy()
    return FaceSet(degraded, val.labels, val.sources)


def show_epoch(bar: tqdm, record: dict, best: dict, epochs: int) -> None:
    """The epoch's figures on the progress bar; a log file or journald gets one plain line
    per epoch instead (no bar escapes)."""
    bar.set_postfix(loss=f"{record['train_loss']:.3f}", val=f"{record['val_accuracy']:.4f}",
                    best=f"{best['val_accuracy']:.4f}")  # fmt: skip
    if not ON_TTY:
        print(f"[{record['stage']}] epoch {record['epoch']}/{epochs}: loss {record['train_loss']:.3f}, "
              f"PublicTest {record['val_accuracy']:.4f} (best {best['val_accuracy']:.4f}), "
              f"{record['seconds']:.0f}s", flush=True)  # fmt: skip


def finish_average(
    model: nn.Module,
    state: TrainState,
    faces_u8: torch.Tensor,
    val: FaceSet,
    degraded_val: FaceSet | None,
    spec: PreprocessSpec,
    cfg: FitConfig,
    out_dir: Path,
    stage: str,
    save_best: Callable[[nn.Module, dict], None],
) -> dict:
    """Evaluate the averaged weights (batch norm recomputed); keep and save them if they beat
    the best single epoch (`<stage>_average.json` says which won). Returns the best record."""
    averaged = averaged_model(model, state.average["weights"], faces_u8, spec, cfg.bf16)
    first = state.average["first_epoch"]
    record = {
        "stage": stage,
        "epoch": cfg.epochs,
        "averaged_epochs": [first, first + state.average["n"] - 1],
        **evaluate_epoch(averaged, val, degraded_val, spec, cfg.eval_tta),
    }
    kept = _score(record) > _score(state.best)
    print(
        f"[{stage}] weights averaged over epochs {record['averaged_epochs'][0]}-"
        f"{record['averaged_epochs'][1]}: {record['val_accuracy']:.4f} "
        f"({'kept' if kept else 'not kept'}; best single epoch {state.best['val_accuracy']:.4f})"
    )
    write_record(out_dir / f"{stage}_average.json", json.dumps({**record, "kept": kept}) + "\n")
    if not kept:
        return state.best
    save_best(averaged, record)
    return record


def _normalized(x: torch.Tensor, spec: PreprocessSpec, layout: torch.memory_format) -> torch.Tensor:
    return ((x - spec.mean) / spec.std).contiguous(memory_format=layout)


def _robust_scores(model: nn.Module, clean: dict, degraded_val: FaceSet | None, spec: PreprocessSpec) -> dict:
    """Accuracy on the degraded PublicTest faces and the selection score, when there are any."""
    if degraded_val is None:
        return {}
    degraded = evaluate_model(model, degraded_val, spec)["accuracy"]
    return {"val_degraded_accuracy": degraded, "val_score": (clean["accuracy"] + degraded) / 2}


def _score(record: dict) -> float:
    """What selects the best epoch: PublicTest accuracy, averaged with the degraded faces'
    accuracy when training on degraded faces."""
    return record.get("val_score", record["val_accuracy"])


def _add_to_average(average: dict | None, model: nn.Module, epoch: int) -> dict:
    """Fold the model's floating-point weights into the running mean (a copy, on the CPU)."""
    weights = {k: v.detach().cpu().clone() for k, v in model.state_dict().items() if v.is_floating_point()}
    if average is None:
        return {"first_epoch": epoch, "n": 1, "weights": weights}
    n = average["n"] + 1
    for key, value in weights.items():
        average["weights"][key] += (value - average["weights"][key]) / n
    average["n"] = n
    return average


@torch.no_grad()
def averaged_model(
    model: nn.Module,
    weights: dict[str, torch.Tensor],
    faces_u8: torch.Tensor,
    spec: PreprocessSpec,
    bf16: bool,
) -> nn.Module:
    """A copy of `model` with the averaged weights and batch-norm statistics recomputed on
    the (unaugmented) training faces: averaged weights don't match any epoch's running stats."""
    averaged = copy.deepcopy(model)
    averaged.load_state_dict(weights, strict=False)
    norms = [m for m in averaged.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [norm.momentum for norm in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative mean over every batch
    averaged.train()
    device = next(averaged.parameters()).device
    layout = memory_format_for(averaged, device)
    for start in range(0, len(faces_u8) if norms else 0, 512):
        x = to_input(faces_u8[start : start + 512].to(device), spec).contiguous(memory_format=layout)
        with autocast(device, bf16):
            averaged(x)
    for norm, momentum in zip(norms, momenta, strict=True):
        norm.momentum = momentum
    return averaged.eval()

"""One training loop for every stage: teacher, distillation and post-pruning fine-tune.

Faces live on the training device as uint8; each step augments a batch there. With a
teacher (a module or cached logits) the loss is (1-a)*CE + a*T^2*KL(student/T || teacher/T).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from edge_fer.dataset import FaceSet
from edge_fer.metrics import confusion_matrix, summarize
from edge_fer.preprocess import PreprocessSpec
from edge_fer.training.augment import augment_batch


@dataclass
class FitConfig:
    epochs: int
    lr: float
    batch_size: int = 128
    weight_decay: float = 5e-4
    warmup_epochs: float | None = None  # default: 10% of the epochs, at most 2
    kd_alpha: float = 0.0
    kd_temperature: float = 4.0
    class_weight_power: float = 0.5  # 0: plain CE, 1: inverse-frequency weights
    label_smoothing: float = 0.0
    eval_tta: bool = False
    optimizer: str = "sgd"  # sgd (momentum, nesterov) | adamw (converges faster on short runs)


def class_weights(counts: np.ndarray, power: float) -> torch.Tensor:
    """Inverse-frequency class weights softened by `power`, mean 1 over samples."""
    freq = counts / counts.sum()
    w = np.where(counts > 0, (1.0 / np.maximum(freq, 1e-12)) ** power, 0.0)
    w = w / (w * freq).sum()
    return torch.tensor(w, dtype=torch.float32)


def to_input(faces_u8: torch.Tensor, spec: PreprocessSpec) -> torch.Tensor:
    """uint8 (B, S, S) on any device -> normalized float (B, 1, S, S), like preprocess.normalize."""
    x = faces_u8.float().unsqueeze(1) * (1.0 / 255.0)
    return (x - spec.mean) / spec.std


@torch.no_grad()
def predict_logits(model: nn.Module, faces: torch.Tensor, spec: PreprocessSpec,
                   tta: bool = False, batch_size: int = 512) -> torch.Tensor:
    """Logits for uint8 faces (N, S, S); with `tta`, averaged with the mirrored face."""
    model.eval()
    device = next(model.parameters()).device
    out = []
    for start in range(0, len(faces), batch_size):
        x = to_input(faces[start:start + batch_size].to(device), spec)
        with _autocast(device):
            logits = model(x).float()
            if tta:
                logits = (logits + model(torch.flip(x, dims=[3])).float()) / 2
        out.append(logits.cpu())
    return torch.cat(out) if out else torch.zeros(0, 7)


def _autocast(device: torch.device) -> torch.autocast:
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")


def evaluate_model(model: nn.Module, data: FaceSet, spec: PreprocessSpec, tta: bool = False) -> dict:
    logits = predict_logits(model, torch.from_numpy(data.images), spec, tta)
    preds = logits.argmax(1).numpy()
    return summarize(confusion_matrix(data.labels, preds))


def memory_format_for(model: nn.Module, device: torch.device) -> torch.memory_format:
    """channels_last (~20-45% faster training here) unless a dense conv is narrower than 16
    channels: libtorch 2.13's CPU conv backward segfaults on channels_last with 8 channels."""
    dense = [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d) and m.groups == 1]
    if device.type == "cpu" and dense and min(dense) < 16:
        return torch.contiguous_format
    return torch.channels_last


def fit(
    model: nn.Module,
    train: FaceSet,
    val: FaceSet,
    spec: PreprocessSpec,
    cfg: FitConfig,
    device: torch.device,
    out_dir: Path,
    stage: str,
    save: Callable[[nn.Module, dict], None],
    teacher: nn.Module | None = None,
    teacher_logits: torch.Tensor | None = None,
    seed: int = 0,
) -> dict:
    """Train `model`; `save(model, metrics)` is called whenever validation accuracy improves.

    Per-epoch metrics go to `out_dir/<stage>_metrics.jsonl`. Returns the best epoch's metrics.
    """
    torch.manual_seed(seed)
    layout = memory_format_for(model, device)
    model.to(device).to(memory_format=layout)
    if teacher is not None:
        teacher.to(device).to(memory_format=memory_format_for(teacher, device)).eval()
    faces = torch.from_numpy(train.images).to(device)
    labels = torch.from_numpy(train.labels).to(device)
    if teacher_logits is not None:
        teacher_logits = teacher_logits.to(device)
    weights = class_weights(train.class_counts(), cfg.class_weight_power).to(device)
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    if cfg.optimizer == "adamw":
        optimizer: torch.optim.Optimizer = torch.optim.AdamW(groups, lr=cfg.lr)
    else:
        optimizer = torch.optim.SGD(groups, lr=cfg.lr, momentum=0.9, nesterov=True)
    steps_per_epoch = max(1, len(train) // cfg.batch_size)
    total = cfg.epochs * steps_per_epoch
    warmup_epochs = cfg.warmup_epochs if cfg.warmup_epochs is not None else min(2.0, 0.1 * cfg.epochs)
    warmup = int(warmup_epochs * steps_per_epoch)

    def lr_at(step: int) -> float:
        if step < warmup:
            return cfg.lr * (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return cfg.lr * 0.5 * (1 + math.cos(math.pi * progress))

    metrics_path = Path(out_dir) / f"{stage}_metrics.jsonl"
    metrics_path.write_text("")
    best: dict = {"val_accuracy": -1.0}
    step = 0
    bar = tqdm(range(cfg.epochs), desc=stage, unit="epoch", dynamic_ncols=True)
    for epoch in bar:
        model.train()
        t0 = time.perf_counter()
        perm = torch.randperm(len(train), device=device)
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device)
        for i in tqdm(range(steps_per_epoch), desc=f"{stage} epoch {epoch + 1}", unit="step",
                      leave=False, dynamic_ncols=True, mininterval=2.0):
            idx = perm[i * cfg.batch_size:(i + 1) * cfg.batch_size]
            x = faces[idx].float().unsqueeze(1) * (1.0 / 255.0)
            x = augment_batch(x)
            x = ((x - spec.mean) / spec.std).contiguous(memory_format=layout)
            y = labels[idx]
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step)
            with _autocast(device):
                logits = model(x).float()
                loss = F.cross_entropy(logits, y, weight=weights,
                                       label_smoothing=cfg.label_smoothing)
                if cfg.kd_alpha > 0:
                    if teacher is not None:
                        with torch.no_grad():
                            t_logits = teacher(x).float()
                    else:
                        t_logits = teacher_logits[idx]
                    temp = cfg.kd_temperature
                    kd = F.kl_div(F.log_softmax(logits / temp, 1), F.log_softmax(t_logits / temp, 1),
                                  reduction="batchmean", log_target=True) * temp * temp
                    loss = (1 - cfg.kd_alpha) * loss + cfg.kd_alpha * kd
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach()
            correct += (logits.argmax(1) == y).sum()
            step += 1
        result = evaluate_model(model, val, spec, tta=cfg.eval_tta)
        record = {
            "stage": stage, "epoch": epoch + 1, "lr": lr_at(step - 1),
            "train_loss": float(loss_sum) / steps_per_epoch,
            "train_accuracy": float(correct) / (steps_per_epoch * cfg.batch_size),
            "val_accuracy": result["accuracy"], "val_macro_f1": result["macro_f1"],
            "seconds": time.perf_counter() - t0,
        }
        with metrics_path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        if record["val_accuracy"] > best["val_accuracy"]:
            best = record
            save(model, record)
        bar.set_postfix(loss=f"{record['train_loss']:.3f}", val=f"{record['val_accuracy']:.4f}",
                        best=f"{best['val_accuracy']:.4f}")
    return best

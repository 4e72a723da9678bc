"""Structured pruning of a student through its interface (edge_fer/nets/students.py).

Each student says how it shrinks (`Student.pruned`: MobileNetV2 drops the lowest-|gamma|
hidden channels of every inverted residual and of its last conv, see
edge_fer/nets/slimming.py); the prune stage then fine-tunes the smaller net with the same
distillation.
"""

from __future__ import annotations

from torch import nn

from edge_fer.nets.students import is_student


def prune_student(model: nn.Module, keep_ratio: float, last_keep_ratio: float | None = None) -> nn.Module:
    """A new, smaller copy of the student `model` keeping `keep_ratio` of its prunable
    channels (`last_keep_ratio`, where the student has a last conv: of its channels)."""
    if not 0 < keep_ratio <= 1:
        raise ValueError(f"keep_ratio must be in (0, 1], got {keep_ratio}")
    if not is_student(model):
        raise TypeError(f"{type(model).__name__} is not a registered student (edge_fer/nets/students.py)")
    if last_keep_ratio is None:
        return model.pruned(keep_ratio)
    return model.pruned(keep_ratio, last_keep_ratio)


def describe(model: nn.Module) -> str:
    """The student's one-line shape (hidden widths), for logs."""
    return model.describe()

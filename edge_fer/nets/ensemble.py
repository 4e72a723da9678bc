"""A teacher made of several trained nets: their logits, averaged.

Differently seeded teachers disagree on the hard faces, so their mean is a better and softer
target than any one of them. Built from checkpoints; never exported or shipped.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from edge_fer.emotions.preprocess import PreprocessSpec
from edge_fer.nets.checkpoint import CheckpointError, load_model, takes_input_of


class TeacherEnsemble(nn.Module):
    """Mean logits of `members` (all taking the same input)."""

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([m(x).float() for m in self.members]).mean(0)


def load_ensemble(paths: Sequence[Path], spec: PreprocessSpec) -> tuple[TeacherEnsemble, list[dict]]:
    """(ensemble in eval mode, each member's checkpoint dict) from teacher checkpoints.

    Every member must take the faces `spec` makes: a teacher trained at another input size or
    normalisation would see different pixels than the student it teaches. (The crop margin is
    not compared: it applies to detector boxes, and training faces come cropped.)
    """
    members, ckpts = [], []
    for path in paths:
        model, ckpt = load_model(Path(path))
        if not takes_input_of(ckpt, spec):
            raise CheckpointError(
                f"teacher {path} was trained with preprocessing {ckpt.get('preprocess')}, not this "
                f"run's {spec.to_dict()}; pass teachers trained at the same --input-size"
            )
        members.append(model)
        ckpts.append(ckpt)
    return TeacherEnsemble(members).eval(), ckpts

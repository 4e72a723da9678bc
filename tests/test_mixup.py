"""Mixup for distillation: the batch is a convex mix of faces, and the live teacher labels
exactly the mixed faces the student sees."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from edge_fer.dataset import FaceSet
from edge_fer.preprocess import PreprocessSpec
from edge_fer.training.augment import mix_batch
from edge_fer.training.loop import FitConfig, fit


def test_mix_batch_is_a_convex_mix_of_the_batch_and_a_permutation_of_it():
    torch.manual_seed(0)
    b = 16
    x = torch.eye(b).view(b, 1, 1, b) * 3.0  # face i is a spike at pixel i: the mix is readable
    y = torch.arange(b)
    for _ in range(20):
        mixed, y_a, y_b, lam = mix_batch(x, y, 0.4)
        assert 0.5 <= lam <= 1.0 and torch.equal(y_a, y)
        partner = mixed.view(b, b) / 3.0
        partner[torch.arange(b), torch.arange(b)] -= lam  # what is left is the partner's spike
        perm = partner.argmax(1)
        assert sorted(perm.tolist()) == list(range(b))  # a permutation of the batch
        assert torch.equal(y_b, y[perm])
        expected = lam * x + (1 - lam) * x[perm]
        assert torch.allclose(mixed, expected, atol=1e-6)


def test_mix_batch_with_alpha_zero_changes_nothing_and_draws_no_random_numbers():
    x, y = torch.rand(8, 1, 4, 4), torch.arange(8)
    before = torch.get_rng_state()
    mixed, y_a, y_b, lam = mix_batch(x, y, 0.0)
    assert mixed is x and torch.equal(y_a, y) and torch.equal(y_b, y) and lam == 1.0
    assert torch.equal(torch.get_rng_state(), before)  # runs without mixup resume bit-identically


class _Recorder(nn.Module):
    """A tiny classifier that keeps every training input it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 16, 3, padding=1)
        self.head = nn.Linear(16, 7)
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.detach().clone())
        return self.head(self.conv(x).mean((2, 3)))


def _faces(n: int, seed: int) -> FaceSet:
    rng = np.random.default_rng(seed)
    return FaceSet(
        rng.integers(0, 256, (n, 48, 48), dtype=np.uint8),
        rng.integers(0, 7, n).astype(np.int64),
        [f"f{i}" for i in range(n)],
    )


def _fit_one_epoch(model: nn.Module, n: int, cfg: FitConfig, out_dir, **kwargs) -> dict:
    """`fit` on n random training faces and 16 validation faces, saving nothing but state."""
    return fit(
        model, _faces(n, 1), _faces(16, 2), PreprocessSpec(), cfg, torch.device("cpu"), out_dir,
        "distill", lambda m, r: None, **kwargs,
    )  # fmt: skip


def test_the_live_teacher_labels_the_same_mixed_faces_the_student_trains_on(tmp_path, monkeypatch):
    import edge_fer.training.loop as loop

    alphas: list[float] = []

    def counting_mix(x: torch.Tensor, y: torch.Tensor, alpha: float):
        alphas.append(alpha)
        return mix_batch(x, y, alpha)

    monkeypatch.setattr(loop, "mix_batch", counting_mix)
    student, teacher = _Recorder(), _Recorder()
    cfg = FitConfig(epochs=1, lr=0.01, batch_size=32, kd_alpha=0.5, mixup=1.0, teacher_bf16=False)
    _fit_one_epoch(student, 96, cfg, tmp_path, teacher=teacher, seed=3)
    assert alphas == [1.0, 1.0, 1.0]  # every batch of the epoch (96 faces, 32 per batch) mixed
    train_inputs = student.seen[:3]  # the student's evaluation inputs come after these
    assert len(teacher.seen) == 3
    for s, t in zip(train_inputs, teacher.seen, strict=True):
        assert torch.equal(s, t)


def test_mixup_refuses_cached_teacher_logits(tmp_path):
    cfg = FitConfig(epochs=1, lr=0.01, batch_size=32, kd_alpha=0.5, mixup=0.4)
    with pytest.raises(ValueError, match="mixup needs a live teacher"):
        _fit_one_epoch(_Recorder(), 64, cfg, tmp_path, teacher_logits=torch.zeros(64, 7))

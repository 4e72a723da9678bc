"""Weight averaging over the last epochs (--average-last): the running mean is exactly the mean
of those epochs' weights, it survives an interruption, and its batch norm is recomputed."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

import edge_fer.training.loop as loop
from edge_fer.dataset import FaceSet
from edge_fer.preprocess import PreprocessSpec
from edge_fer.training.loop import FitConfig, fit, to_input


class _TinyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(1, 16, 3, padding=1, bias=False)
        self.norm = nn.BatchNorm2d(16)
        self.head = nn.Linear(16, 7)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.norm(self.conv(x))).mean((2, 3)))


def _faces(n: int, seed: int) -> FaceSet:
    rng = np.random.default_rng(seed)
    return FaceSet(
        rng.integers(0, 256, (n, 48, 48), dtype=np.uint8),
        rng.integers(0, 7, n).astype(np.int64),
        [f"f{i}" for i in range(n)],
    )


CFG = FitConfig(epochs=3, lr=0.05, batch_size=32, kd_alpha=0.0, bf16=False)


def _fit(out_dir, average_last: int, saved: list | None = None) -> dict:
    def save_best(model: nn.Module, record: dict) -> None:
        if saved is not None:
            saved.append((record, {k: v.clone() for k, v in model.state_dict().items()}))

    out_dir.mkdir(exist_ok=True)
    return fit(
        _TinyNet(), _faces(96, 1), _faces(32, 2), PreprocessSpec(), CFG, torch.device("cpu"), out_dir,
        "distill", save_best, seed=3, average_last=average_last,
    )  # fmt: skip


def _state(out_dir) -> dict:
    return torch.load(out_dir / "distill_state.pt", weights_only=False)


def test_the_average_is_the_mean_of_the_last_epochs_with_batch_norm_recomputed(tmp_path, monkeypatch):
    seen: list[dict[str, torch.Tensor]] = []
    evaluate = loop.evaluate_model

    def recording_evaluate(model, data, spec, tta=False):
        seen.append({k: v.clone() for k, v in model.state_dict().items()})
        return evaluate(model, data, spec, tta)

    monkeypatch.setattr(loop, "evaluate_model", recording_evaluate)
    saved: list = []
    best = _fit(tmp_path, 2, saved)
    assert len(seen) == 4  # three epochs, then the average
    average = _state(tmp_path)["average"]
    assert average["first_epoch"] == 2 and average["n"] == 2
    for key in ("conv.weight", "norm.weight", "norm.bias", "head.weight", "head.bias"):
        expected = (seen[1][key] + seen[2][key]) / 2
        assert torch.allclose(average["weights"][key], expected, atol=1e-6), key
        assert torch.allclose(seen[3][key], expected, atol=1e-6), key  # the model evaluated
    # Batch norm: the mean and variance of the averaged conv's outputs over the training faces.
    x = to_input(torch.from_numpy(_faces(96, 1).images), PreprocessSpec())
    pre_norm = nn.functional.conv2d(x, seen[3]["conv.weight"], padding=1)
    assert torch.allclose(seen[3]["norm.running_mean"], pre_norm.mean((0, 2, 3)), atol=1e-5)
    assert torch.allclose(seen[3]["norm.running_var"], pre_norm.var((0, 2, 3)), rtol=1e-3)
    report = json.loads((tmp_path / "distill_average.json").read_text())
    assert report["averaged_epochs"] == [2, 3]
    rows = (tmp_path / "distill_metrics.jsonl").read_text().splitlines()
    singles = [json.loads(r)["val_accuracy"] for r in rows]
    assert report["kept"] == (report["val_accuracy"] > max(singles))
    assert (best.get("averaged_epochs") == [2, 3]) == report["kept"]
    assert (saved[-1][0].get("averaged_epochs") is not None) == report["kept"]  # saved only if kept


def test_an_interrupted_average_resumes_to_the_same_weights(tmp_path, monkeypatch):
    _fit(tmp_path / "straight", 2)
    calls = 0
    evaluate = loop.evaluate_model

    def dying_evaluate(model, data, spec, tta=False):
        nonlocal calls
        calls += 1
        if calls == 3:  # killed during epoch 3, after epoch 2's state (one epoch averaged)
            raise KeyboardInterrupt
        return evaluate(model, data, spec, tta)

    monkeypatch.setattr(loop, "evaluate_model", dying_evaluate)
    with pytest.raises(KeyboardInterrupt):
        _fit(tmp_path / "killed", 2)
    assert _state(tmp_path / "killed")["average"]["n"] == 1
    monkeypatch.setattr(loop, "evaluate_model", evaluate)
    _fit(tmp_path / "killed", 2)
    a, b = _state(tmp_path / "straight")["average"], _state(tmp_path / "killed")["average"]
    assert a["n"] == b["n"] == 2
    for key in a["weights"]:
        assert torch.equal(a["weights"][key], b["weights"][key]), key


def test_resuming_with_another_average_length_is_refused(tmp_path, monkeypatch):
    calls = 0
    evaluate = loop.evaluate_model

    def dying_evaluate(model, data, spec, tta=False):
        nonlocal calls
        calls += 1
        if calls == 3:
            raise KeyboardInterrupt
        return evaluate(model, data, spec, tta)

    monkeypatch.setattr(loop, "evaluate_model", dying_evaluate)
    with pytest.raises(KeyboardInterrupt):
        _fit(tmp_path, 2)
    with pytest.raises(SystemExit, match="resume with the same --average-last"):
        _fit(tmp_path, 1)

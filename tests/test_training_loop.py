"""Options of the training loop (`fit`):
- mixup for distillation: the batch is a convex mix of faces, and the live teacher labels
  exactly the mixed faces the student sees;
- the teacher's flip-TTA targets (--teacher-tta): the mean of its logits on the batch and on
  the batch's mirror image;
- weight averaging over the last epochs (--average-last): the running mean is exactly the mean
  of those epochs' weights, it survives an interruption, and its batch norm is recomputed;
- bf16 autocast only where the CPU computes bf16 natively (emulated bf16 is many times slower);
- the saved FitConfig: named like the settings, versioned, and a state saved under the old
  names (format 1) still resumes to the same weights;
- checkpoints are written atomically: a failed save leaves the old file and no temp file."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

import edge_fer.training.loop as loop
from edge_fer.data.fer2013 import FaceSet
from edge_fer.emotions.preprocess import PreprocessSpec
from edge_fer.training.augment import mix_batch
from edge_fer.training.loop import FitConfig, fit, to_input


@pytest.mark.fast
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


@pytest.mark.fast
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
    alphas: list[float] = []

    def counting_mix(x: torch.Tensor, y: torch.Tensor, alpha: float):
        alphas.append(alpha)
        return mix_batch(x, y, alpha)

    monkeypatch.setattr(loop, "mix_batch", counting_mix)
    student, teacher = _Recorder(), _Recorder()
    cfg = FitConfig(epochs=1, lr=0.01, batch_size=32, alpha=0.5, kd_mixup=1.0, teacher_bf16=False)
    _fit_one_epoch(student, 96, cfg, tmp_path, teacher=teacher, seed=3)
    assert alphas == [1.0, 1.0, 1.0]  # every batch of the epoch (96 faces, 32 per batch) mixed
    train_inputs = student.seen[:3]  # the student's evaluation inputs come after these
    assert len(teacher.seen) == 3
    for s, t in zip(train_inputs, teacher.seen, strict=True):
        assert torch.equal(s, t)


def test_teacher_tta_targets_are_the_mean_over_the_batch_and_its_mirror(tmp_path, monkeypatch):
    targets: list[torch.Tensor] = []
    kd_loss = loop.kd_loss

    def recording_kd_loss(student_logits, teacher_logits, temp):
        targets.append(teacher_logits.detach().clone())
        return kd_loss(student_logits, teacher_logits, temp)

    monkeypatch.setattr(loop, "kd_loss", recording_kd_loss)
    student, teacher = _Recorder(), _Recorder()
    cfg = FitConfig(epochs=1, lr=0.01, batch_size=32, alpha=0.5, teacher_tta=True, teacher_bf16=False)
    _fit_one_epoch(student, 64, cfg, tmp_path, teacher=teacher, seed=3)
    assert len(targets) == 2 and len(teacher.seen) == 4  # two batches, two teacher calls each
    teacher.eval()
    for i, target in enumerate(targets):
        faces, mirrored = teacher.seen[2 * i], teacher.seen[2 * i + 1]
        assert torch.equal(faces, student.seen[i])  # the student's own batch
        assert torch.equal(mirrored, torch.flip(faces, dims=[3]))
        with torch.no_grad():
            expected = (teacher(faces) + teacher(mirrored)) / 2
        assert torch.allclose(target, expected, atol=1e-5)
        assert not torch.allclose(target, teacher(faces).detach(), atol=1e-5)  # TTA changed it


class _TinyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(1, 16, 3, padding=1, bias=False)
        self.norm = nn.BatchNorm2d(16)
        self.head = nn.Linear(16, 7)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.norm(self.conv(x))).mean((2, 3)))


AVERAGE_CFG = FitConfig(epochs=3, lr=0.05, batch_size=32, alpha=0.0, bf16=False)


def _fit(out_dir, average_last: int, saved: list | None = None) -> dict:
    def save_best(model: nn.Module, record: dict) -> None:
        if saved is not None:
            saved.append((record, {k: v.clone() for k, v in model.state_dict().items()}))

    out_dir.mkdir(exist_ok=True)
    return fit(
        _TinyNet(), _faces(96, 1), _faces(32, 2), PreprocessSpec(), AVERAGE_CFG, torch.device("cpu"), out_dir,
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
    with pytest.raises(loop.TrainingError, match="resume with the same --average-last"):
        _fit(tmp_path, 1)


@pytest.mark.fast
@pytest.mark.parametrize("native", [True, False])
def test_bf16_autocast_only_where_the_hardware_has_it(monkeypatch, native):
    monkeypatch.setattr(loop, "native_bf16", lambda device_type: native)
    conv = nn.Conv2d(1, 4, 3)
    with torch.no_grad(), loop.autocast(torch.device("cpu"), True):
        out = conv(torch.randn(2, 1, 8, 8))
    assert out.dtype == (torch.bfloat16 if native else torch.float32)
    with torch.no_grad(), loop.autocast(torch.device("cpu"), False):
        assert conv(torch.randn(2, 1, 8, 8)).dtype == torch.float32


def test_fit_config_takes_the_settings_by_their_own_names():
    from edge_fer.training.settings import TrainSettings
    from edge_fer.training.stages import distill_config

    s = TrainSettings(alpha=0.3, temperature=2.0, kd_mixup=0.4, degrade=0.1, multires=0.2,
                      teacher_sees="degraded", teacher_tta=True, batch_size=64)  # fmt: skip
    cfg = distill_config(s, "distill", 5, 0.1)
    for name in ("alpha", "temperature", "kd_mixup", "degrade", "multires", "teacher_sees", "teacher_tta",
                 "batch_size", "weight_decay", "pct_start"):  # fmt: skip
        assert getattr(cfg, name) == getattr(s, name), name
    # Today's values by default: the shipped recipes train as before.
    assert (cfg.weight_decay, cfg.pct_start, cfg.bf16) == (5e-5, 0.2, False)
    assert distill_config(s, "prune", 5, 0.02).pct_start == 0.1
    custom = TrainSettings(weight_decay=1e-4, pct_start=0.3)
    assert distill_config(custom, "distill", 5, 0.1).weight_decay == 1e-4
    assert distill_config(custom, "prune", 5, 0.1).pct_start == 0.15


def _v1(config: dict) -> dict:
    """A saved FitConfig as edge-fer wrote it before the fields took the settings' names."""
    old = {"alpha": "kd_alpha", "temperature": "kd_temperature", "kd_mixup": "mixup"}
    return {old.get(k, k): v for k, v in config.items() if k != "format_version"} | {"kd_views": 0}


def test_a_state_saved_under_the_old_field_names_resumes_to_the_same_weights(tmp_path, monkeypatch):
    cfg = FitConfig(epochs=2, lr=0.05, batch_size=32, alpha=0.0, kd_mixup=0.5, bf16=False)

    def run(out_dir) -> dict:
        out_dir.mkdir(exist_ok=True)
        return fit(_TinyNet(), _faces(64, 1), _faces(16, 2), PreprocessSpec(), cfg, torch.device("cpu"),
                   out_dir, "distill", lambda m, r: None, seed=3)  # fmt: skip

    run(tmp_path / "straight")
    assert _state(tmp_path / "straight")["config"]["format_version"] == loop.FIT_CONFIG_VERSION
    evaluate, calls = loop.evaluate_model, []

    def dying_evaluate(model, data, spec, tta=False):
        calls.append(1)
        if len(calls) == 2:  # killed in epoch 2, after epoch 1's state
            raise KeyboardInterrupt
        return evaluate(model, data, spec, tta)

    monkeypatch.setattr(loop, "evaluate_model", dying_evaluate)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "killed")
    monkeypatch.setattr(loop, "evaluate_model", evaluate)
    path = tmp_path / "killed" / "distill_state.pt"
    state = torch.load(path, weights_only=False)
    state["config"] = _v1(state["config"])
    assert "mixup" in state["config"] and "kd_mixup" not in state["config"]
    torch.save(state, path)
    run(tmp_path / "killed")
    a, b = _state(tmp_path / "straight")["model"], _state(tmp_path / "killed")["model"]
    for key in a:
        assert torch.equal(a[key], b[key]), key
    # An old state saved with other settings is still refused, by the same rule.
    state["config"]["mixup"] = 0.9
    torch.save(state, path)
    with pytest.raises(loop.TrainingError, match="saved by a run with other settings"):
        run(tmp_path / "killed")


def test_migrate_config_refuses_fields_it_no_longer_has():
    cfg = loop.saved_config(FitConfig(epochs=1, lr=0.1))
    assert loop.migrate_config(cfg) == loop.migrate_config(_v1(cfg))
    for extra in ({"kd_views": 4}, {"optimizer": "adamw"}, {"warmup": 3}):
        with pytest.raises(loop.TrainingError, match=f"saved with {next(iter(extra))}="):
            loop.migrate_config({**cfg, **extra}, "s.pt")


def test_a_failed_checkpoint_save_leaves_the_old_file_and_no_temp_file(tmp_path):
    from edge_fer.nets.checkpoint import save_atomic

    path = tmp_path / "distill_state.pt"
    save_atomic({"epoch": 1}, path)
    with pytest.raises(Exception):  # noqa: B017 - whatever pickling raises
        save_atomic({"epoch": 2, "bad": lambda: None}, path)
    assert torch.load(path, weights_only=False) == {"epoch": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["distill_state.pt"]
    (tmp_path / "folder.pt").mkdir()
    with pytest.raises(ValueError, match="is a directory"):
        save_atomic({"epoch": 1}, tmp_path / "folder.pt")

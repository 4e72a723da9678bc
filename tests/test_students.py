"""The student interface (edge_fer/nets/students.py): a new student is one class and one
registry line, and checkpoints, pruning and int8 quantization take it through the interface;
the checkpoints the project keeps still load."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from edge_fer.emotions.preprocess import PreprocessSpec
from edge_fer.nets import students
from edge_fer.nets.checkpoint import CheckpointError, build_model, load_model, model_kind, save_model
from edge_fer.nets.slimming import keep_index, round_channels, take_conv_bn
from edge_fer.training.prune import describe, prune_student
from edge_fer.training.settings import TrainSettings

ROOT = Path(__file__).resolve().parents[1]


class TinyStudent(nn.Module):
    """A student that is not a MobileNetV2 and has no `.features`: stem, body, head."""

    kind = "tiny"

    def __init__(self, stem: int = 16, body: int = 16) -> None:
        super().__init__()
        self.widths = {"stem": stem, "body": body}
        self.stem = nn.Sequential(nn.Conv2d(1, stem, 3, 2, 1, bias=False), nn.BatchNorm2d(stem), nn.ReLU())
        self.body = nn.Sequential(nn.Conv2d(stem, body, 3, 2, 1, bias=False), nn.BatchNorm2d(body), nn.ReLU())
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(body, 7))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(self.stem(x)))

    @classmethod
    def from_settings(cls, settings: TrainSettings) -> TinyStudent:
        width = round_channels(16 * settings.width)
        return cls(width, width)

    @classmethod
    def from_arch(cls, arch: dict) -> TinyStudent:
        return cls(**arch)

    def arch_dict(self) -> dict:
        return dict(self.widths)

    def quant_blocks(self) -> tuple[str, ...]:
        return ("stem", "body", "head")

    def pruned(self, keep_ratio: float) -> TinyStudent:
        """Drop the body's lowest-|gamma| channels."""
        keep = min(self.widths["body"], round_channels(self.widths["body"] * keep_ratio))
        idx = keep_index(self.body[1], keep)
        small = TinyStudent(self.widths["stem"], keep).eval()
        small.stem.load_state_dict(self.stem.state_dict())
        take_conv_bn(self.body, small.body, idx, None)
        small.head[2].weight.data.copy_(self.head[2].weight.detach()[:, idx])
        small.head[2].bias.data.copy_(self.head[2].bias.detach())
        return small

    def describe(self) -> str:
        return f"body {self.widths['body']}"


@pytest.fixture()
def tiny_registered(monkeypatch):
    """The one registry line a new student needs."""
    monkeypatch.setitem(students.STUDENTS, "tiny", f"{__name__}:TinyStudent")


@pytest.mark.fast
def test_every_registered_net_implements_its_interface():
    for kind in students.STUDENTS:
        cls = students.student_class(kind)
        assert cls.kind == kind
        model = cls.from_settings(TrainSettings())
        assert isinstance(model, students.Student) and students.is_student(model)
        assert cls.from_arch(model.arch_dict()).arch_dict() == model.arch_dict()
        assert model.quant_blocks() and all(dict(model.named_modules()).get(n) for n in model.quant_blocks())
    for kind in students.TEACHERS:
        assert students.net_class(kind).kind == kind


@pytest.mark.fast
def test_the_registry_loads_without_torch():
    code = "import sys, edge_fer.nets.students, edge_fer.training.settings; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.stdout.strip() == "False", out.stderr


def test_a_new_student_goes_through_checkpoints_pruning_and_int8(tiny_registered, tmp_path):
    from edge_fer.training.quantize import float_prefix, quantize_int8

    torch.manual_seed(0)
    model = students.student_class("tiny").from_settings(TrainSettings(width=2.0)).eval()
    assert model.widths == {"stem": 32, "body": 32} and model_kind(model) == "tiny"
    for m in model.modules():  # distinct BN scales, so the ranking means something
        if isinstance(m, nn.BatchNorm2d):
            m.weight.data.uniform_(0.1, 1.0)
    spec = PreprocessSpec()
    save_model(tmp_path / "tiny.pt", model, spec, {"val_accuracy": 0.5})
    loaded, ckpt = load_model(tmp_path / "tiny.pt")
    assert ckpt["kind"] == "tiny" and ckpt["arch"] == {"stem": 32, "body": 32}
    x = torch.randn(4, 1, 48, 48)
    assert torch.equal(loaded(x), model(x))

    small = prune_student(loaded, 0.5)
    assert small.widths == {"stem": 32, "body": 16} and describe(small) == "body 16"
    kept = keep_index(loaded.body[1], 16)
    with torch.no_grad():  # the kept channels compute what they did
        assert torch.allclose(small.body(small.stem(x)), loaded.body(loaded.stem(x))[:, kept], atol=1e-5)
    assert float_prefix(small, 1) == ("stem",)  # the interface's blocks, no `.features`
    with pytest.raises(ValueError, match="the model has 3"):
        float_prefix(small, 4)
    int8 = quantize_int8(small, torch.randn(16, 1, 48, 48), float_modules=float_prefix(small, 1))
    assert int8(x).shape == (4, 7)
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in model.parameters())


@pytest.mark.fast
def test_an_unregistered_net_is_refused(tmp_path):
    from edge_fer.training.quantize import float_prefix

    with pytest.raises(ValueError, match="not a registered student"):
        float_prefix(nn.Linear(2, 2), 1)
    with pytest.raises(TypeError, match="register it in edge_fer/nets/students.py"):
        save_model(tmp_path / "x.pt", nn.Linear(2, 2), PreprocessSpec(), {})
    with pytest.raises(TypeError, match="not a registered student"):
        prune_student(nn.Linear(2, 2), 0.5)
    with pytest.raises(CheckpointError, match="unknown model kind 'resnet18'"):
        build_model("resnet18", {})


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("artifacts/v10t/pruned.pt", "mobilenetv2"),
        ("artifacts/v10t/student.pt", "mobilenetv2"),
        ("teachers/t4/teacher.pt", "facevgg"),
        ("teachers/t5/teacher.pt", "facevgg"),
        ("runs/v10t/pruned.pt", "mobilenetv2"),
        ("runs/t4/teacher.pt", "facevgg"),
    ],
)
def test_the_kept_checkpoints_still_load(path, kind, tmp_path):
    """The checkpoints recipes read (and the untracked runs/ copies, where this machine has them)."""
    if path.startswith("runs/") and not (ROOT / path).is_file():
        pytest.skip(f"{path} is scratch, not in this checkout")
    model, ckpt = load_model(ROOT / path)
    assert ckpt["kind"] == kind == model_kind(model)
    assert model(torch.zeros(2, 1, 48, 48)).shape == (2, 7)
    save_model(tmp_path / "again.pt", model, PreprocessSpec.from_dict(ckpt["preprocess"]), ckpt["metrics"])
    again = torch.load(tmp_path / "again.pt", weights_only=True)
    assert again["arch"] == ckpt["arch"]
    assert all(torch.equal(again["state_dict"][k], v) for k, v in ckpt["state_dict"].items())


class _Unsafe:
    """Pickles as a call to print: what a code-carrying checkpoint looks like."""

    def __reduce__(self):
        return (print, ("ran",))


def _bad_checkpoints(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """Each kind of file a user could pass as a checkpoint, with the message it must get."""
    good = torch.load(ROOT / "artifacts" / "v10t" / "pruned.pt", weights_only=True)

    def variant(name: str, change) -> Path:
        ckpt = {**good, "state_dict": dict(good["state_dict"]), "preprocess": dict(good["preprocess"])}
        change(ckpt)
        torch.save(ckpt, tmp_path / name)
        return tmp_path / name

    (tmp_path / "text.pt").write_text("hello\n")
    (tmp_path / "random.pt").write_bytes(b"\x80d" + bytes(range(256)) * 4)
    whole = (ROOT / "artifacts" / "v10t" / "pruned.pt").read_bytes()
    (tmp_path / "truncated.pt").write_bytes(whole[: len(whole) // 2])
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "folder.pt").mkdir()
    torch.save({"kind": "mobilenetv2", "arch": {}, "state_dict": {}, "x": _Unsafe()}, tmp_path / "code.pt")
    (tmp_path / "raw_code.pt").write_bytes(pickle.dumps({"kind": _Unsafe()}))
    unreadable = "is not a checkpoint edge-fer can read"
    first = next(k for k, v in good["state_dict"].items() if v.is_floating_point())
    nan = torch.full_like(good["state_dict"][first], float("nan"))
    return {
        "text": (tmp_path / "text.pt", unreadable),
        "random bytes": (tmp_path / "random.pt", unreadable),
        "truncated": (tmp_path / "truncated.pt", unreadable),
        "empty": (tmp_path / "empty.pt", unreadable),
        "folder": (tmp_path / "folder.pt", "is not a regular file"),
        "missing": (tmp_path / "missing.pt", "does not exist"),
        "code": (tmp_path / "code.pt", "holds pickled objects other than weights"),
        "raw pickle with code": (tmp_path / "raw_code.pt", "holds pickled objects other than weights"),
        "no preprocess": (variant("nopre.pt", lambda c: c.pop("preprocess")), "no preprocessing metadata"),
        "preprocess junk": (variant("junk.pt", lambda c: c.update(preprocess="junk")), "must be an object"),
        "preprocess std 0": (variant("std0.pt", lambda c: c["preprocess"].update(std=0)), "preprocess.std 0"),
        "NaN weights": (
            variant("nan.pt", lambda c: c["state_dict"].update({first: nan})),
            "non-finite weights",
        ),
        "wrong shapes": (
            variant("shapes.pt", lambda c: c["state_dict"].update({first: torch.zeros(1)})),
            "does not match its architecture",
        ),
    }


@pytest.mark.fast
def test_every_bad_checkpoint_is_one_checkpoint_error(tmp_path, recwarn):
    """The checkpoint boundary is total: every file that is not a sound edge-fer checkpoint
    gets one CheckpointError naming it and the problem, with no torch warning on the way."""
    for case, (path, message) in _bad_checkpoints(tmp_path).items():
        with pytest.raises(CheckpointError) as info:
            load_model(path)
        assert message in str(info.value) and str(path) in str(info.value), case
        assert "\n" not in str(info.value), case
    assert not [w for w in recwarn if "pickle" in str(w.message)]


@pytest.mark.fast
def test_the_student_setting_lists_the_registry(capsys):
    from edge_fer.apps import train as cli

    assert cli.parse_args(["--student", "mobilenetv2"]).runs[0].student == "mobilenetv2"
    with pytest.raises(SystemExit):
        cli.parse_args(["--student", "resnet18"])
    assert "--student must be one of mobilenetv2, got 'resnet18'" in capsys.readouterr().err
    assert json.loads(json.dumps(TrainSettings().to_json()))["student"] == "mobilenetv2"


def test_a_checkpoint_that_cannot_be_written_is_one_checkpoint_error(tmp_path):
    """save_model never replaces a folder or a device and leaves no temp file when it fails."""
    model, _ = load_model(ROOT / "artifacts" / "v10t" / "pruned.pt")
    (tmp_path / "folder.pt").mkdir()
    (tmp_path / "file").write_text("x")
    for target, message in (
        (tmp_path / "folder.pt", "is a directory, not a regular file"),
        (Path("/dev/null"), "is a character device, not a regular file"),
        (tmp_path / "file" / "student.pt", "cannot"),
    ):
        with pytest.raises(CheckpointError, match=message):
            save_model(target, model, PreprocessSpec(), {})
    assert Path("/dev/null").is_char_device() and (tmp_path / "folder.pt").is_dir()
    assert not list(tmp_path.rglob("*.tmp"))

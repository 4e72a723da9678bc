"""Model checkpoints that carry their own metadata (like torchvision's weights): the net's
kind and architecture, its weights, its preprocessing and classes, and how it scored.

One file rebuilds the net with no other input: `load_model(path)`.
"""

from __future__ import annotations

import io
import os
import pickle
import pickletools
import stat
import warnings
from pathlib import Path

import torch
from torch import nn

from edge_fer.core.safe_io import PathRefused, write_atomic
from edge_fer.emotions.labels import EMOTIONS
from edge_fer.emotions.preprocess import PreprocessSpec, SpecError, check_spec
from edge_fer.nets.students import STUDENTS, TEACHERS, kind_of, net_class


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be loaded; the message names the file and the fix."""


def model_kind(model: nn.Module) -> str:
    """The name a checkpoint stores for this net's class (its registry name)."""
    kind = kind_of(model)
    if kind is None:
        raise TypeError(
            f"no checkpoint kind for {type(model).__name__}; register it in edge_fer/nets/students.py"
        )
    return kind


def build_model(kind: str, arch: dict) -> nn.Module:
    """Rebuild an untrained net from a checkpoint's kind and architecture."""
    if kind not in STUDENTS and kind not in TEACHERS:
        known = ", ".join((*STUDENTS, *TEACHERS))
        raise CheckpointError(f"unknown model kind {kind!r} (this edge-fer builds {known})")
    return net_class(kind).from_arch(arch)


def save_atomic(obj: object, path: Path) -> None:
    """`torch.save(obj)` to `path` through safe_io.write_atomic: serialised in memory, then
    written to a temp file, fsynced and renamed over `path`, so a stop at any moment leaves the
    old file or the new one. PathRefused for a target that is not a regular file, OSError when
    the write fails."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    write_atomic(path, buffer.getbuffer(), 0o644)


def save_model(path: Path, model: nn.Module, spec: PreprocessSpec, metrics: dict) -> None:
    """Write weights + architecture + preprocessing + metrics atomically (CheckpointError if
    the target is a special file or the write fails; no temp file is left behind)."""
    kind = model_kind(model)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    path = Path(path)
    record = {
        "kind": kind,
        "arch": model.arch_dict(),
        "state_dict": state,
        "metrics": metrics,
        "preprocess": spec.to_dict(),
        "classes": list(EMOTIONS),
    }
    try:
        save_atomic(record, path)
    except PathRefused as exc:  # never replace a folder, FIFO or device
        raise CheckpointError(f"cannot write checkpoint {path}: {exc}") from None
    except (OSError, RuntimeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise CheckpointError(f"cannot write checkpoint {path} ({first})") from None


def takes_input_of(ckpt: dict, spec: PreprocessSpec) -> bool:
    """Whether a checkpoint's net was trained on the pixels `spec` makes from a FER2013 face
    (size and normalisation; the crop margin applies only to detector boxes)."""
    ours = {k: v for k, v in spec.to_dict().items() if k != "margin"}
    theirs = {k: v for k, v in (ckpt.get("preprocess") or {}).items() if k != "margin"}
    return ours == theirs


_CODE_OPCODES = {"GLOBAL", "STACK_GLOBAL", "INST", "OBJ", "REDUCE", "NEWOBJ", "NEWOBJ_EX"}


def _carries_code(path: Path, error: Exception) -> bool:
    """Whether a file torch's weights-only loader refused names callables or classes (a pickle
    that would run code), as opposed to being corrupt: torch names the global for its zip
    format; a raw pickle's opcodes are read (never executed) up to the first bad byte."""
    if "Unsupported global" in str(error):
        return True
    with open(path, "rb") as f:
        data = f.read(64 << 20)
    if data[:1] != b"\x80":
        return False
    try:
        for opcode, _, _ in pickletools.genops(data):
            if opcode.name in _CODE_OPCODES:
                return True
    except Exception:  # noqa: BLE001 - corrupt bytes: whatever came before them named nothing
        return False
    return False


def load_checkpoint(path: Path) -> dict:
    """The raw checkpoint dict (its `preprocess` checked), with a one-line CheckpointError
    for a missing, special, corrupt, foreign or code-carrying file."""
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {path} does not exist") from None
    except OSError as exc:
        raise CheckpointError(f"checkpoint {path} cannot be read ({exc.strerror or exc})") from None
    if not stat.S_ISREG(mode):
        raise CheckpointError(f"checkpoint {path} is not a regular file")
    unreadable = (
        f"{path} is not a checkpoint edge-fer can read (corrupt, truncated or another format); "
        "pass a .pt file written by tools/train_mobilenet.py"
    )
    try:
        # weights_only: tensors, numbers, strings, lists and dicts; a pickle that would run
        # code (or build any other object) is refused before anything of it executes.
        with warnings.catch_warnings():  # torch warns about odd pickle protocols in junk files
            warnings.simplefilter("ignore")
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if _carries_code(path, exc):
            raise CheckpointError(
                f"{path} holds pickled objects other than weights (code could run if it were "
                "loaded); load only checkpoints written by edge-fer's training"
            ) from None
        raise CheckpointError(unreadable) from None
    except Exception:  # noqa: BLE001 - any other failure (bad zip, bad pickle): not readable
        raise CheckpointError(unreadable) from None
    if not isinstance(ckpt, dict) or not {"kind", "arch", "state_dict"} <= set(ckpt):
        raise CheckpointError(
            f"{path} is not an edge-fer model checkpoint; train one with tools/train_mobilenet.py"
        )
    if "preprocess" not in ckpt:
        raise CheckpointError(
            f"{path} has no preprocessing metadata ('preprocess'); save it with edge-fer's save_model"
        )
    try:
        ckpt["preprocess"] = check_spec(ckpt["preprocess"])
    except SpecError as exc:
        raise CheckpointError(f"{path}: {exc}; retrain or re-save the checkpoint") from None
    return ckpt


def load_model(path: Path) -> tuple[nn.Module, dict]:
    """(net in eval mode, checkpoint dict) from a checkpoint written by `save_model`."""
    ckpt = load_checkpoint(path)
    try:
        model = build_model(ckpt["kind"], ckpt["arch"])
        model.load_state_dict(ckpt["state_dict"])
    except Exception as exc:  # noqa: BLE001 - a wrong arch dict can fail in many ways
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise CheckpointError(f"{path} does not match its architecture ({first})") from None
    bad = [k for k, v in model.state_dict().items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise CheckpointError(
            f"{path} holds non-finite weights (NaN or inf in {bad[0]}); retrain it or restore a good copy"
        )
    return model.eval(), ckpt

"""Cached teacher views: K augmented copies of the training faces and the teacher's logits on them.

A live teacher forward costs about as much as the student's whole training step on this CPU
(the t3+t4+t5 ensemble runs at ~380 faces/s in bf16; a w1.25 student trains at ~390/s). Caching
the teacher on a fixed set of augmented views halves the cost of every KD epoch after the first
K view passes, at the price of seeing K views per face instead of a fresh one each epoch. The
student trains on exactly the pixels the teacher saw (views are stored as uint8, and the teacher
runs on those stored pixels), so student and teacher stay consistent. Since the teacher runs only
once per view, it can afford its best prediction: the mean of its logits on the view and on the
view mirrored (flip TTA, worth ~0.5 point of teacher accuracy here) at twice the build cost.

Each view is its own file, written atomically, so a stopped cache build resumes at the next view.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from edge_fer.preprocess import PreprocessSpec
from edge_fer.training.augment import augment_batch


@dataclass
class TeacherViews:
    """`images` (K, N, S, S) uint8 augmented faces; `logits` (K, N, C) the teacher's on them."""

    images: torch.Tensor
    logits: torch.Tensor

    def __len__(self) -> int:
        return self.images.shape[0]


def fingerprint(*tensors: torch.Tensor) -> str:
    """sha1 of the tensors' values (layout-independent): ties a cache to its faces and teacher."""
    digest = hashlib.sha1()
    for t in tensors:
        digest.update(t.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _augmented_uint8(faces: torch.Tensor, batch_size: int) -> torch.Tensor:
    out = torch.empty_like(faces)
    for start in range(0, len(faces), batch_size):
        x = faces[start : start + batch_size].float().unsqueeze(1) * (1.0 / 255.0)
        view = (augment_batch(x) * 255.0).round().clamp(0, 255)
        out[start : start + batch_size] = view.to(torch.uint8)[:, 0]
    return out


def build_teacher_views(
    teacher: nn.Module,
    faces: torch.Tensor,
    spec: PreprocessSpec,
    count: int,
    folder: Path,
    seed: int,
    batch_size: int = 128,
) -> TeacherViews:
    """Load, or build and save, `count` augmented views of `faces` (N, S, S) uint8 with the
    teacher's flip-TTA logits, one file per view in `folder` (view k is seeded with seed, k)."""
    from edge_fer.training.loop import memory_format_for, predict_logits

    device = next(teacher.parameters()).device
    teacher.to(memory_format=memory_format_for(teacher, device))
    made_from = {
        "seed": seed,
        "faces": fingerprint(faces),
        "teacher": fingerprint(*teacher.state_dict().values()),
        "tta": True,
    }
    folder.mkdir(parents=True, exist_ok=True)
    images, logits = [], []
    for k in tqdm(range(count), desc="teacher views", unit="view", dynamic_ncols=True):
        path = folder / f"view_{k:03d}.pt"
        if path.is_file():
            try:
                view = torch.load(path, map_location="cpu", weights_only=True)
            except Exception as exc:  # truncated or not a torch file: say which, never a traceback
                raise SystemExit(
                    f"error: {path} is unreadable ({type(exc).__name__}); delete it to rebuild that view"
                ) from None
            if {key: view.get(key) for key in made_from} != made_from:
                raise SystemExit(
                    f"error: {path} was built from other faces, another teacher, another "
                    f"--seed or an older edge-fer; delete {folder} to rebuild the teacher views"
                    " for this run"
                )
        else:
            gen_state = torch.get_rng_state()
            torch.manual_seed(seed * 100_003 + k)
            view_images = _augmented_uint8(faces, batch_size)
            torch.set_rng_state(gen_state)
            view = {
                "images": view_images,
                "logits": predict_logits(teacher, view_images, spec, tta=True, batch_size=batch_size),
                **made_from,
            }
            tmp = path.with_name(path.name + ".tmp")
            torch.save(view, tmp)
            tmp.replace(path)
        images.append(view["images"])
        logits.append(view["logits"].float())
    return TeacherViews(torch.stack(images), torch.stack(logits))

"""Small, export-ready nets: the students (students.py registers them) and the FaceVGG teacher.

Names load on first use, so `edge_fer.nets.students` (the registry) imports without torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_NAMES = {
    "MobileNetV2": "edge_fer.nets.mobilenetv2",
    "StudentArch": "edge_fer.nets.mobilenetv2",
    "student_arch": "edge_fer.nets.mobilenetv2",
    "FaceVGG": "edge_fer.nets.vgg",
}
__all__ = sorted(_NAMES)


def __getattr__(name: str) -> Any:
    if name not in _NAMES:
        raise AttributeError(f"module 'edge_fer.nets' has no attribute {name!r}")
    return getattr(importlib.import_module(_NAMES[name]), name)

"""The student interface and its registry: a new student is one file and one line here.

A student is an `nn.Module` whose class provides what training, checkpoints, pruning and int8
export need of it (the `Student` protocol below); `STUDENTS` names each student class by the
"kind" its checkpoints store. Adding one: write `edge_fer/nets/<net>.py` with the class and
these methods (see `MobileNetV2`), add its line to `STUDENTS`, train it with
`--student <kind>`. The module path is a string so that this file (and the CLI's list of
choices) loads without torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, ClassVar, Protocol, runtime_checkable

if TYPE_CHECKING:
    from typing import Self

    from edge_fer.training.settings import TrainSettings

STUDENTS: dict[str, str] = {
    "mobilenetv2": "edge_fer.nets.mobilenetv2:MobileNetV2",
}
# The nets that only teach: checkpointed the same way, never pruned, quantized or shipped.
TEACHERS: dict[str, str] = {
    "facevgg": "edge_fer.nets.vgg:FaceVGG",
}


@runtime_checkable
class Student(Protocol):
    """What a student class provides (besides `forward` on (N, 1, S, S) normalised faces)."""

    kind: ClassVar[str]  # the name it is registered under, stored in its checkpoints

    @classmethod
    def from_settings(cls, settings: TrainSettings) -> Self:
        """An untrained net shaped by the run's settings (width, last_channels, input_size...)."""
        ...

    @classmethod
    def from_arch(cls, arch: dict) -> Self:
        """The untrained net `arch_dict()` describes (checkpoints rebuild it so)."""
        ...

    def arch_dict(self) -> dict:
        """Everything that shapes the net, as plain JSON values."""
        ...

    def quant_blocks(self) -> tuple[str, ...]:
        """Module names of its blocks in forward order, stem first: the first --float-blocks
        of them stay float in the int8 program."""
        ...

    def pruned(self, keep_ratio: float) -> Self:
        """A structurally smaller copy keeping `keep_ratio` of its prunable channels."""
        ...

    def describe(self) -> str:
        """One line on its shape, for logs."""
        ...


def _load(path: str) -> type:
    module, name = path.split(":")
    return getattr(importlib.import_module(module), name)


def net_class(kind: str) -> type:
    """The student or teacher class checkpoints of `kind` hold (KeyError if none)."""
    if kind in STUDENTS:
        return _load(STUDENTS[kind])
    return _load(TEACHERS[kind])


def student_class(kind: str) -> type[Student]:
    """The registered student class named `kind` (KeyError if none)."""
    return _load(STUDENTS[kind])


def kind_of(model: object) -> str | None:
    """The registered kind of `model` (student or teacher), None for any other module."""
    for kind in (*STUDENTS, *TEACHERS):
        if type(model) is net_class(kind):
            return kind
    return None


def is_student(model: object) -> bool:
    """Whether `model` is a registered student."""
    return kind_of(model) in STUDENTS

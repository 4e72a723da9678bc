"""What every frame source shares: the `FrameSource` interface, the frame it gives, its two
errors, and the registry of source kinds.

Each source module registers its kind (`register_source`) with the `source:` forms it
handles, the config sections it reads, how to build it and, for `auto`, how to find one that
is there. `edge_fer.sources.registry` imports the source modules to fill the registry and
turns a `source` setting into a source.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import cv2
import numpy as np

from edge_fer.config import CameraConfig, FramesConfig, StreamConfig
from edge_fer.core.paths import SHIPPED_DEMO_VIDEO

if TYPE_CHECKING:
    from edge_fer.sources.picamera import Picamera2Source


class CaptureError(RuntimeError):
    """No usable source; the message says what was tried and what to do."""


class EndOfStream(Exception):
    """A non-looping video file ran out of frames: a clean stop."""


@dataclass
class RawFrame:
    image: np.ndarray  # BGR, HxWx3
    lores_gray: np.ndarray | None = None  # the camera's own low-resolution stream, if any


class FrameSource(Protocol):
    """Where frames come from: open, read until closed."""

    name: str

    def open(self) -> None: ...

    def read(self) -> RawFrame | None:
        """The next frame, or None when a grab failed (the caller counts and skips it)."""
        ...

    def close(self) -> None: ...

    def preview_host(self) -> Picamera2Source | None:
        """The source itself when it can show its own DRM preview with an overlay, else None."""
        ...


@contextlib.contextmanager
def quiet_opencv() -> Iterator[None]:
    """Silence OpenCV's own warnings (e.g. "can't open camera by index") for a probe."""
    logging_mod = getattr(getattr(cv2, "utils", None), "logging", None)
    if logging_mod is None:  # pragma: no cover - every OpenCV >= 4.5 has it
        yield
        return
    before = logging_mod.getLogLevel()
    logging_mod.setLogLevel(logging_mod.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        logging_mod.setLogLevel(before)


@dataclass(frozen=True)
class SourceSettings:
    """The settings sources are built from: the config sections `camera` (picamera2 and
    webcams), `stream` (network cameras) and `frames` (every source's frame check), and the
    top-level keys `fallback_video`, `loop_video` and `pace` (video files)."""

    camera: CameraConfig = field(default_factory=CameraConfig)
    stream: StreamConfig = field(default_factory=StreamConfig)
    frames: FramesConfig | None = None  # None: FramesConfig's defaults
    fallback_video: Path | None = None
    loop_video: bool = True
    realtime: bool = True  # pace: realtime (a video file plays at its own frame rate)
    shipped_demo: Path = SHIPPED_DEMO_VIDEO


@dataclass(frozen=True)
class SourceKind:
    """One kind of source as the registry knows it.

    `forms` are the `source:` values it handles, as the help shows them; `matches` says
    whether a `source` value is one of them; `reads` are the config sections (and top-level
    keys) it is built from, besides `frames`, which every source's frame check reads;
    `build(spec, settings)` makes the (unopened) source. `find(settings)` is its turn in
    `auto`, in `auto_rank` order (lowest first): the source when one is there, or None and
    one phrase for the error message saying what was tried. A kind without `find` is never
    picked by `auto`."""

    name: str
    forms: tuple[str, ...]
    reads: tuple[str, ...]
    matches: Callable[[str], bool]
    build: Callable[[str, SourceSettings], FrameSource]
    find: Callable[[SourceSettings], tuple[FrameSource | None, str]] | None = None
    auto_rank: int = 0


# Filled by the source modules as they are imported (edge_fer.sources.registry imports them).
_KINDS: dict[str, SourceKind] = {}


def register_source(kind: SourceKind) -> SourceKind:
    """Add a source kind to the registry (a second kind of the same name is a bug)."""
    if kind.name in _KINDS and _KINDS[kind.name] is not kind:
        raise ValueError(f"source kind {kind.name!r} is registered twice")
    _KINDS[kind.name] = kind
    return kind


def source_kinds() -> tuple[SourceKind, ...]:
    """Every registered kind, in `auto` order (then by name: the order is always the same)."""
    return tuple(sorted(_KINDS.values(), key=lambda k: (k.auto_rank, k.name)))

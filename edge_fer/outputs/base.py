"""The one interface every output implements, and what outputs are built from."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import numpy as np

from edge_fer.outputs.listeners import Listeners
from edge_fer.runtime.results import FrameResult

if TYPE_CHECKING:
    from edge_fer.config import Config
    from edge_fer.runtime.service import Notifier
    from edge_fer.runtime.stats import RunStats


class OutputError(RuntimeError):
    """An output that can no longer work (disk full, folder gone...): the frame loop logs it,
    closes that output and keeps classifying."""


class OutputClosed(Exception):  # noqa: N818 - a request, not an error
    """The user closed the display: the daemon stops cleanly."""


class Output(Protocol):
    """Consumes each frame's result; never changes it."""

    name: str

    def on_frame(self, result: FrameResult, stats: RunStats) -> None:
        """Handle one classified frame (raise OutputError to be dropped, OutputClosed to stop)."""
        ...

    def close(self) -> None:
        """Flush and release everything; called once, also after errors."""
        ...


class PreviewHost(Protocol):
    """A source that can show its own camera preview with an overlay layer (picamera2 DRM)."""

    def enable_drm_preview(self, window: tuple[int, int, int, int] | None = None) -> None:
        """Start the DRM preview; `window` (x, y, w, h on the screen, e.g. the whole screen)
        is where picamera2 letterboxes the picture (its default: 640x480 at the top left)."""
        ...

    def set_overlay(self, rgba: np.ndarray) -> None: ...


@dataclass
class OutputContext:
    """What output factories may use: the config, the classes, systemd, the run's counters,
    and the pipeline's HTTP servers (outputs on one port share one)."""

    config: Config
    classes: tuple[str, ...]
    notifier: Notifier
    preview: PreviewHost | None
    source_name: str
    stats: RunStats
    model_info: dict[str, str]
    listeners: Listeners = field(default_factory=Listeners)


class Every:
    """True at most once per `interval_s` (monotonic clock): for periodic publishing."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._last: float | None = None

    def due(self, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        if self._last is None or now - self._last >= self.interval_s:
            self._last = now
            return True
        return False

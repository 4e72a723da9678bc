"""The types that flow one way through the daemon: frame -> faces -> labels -> outputs."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edge_fer.labels import EMOTIONS

Box = tuple[int, int, int, int]  # x, y, w, h in main-frame pixels


@dataclass
class FaceResult:
    """One tracked face in one frame: its raw and smoothed label."""

    id: int
    box: Box
    label: str
    score: float
    smoothed: str
    probs: np.ndarray

    @property
    def smoothed_score(self) -> float:
        """The probability the classifier gave the smoothed label in this frame."""
        return float(self.probs[EMOTIONS.index(self.smoothed)])


@dataclass
class FrameResult:
    """Everything one frame produced. `seq` counts frames over the daemon's life (it does not
    restart on a config reload); `run_id` names this daemon process."""

    seq: int
    t: float
    image: np.ndarray
    faces: list[FaceResult]
    timing_ms: dict[str, float]
    run_id: str = ""
    classes: tuple[str, ...] = field(default_factory=tuple)

    def event(self) -> dict:
        """The JSONL record for this frame (labels and numbers, never pixels)."""
        return {
            "run_id": self.run_id,
            "frame": self.seq,
            "t": round(self.t, 6),
            "faces": [
                {
                    "id": f.id,
                    "box": list(f.box),
                    "label": f.label,
                    "score": round(f.score, 4),
                    "smoothed": f.smoothed,
                }
                for f in self.faces
            ],
            "timing_ms": {k: round(v, 3) for k, v in self.timing_ms.items()},
        }

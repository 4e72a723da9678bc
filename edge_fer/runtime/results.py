"""The types that flow one way through the daemon: frame -> faces -> labels -> outputs."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

Box = tuple[int, int, int, int]  # x, y, w, h in main-frame pixels


@dataclass
class FaceResult:
    """One tracked face in one frame. `label`/`score`: this frame's most likely emotion and its
    calibrated probability; `smoothed`/`smoothed_score`: the published label (an emotion, a
    label group, or `uncertain`) and its mean calibrated probability over the smoothing
    window (for `uncertain`, that of the most likely label); `probs`: this frame's calibrated
    probabilities of the 7 emotions."""

    id: int
    box: Box
    label: str
    score: float
    smoothed: str
    probs: np.ndarray
    smoothed_score: float = 0.0


@dataclass
class FrameResult:
    """Everything one frame produced. `seq` counts frames over the daemon's life (it does not
    restart on a config reload); `run_id` names this daemon process. `timing_ms["detect"]` is
    the detector's time on a frame that ran it (`detected`), else the tracker's (~0.01 ms)."""

    seq: int
    t: float
    image: np.ndarray
    faces: list[FaceResult]
    timing_ms: dict[str, float]
    run_id: str = ""
    classes: tuple[str, ...] = field(default_factory=tuple)
    detected: bool = True  # the detector ran on this frame (else the tracks were carried on)

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
                    "smoothed_score": round(f.smoothed_score, 4),
                }
                for f in self.faces
            ],
            "timing_ms": {k: round(v, 3) for k, v in self.timing_ms.items()},
        }

"""Per-face label smoothing: a rolling majority over the calibrated probabilities of the last
K frames, with hysteresis and an honest `uncertain`.

Each face keeps its last `window` probability vectors (the 7 calibrated emotion probabilities,
or their sums per label group). The majority is taken over their mean (a soft vote: a frame
that is 51/49 between two labels counts as that, not as a full vote for one), so near-ties
that alternate frame to frame cancel instead of flipping the label. For a face's first
`follow_frames` frames the label follows the evidence; after that it changes only when
another label's mean probability beats the current one's by `hysteresis`, or has led the mean
for a whole window. When the current label's mean probability is under `uncertain_below`,
the face is `uncertain` (until it reaches `uncertain_below + hysteresis`).

A track keeps its id when someone else steps into the same place (the boxes overlap), so
`AppearanceCheck` notices the sudden change of look, frame to frame, and the face's history
restarts instead of carrying the previous person's labels for a window.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import cv2
import numpy as np

from edge_fer.config import SmoothingConfig
from edge_fer.emotions.labels import UNCERTAIN, group_matrix, group_names


@dataclass
class _Face:
    history: deque[np.ndarray]
    label: int = -1  # index of the current label; -1 before the first frame
    uncertain: bool = False
    challenged: int = 0  # frames in a row another label has led the mean


# Frames a new (or restarted) face's label follows the evidence before hysteresis holds it:
# enough that a first-frame near-tie is not locked in, few enough that the label steadies
# within ~0.2 s (benchmarks/README.md, Smoothing, measures the choice).
FOLLOW_FRAMES = 5


class LabelSmoother:
    """Smoothed label and score per face id; a face's state is dropped when it leaves."""

    def __init__(self, config: SmoothingConfig | None = None, follow_frames: int = FOLLOW_FRAMES) -> None:
        """`config`: window, hysteresis, uncertain_below and groups (None: the config's defaults)."""
        config = config if config is not None else SmoothingConfig()
        self.window = config.window
        self.follow_frames = min(follow_frames, config.window)
        self.hysteresis = config.hysteresis
        self.uncertain_below = config.uncertain_below
        self.names = group_names(config.groups)
        self._to_groups = np.asarray(group_matrix(config.groups), np.float64)
        self._faces: dict[int, _Face] = {}

    def update(self, face_id: int, probs: np.ndarray) -> tuple[str, float]:
        """Add a face's calibrated probabilities for this frame; return its smoothed label
        (a group name, or `uncertain`) and the mean probability of its most likely label."""
        p = self._to_groups @ np.asarray(probs, np.float64)
        face = self._faces.get(face_id)
        if face is None:
            face = self._faces[face_id] = _Face(deque(maxlen=self.window))
        face.history.append(p)
        mean = np.mean(face.history, axis=0)
        best = int(np.argmax(mean))
        # For its first frames the label follows the evidence; then it takes a margin to move,
        # or a label that has led the mean for a whole window (so the margin can delay a real
        # change by one window at most, never hold a wrong label forever).
        margin = self.hysteresis if len(face.history) >= self.follow_frames else 0.0
        face.challenged = face.challenged + 1 if best != face.label else 0
        if face.label < 0 or mean[best] - mean[face.label] > margin or face.challenged >= self.window:
            face.label, face.challenged = best, 0
        score = float(mean[face.label])
        # `uncertain` has the same hysteresis: entered below the threshold, left only once the
        # evidence clears it by the margin, so a face near the threshold does not blink.
        face.uncertain = score < self.uncertain_below + (self.hysteresis if face.uncertain else 0.0)
        if face.uncertain:
            return UNCERTAIN, float(mean[best])
        return self.names[face.label], score

    def forget(self, face_ids: list[int]) -> None:
        for face_id in face_ids:
            self._faces.pop(face_id, None)

    def __len__(self) -> int:
        return len(self._faces)


FLAT_LOOK = 1.0  # grey levels of spread under which a look has no features to compare


class AppearanceCheck:
    """Flags a face whose look changed abruptly since the previous frame.

    The look is the face crop shrunk to 16x16; the change is one minus the best correlation
    (zero-mean, unit-norm) of the previous look's central 12x12 with any 12x12 window of the
    new one, so a face that moved up to 2 of its 16 px (the box jittering, the head drifting)
    still matches itself. On the demo video the same face in consecutive frames correlates
    >= 0.7 in 99.5% of frames and another face in its place below 0.7 in 99.7% of swaps
    (benchmarks/README.md, Smoothing).
    """

    SIDE = 16
    SHIFT = 2

    def __init__(self, config: SmoothingConfig | None = None) -> None:
        """`config.restart_below`: the correlation under which a look counts as changed (0: never)."""
        self.restart_below = (config if config is not None else SmoothingConfig()).restart_below
        self._looks: dict[int, np.ndarray] = {}

    @classmethod
    def look(cls, crop: np.ndarray) -> np.ndarray:
        """The 16x16 float32 thumbnail of a gray face crop that looks are compared by."""
        return cv2.resize(crop, (cls.SIDE, cls.SIDE), interpolation=cv2.INTER_AREA).astype(np.float32)

    @classmethod
    def similarity(cls, previous: np.ndarray, look: np.ndarray) -> float:
        """Best correlation of `previous`'s centre with `look` shifted by up to SHIFT px; a
        flat (featureless) look correlates 0 with anything."""
        m, inner = cls.SHIFT, cls.SIDE - 2 * cls.SHIFT
        centre = _unit(previous[m : m + inner, m : m + inner].reshape(1, -1))
        windows = np.lib.stride_tricks.sliding_window_view(look, (inner, inner))
        return float((_unit(windows.reshape(-1, inner * inner)) @ centre.T).max())

    def changed(self, face_id: int, crop: np.ndarray, same_place: np.ndarray | None = None) -> bool:
        """Remember this crop's look; True if it differs from the face's previous one.
        `same_place`: this frame cut with the box the previous look was cut with, when a
        detection has re-boxed the face since; it is compared instead, so a face whose box
        changed size (a small face's box jitters by a fifth) is not taken for someone else."""
        look = self.look(crop)
        previous = self._looks.get(face_id)
        self._looks[face_id] = look
        if previous is None or self.restart_below <= 0:
            return False
        now = self.look(same_place) if same_place is not None else look
        if min(float(previous.std()), float(now.std())) < FLAT_LOOK:
            return False  # a featureless look (a black frame, a covered lens) tells no one apart
        return self.similarity(previous, now) < self.restart_below

    def forget(self, face_ids: list[int]) -> None:
        for face_id in face_ids:
            self._looks.pop(face_id, None)

    def rename(self, old_id: int, new_id: int) -> None:
        """The face `old_id` is now `new_id` (a new person in the track): its latest look,
        the new person's, is kept under the new id; the old id is forgotten."""
        look = self._looks.pop(old_id, None)
        if look is not None:
            self._looks[new_id] = look


def _unit(rows: np.ndarray) -> np.ndarray:
    """Each row zero-mean and unit-norm (a flat row stays all zeros)."""
    rows = rows - rows.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return rows / np.maximum(norms, 1e-6)

"""Per-face label smoothing: a rolling majority over the last K predictions."""

from __future__ import annotations

from collections import Counter, deque


class LabelSmoother:
    """Keeps the last `window` labels of each face id; state is dropped when a face leaves."""

    def __init__(self, window: int = 7) -> None:
        self.window = window
        self._history: dict[int, deque[str]] = {}

    def update(self, face_id: int, label: str) -> str:
        """Add a prediction; return the majority label (ties go to the most recent of them)."""
        history = self._history.setdefault(face_id, deque(maxlen=self.window))
        history.append(label)
        counts = Counter(history)
        top = max(counts.values())
        for recent in reversed(history):
            if counts[recent] == top:
                return recent
        return label  # pragma: no cover - history is never empty here

    def forget(self, face_ids: list[int]) -> None:
        for face_id in face_ids:
            self._history.pop(face_id, None)

    def __len__(self) -> int:
        return len(self._history)

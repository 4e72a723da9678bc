"""A light IoU tracker: every face keeps a stable id across frames.

Between detections (every N frames) tracks keep their last box; a track that finds no
matching detection for `max_missed` detection rounds is dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

from edge_fer.results import Box


def iou(a: Box, b: Box) -> float:
    ax1, ay1, bx1, by1 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    iw = max(0, min(ax1, bx1) - max(a[0], b[0]))
    ih = max(0, min(ay1, by1) - max(a[1], b[1]))
    inter = iw * ih
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


@dataclass
class Track:
    id: int
    box: Box
    missed: int = 0


class IoUTracker:
    """Greedy IoU matching of new detections to existing tracks."""

    def __init__(self, iou_threshold: float = 0.3, max_missed: int = 5) -> None:
        self.iou_threshold, self.max_missed = iou_threshold, max_missed
        self.tracks: list[Track] = []
        self._next_id = 1

    def update(self, detections: list[Box]) -> tuple[list[Track], list[int]]:
        """Match detections to tracks. Returns (live tracks, ids of tracks just dropped)."""
        pairs = sorted(
            ((iou(t.box, d), ti, di) for ti, t in enumerate(self.tracks) for di, d in enumerate(detections)),
            reverse=True,
        )
        used_t: set[int] = set()
        used_d: set[int] = set()
        for score, ti, di in pairs:
            if score < self.iou_threshold or ti in used_t or di in used_d:
                continue
            self.tracks[ti].box, self.tracks[ti].missed = detections[di], 0
            used_t.add(ti)
            used_d.add(di)
        dropped = []
        for ti, track in enumerate(self.tracks):
            if ti not in used_t:
                track.missed += 1
                if track.missed > self.max_missed:
                    dropped.append(track.id)
        self.tracks = [t for t in self.tracks if t.id not in dropped]
        for di, box in enumerate(detections):
            if di not in used_d:
                self.tracks.append(Track(self._next_id, box))
                self._next_id += 1
        return self.visible(), dropped

    def add_new(self, detections: list[Box]) -> list[Track]:
        """Start a track for each detection that overlaps no existing track (a search of part of
        the frame: the tracks it did not cover are not missed). Returns the new tracks."""
        new = []
        for box in detections:
            if all(iou(t.box, box) == 0.0 for t in self.tracks):
                new.append(Track(self._next_id, box))
                self._next_id += 1
        self.tracks += new
        return new

    def visible(self) -> list[Track]:
        """Tracks seen in the latest detection round (missed ones are kept but not shown)."""
        return [t for t in self.tracks if t.missed == 0]

"""A light IoU tracker: every face keeps a stable id across frames.

Between detections (every N frames) tracks keep their last box; a track that finds no
matching detection for `max_missed` detection rounds is dropped. Ids only grow: a face that
comes back after its track was dropped, or a track `reassign`ed because someone else stepped
into its place, gets a new one.
"""

from __future__ import annotations

from dataclasses import dataclass

from edge_fer.config import TrackerConfig
from edge_fer.runtime.results import Box


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
    # Detection rounds until an id given by `reassign` is settled (see there).
    settling: int = 0


class IoUTracker:
    """Greedy IoU matching of new detections to existing tracks."""

    def __init__(self, config: TrackerConfig | None = None) -> None:
        """`config`: iou_threshold and max_missed (None: the config's defaults)."""
        config = config if config is not None else TrackerConfig()
        self.iou_threshold, self.max_missed = config.iou_threshold, config.max_missed
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
            track = self.tracks[ti]
            track.box, track.missed, track.settling = detections[di], 0, max(0, track.settling - 1)
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

    def reassign(self, track_id: int) -> int:
        """Give the track `track_id` a fresh id and return it: someone else is now where that
        face was (the boxes still overlap, so matching alone would keep the old id), and
        everything downstream (events, MQTT, faces_seen) must see a new face.

        An id given this way settles over the next detection that matches the track (two
        rounds when given on a detection frame); until then the id is kept and returned:
        between detections the new face is cut with the previous face's box, and the
        detection that re-boxes it changes its look again without bringing anyone new.
        KeyError if no track has that id."""
        track = next((t for t in self.tracks if t.id == track_id), None)
        if track is None:
            raise KeyError(f"no track with id {track_id}")
        if track.settling == 0:
            track.id = self._next_id
            self._next_id += 1
            track.settling = 2
        return track.id

    def visible(self) -> list[Track]:
        """Tracks seen in the latest detection round (missed ones are kept but not shown)."""
        return [t for t in self.tracks if t.missed == 0]

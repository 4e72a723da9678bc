"""The per-frame pipeline and the frame loop: frame -> faces -> labels -> outputs, one way.

`Pipeline.step` turns one raw frame into a `FrameResult` (detect every N frames and track in
between, classify the tracked faces with the `FaceAnalyzer` edge-fer-classify uses too, smooth
per face). `run` reads the source, counts
the frame in `RunStats` and hands the result to each output in turn.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from edge_fer.config import DetectorConfig, SmoothingConfig, TrackerConfig
from edge_fer.emotions.classifier import Classifier
from edge_fer.emotions.smooth import AppearanceCheck, LabelSmoother
from edge_fer.faces.finder import FaceFinder
from edge_fer.faces.track import IoUTracker, Track
from edge_fer.outputs.base import Output, OutputClosed, OutputError
from edge_fer.runtime.analyzer import FaceAnalyzer
from edge_fer.runtime.results import Box, FrameResult
from edge_fer.runtime.stats import RunStats
from edge_fer.sources.base import EndOfStream, FrameSource, RawFrame

log = logging.getLogger(__name__)


class Pipeline:
    """Find faces (a full detection round every N frames, one tile of the far-face search on
    the others), track them, classify them (`FaceAnalyzer`: one batch per frame), smooth."""

    def __init__(
        self,
        finder: FaceFinder,
        classifier: Classifier,
        detection: DetectorConfig,
        tracking: TrackerConfig,
        smoothing: SmoothingConfig,
        run_id: str = "",
    ) -> None:
        self.finder = finder
        self.analyzer = FaceAnalyzer(classifier, smoothing.min_readable_px)
        self.every_n_frames = detection.every_n_frames
        self.tracker = IoUTracker(tracking)
        self.smoother = LabelSmoother(smoothing)
        self.appearance = AppearanceCheck(smoothing)
        self._cut_with: dict[int, Box] = {}  # the box each face's last look was cut with
        self.run_id = run_id
        self.index = 0

    def _find(self, raw: RawFrame) -> tuple[list[Track], bool]:
        """This frame's tracks, and whether it was a full detection round."""
        if self.index % self.every_n_frames == 0:
            tracked = [t.box for t in self.tracker.tracks]
            boxes = self.finder.round(raw.image, tracked, raw.lores_gray)
            tracks, dropped = self.tracker.update(boxes)
            self.smoother.forget(dropped)
            self.appearance.forget(dropped)
            for face_id in dropped:
                self._cut_with.pop(face_id, None)
            return tracks, True
        # Between rounds the tracks keep their boxes; this frame's tile may add a new (far) face.
        self.tracker.add_new(self.finder.between(raw.image, [t.box for t in self.tracker.tracks]))
        return self.tracker.visible(), False

    def step(self, raw: RawFrame, capture_ms: float, seq: int) -> FrameResult:
        """One raw frame -> its result; `seq` is the daemon-wide frame number."""
        t0 = time.perf_counter()
        tracks, detected = self._find(raw)
        t1 = time.perf_counter()
        boxes = [t.box for t in tracks]
        crops = self.analyzer.crops(raw.image, boxes)
        # Every frame, so a face swapped between detections restarts at once (the look's shift
        # search absorbs a box that stays put while the face drifts).
        for track, crop in zip(tracks, crops, strict=True):
            before = self._cut_with.get(track.id, track.box)
            same_place = None if before == track.box else self.analyzer.crop(raw.image, before)
            self._cut_with[track.id] = track.box
            if self.appearance.changed(track.id, crop, same_place):
                self.smoother.forget([track.id])
                # Someone else in this face's place: a new face everywhere (events, MQTT
                # tracked_faces, faces_seen), so the track gets a fresh id (kept while its box
                # settles onto the new face; `track` is the tracker's own object, so the id
                # changes for this frame too).
                old_id = track.id
                new_id = self.tracker.reassign(old_id)
                self.appearance.rename(old_id, new_id)
                self._cut_with[new_id] = self._cut_with.pop(old_id)
        faces = []
        for reading in self.analyzer.read(crops, boxes):
            face_id = tracks[reading.index].id
            smoothed, smoothed_score = self.smoother.update(face_id, reading.probs)
            faces.append(reading.result(face_id, smoothed, smoothed_score))
        t2 = time.perf_counter()
        timing = {
            "capture": capture_ms,
            "detect": (t1 - t0) * 1e3,
            "classify": (t2 - t1) * 1e3,
            "total": capture_ms + (t2 - t0) * 1e3,
        }
        self.index += 1
        return FrameResult(
            seq, time.time(), raw.image, faces, timing, self.run_id, self.analyzer.classes, detected
        )


def run(
    source: FrameSource,
    pipeline: Pipeline,
    outputs: list[Output],
    should_stop: Callable[[], bool],
    stats: RunStats,
    max_frames: int | None = None,
) -> str:
    """Process frames until stopped. Returns why: 'signal', 'max_frames', 'eos' (a video that
    ended with looping off) or 'closed' (the user closed the window).

    An output that raises OutputError is logged, closed and dropped; the rest go on.
    """
    while not should_stop():
        if max_frames is not None and stats.frames >= max_frames:
            return "max_frames"
        t0 = time.perf_counter()
        try:
            raw = source.read()
        except EndOfStream:
            return "eos"
        # A file played at its own pace waits inside read(); that wait is not capture work.
        waited_s = getattr(source, "paced_wait_s", 0.0)
        capture_ms = max(0.0, time.perf_counter() - t0 - waited_s) * 1e3
        if raw is None:
            stats.bad_frames += 1
            continue
        result = pipeline.step(raw, capture_ms, stats.frames)
        ids, labels = [f.id for f in result.faces], [f.smoothed for f in result.faces]
        stats.add_frame(result.timing_ms, ids, labels, result.detected)
        t_out = time.perf_counter()
        for output in list(outputs):
            try:
                output.on_frame(result, stats)
            except OutputClosed:
                return "closed"
            except OutputError as exc:
                log.error("%s; the other outputs go on", exc)
                outputs.remove(output)
                output.close()
        stats.add_outputs((time.perf_counter() - t_out) * 1e3)
    return "signal"

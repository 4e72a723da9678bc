"""The per-frame pipeline and the frame loop: frame -> faces -> labels -> outputs, one way.

`Pipeline.step` turns one raw frame into a `FrameResult` (detect every N frames and track in
between, classify all faces in one batch, smooth per face). `run` reads the source, counts
the frame in `RunStats` and hands the result to each output in turn.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import cv2
import numpy as np

from edge_fer.capture import EndOfStream, FrameSource, RawFrame
from edge_fer.classify import Classifier
from edge_fer.config import DetectorConfig, SmoothingConfig, TrackerConfig
from edge_fer.detect import FaceDetector
from edge_fer.outputs import Output, OutputClosed, OutputError
from edge_fer.preprocess import prepare_face
from edge_fer.results import Box, FaceResult, FrameResult
from edge_fer.smooth import AppearanceCheck, LabelSmoother
from edge_fer.stats import RunStats
from edge_fer.track import IoUTracker

log = logging.getLogger(__name__)


def _scale_box(box: Box, scale: float, limit: tuple[int, int]) -> Box:
    x, y, w, h = (int(round(v * scale)) for v in box)
    x, y = max(0, x), max(0, y)
    return (x, y, min(w, limit[0] - x), min(h, limit[1] - y))


class Pipeline:
    """Detect (every N frames, tracking in between), classify all faces in one batch, smooth."""

    def __init__(
        self,
        detector: FaceDetector,
        classifier: Classifier,
        detection: DetectorConfig,
        tracking: TrackerConfig,
        smoothing: SmoothingConfig,
        run_id: str = "",
    ) -> None:
        self.detector = detector
        self.classifier = classifier
        self.every_n_frames = detection.every_n_frames
        self.detect_width = detection.detect_width
        self.tracker = IoUTracker(tracking.iou_threshold, tracking.max_missed)
        self.smoother = LabelSmoother(
            smoothing.window, smoothing.hysteresis, smoothing.uncertain_below, smoothing.groups
        )
        self.appearance = AppearanceCheck(smoothing.restart_below)
        self.run_id = run_id
        self.index = 0

    def _detection_image(self, raw: RawFrame) -> tuple[np.ndarray, float]:
        """The small image faces are found in, and main-frame pixels per pixel of it."""
        h, w = raw.image.shape[:2]
        if raw.lores_gray is not None:
            return raw.lores_gray, w / raw.lores_gray.shape[1]
        target = min(self.detect_width, w)
        small = (
            raw.image
            if target == w
            # max(1, ...): the frame check keeps aspects sane; a row of zero is never asked for
            else cv2.resize(raw.image, (target, max(1, round(h * target / w))), interpolation=cv2.INTER_AREA)
        )
        return small, w / target

    def _skip_nonfinite(self, face_id: int) -> None:
        """Leave a face whose scores are not finite out of the frame; log the first time."""
        self.nonfinite = getattr(self, "nonfinite", 0) + 1
        if self.nonfinite == 1:
            log.warning(
                "the classifier gave face #%d non-finite scores; such faces are left out of the "
                "results (check the model)",
                face_id,
            )

    def step(self, raw: RawFrame, capture_ms: float, seq: int) -> FrameResult:
        """One raw frame -> its result; `seq` is the daemon-wide frame number."""
        t0 = time.perf_counter()
        h, w = raw.image.shape[:2]
        detected = self.index % self.every_n_frames == 0
        if detected:
            small, scale = self._detection_image(raw)
            boxes = [_scale_box(b, scale, (w, h)) for b in self.detector.detect(small)]
            tracks, dropped = self.tracker.update([b for b in boxes if b[2] > 0 and b[3] > 0])
            self.smoother.forget(dropped)
            self.appearance.forget(dropped)
        else:
            tracks = self.tracker.visible()
        t1 = time.perf_counter()
        classes = self.classifier.classes
        crops = [prepare_face(raw.image, self.classifier.spec, t.box) for t in tracks]
        # Every frame, so a face swapped between detections restarts at once (the look's shift
        # search absorbs a box that stays put while the face drifts).
        for track, crop in zip(tracks, crops, strict=True):
            if self.appearance.changed(track.id, crop):
                self.smoother.forget([track.id])
        probs = (
            self.classifier.classify_batch(np.stack(crops))
            if crops
            else np.zeros((0, len(classes)), np.float32)
        )
        faces = []
        for track, p in zip(tracks, probs, strict=True):
            if not np.isfinite(p).all():  # NaN/inf scores never reach an output
                self._skip_nonfinite(track.id)
                continue
            k = int(np.argmax(p))
            smoothed, smoothed_score = self.smoother.update(track.id, p)
            faces.append(
                FaceResult(track.id, track.box, classes[k], float(p[k]), smoothed, p, smoothed_score)
            )
        t2 = time.perf_counter()
        timing = {
            "capture": capture_ms,
            "detect": (t1 - t0) * 1e3,
            "classify": (t2 - t1) * 1e3,
            "total": capture_ms + (t2 - t0) * 1e3,
        }
        self.index += 1
        return FrameResult(seq, time.time(), raw.image, faces, timing, self.run_id, classes, detected)


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

"""The per-frame pipeline: frame -> faces -> labels -> overlay/stats, one way.

`Pipeline.step` turns one raw frame into a `FrameResult`; `run` loops over a source,
feeding results to the display, the events log, the stats file and systemd.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO

import cv2
import numpy as np

from edge_fer.capture import EndOfStream, FrameSource, RawFrame
from edge_fer.classify import Classifier
from edge_fer.config import Config
from edge_fer.detect import Box, FaceDetector
from edge_fer.display import Display
from edge_fer.overlay import FaceResult, Hud, render
from edge_fer.preprocess import prepare_face, to_gray
from edge_fer.service import Notifier
from edge_fer.smooth import LabelSmoother
from edge_fer.stats import RunStats, write_json_atomic
from edge_fer.track import IoUTracker

log = logging.getLogger(__name__)


@dataclass
class FrameResult:
    index: int
    t: float
    image: np.ndarray
    faces: list[FaceResult]
    timing_ms: dict[str, float]

    def event(self) -> dict:
        """The JSONL record for this frame."""
        return {
            "frame": self.index, "t": round(self.t, 6),
            "faces": [{"id": f.id, "box": list(f.box), "label": f.label,
                       "score": round(f.score, 4), "smoothed": f.smoothed} for f in self.faces],
            "timing_ms": {k: round(v, 3) for k, v in self.timing_ms.items()},
        }


def _scale_box(box: Box, scale: float, limit: tuple[int, int]) -> Box:
    x, y, w, h = (int(round(v * scale)) for v in box)
    x, y = max(0, x), max(0, y)
    return (x, y, min(w, limit[0] - x), min(h, limit[1] - y))


class Pipeline:
    """Detect (every N frames, tracking in between), classify all faces in one batch, smooth."""

    def __init__(self, config: Config, detector: FaceDetector, classifier: Classifier) -> None:
        self.config = config
        self.detector = detector
        self.classifier = classifier
        self.tracker = IoUTracker(config.tracker.iou_threshold, config.tracker.max_missed)
        self.smoother = LabelSmoother(config.smoothing.window)
        self.index = 0

    def _detection_image(self, raw: RawFrame) -> tuple[np.ndarray, float]:
        """The small image faces are found in, and main-frame pixels per pixel of it."""
        h, w = raw.image.shape[:2]
        if raw.lores_gray is not None:
            return raw.lores_gray, w / raw.lores_gray.shape[1]
        target = min(self.config.detector.detect_width, w)
        small = raw.image if target == w else cv2.resize(
            raw.image, (target, int(round(h * target / w))), interpolation=cv2.INTER_AREA)
        if self.detector.name == "haar":
            small = to_gray(small)
        return small, w / target

    def step(self, raw: RawFrame, capture_ms: float) -> FrameResult:
        t0 = time.perf_counter()
        h, w = raw.image.shape[:2]
        if self.index % self.config.detector.every_n_frames == 0:
            small, scale = self._detection_image(raw)
            boxes = [_scale_box(b, scale, (w, h)) for b in self.detector.detect(small)]
            tracks, dropped = self.tracker.update([b for b in boxes if b[2] > 0 and b[3] > 0])
            self.smoother.forget(dropped)
        else:
            tracks = self.tracker.visible()
        t1 = time.perf_counter()
        spec = self.classifier.spec
        crops = [prepare_face(raw.image, spec, t.box) for t in tracks]
        probs = self.classifier.classify_batch(np.stack(crops)) if crops else np.zeros((0, 7))
        classes = self.classifier.classes
        faces = []
        for track, p in zip(tracks, probs, strict=True):
            k = int(np.argmax(p))
            label = classes[k]
            faces.append(FaceResult(track.id, track.box, label, float(p[k]),
                                    self.smoother.update(track.id, label), p))
        t2 = time.perf_counter()
        timing = {"capture": capture_ms, "detect": (t1 - t0) * 1e3,
                  "classify": (t2 - t1) * 1e3, "total": capture_ms + (t2 - t0) * 1e3}
        result = FrameResult(self.index, time.time(), raw.image, faces, timing)
        self.index += 1
        return result


class Recorder:
    """Writes rendered frames to a video file; only when the user sets `record`."""

    def __init__(self, path: str, fps: float) -> None:
        self.path, self.fps = path, fps
        self.writer: cv2.VideoWriter | None = None

    def write(self, image: np.ndarray) -> None:
        if self.writer is None:
            h, w = image.shape[:2]
            self.writer = cv2.VideoWriter(self.path, cv2.VideoWriter_fourcc(*"mp4v"), self.fps,
                                          (w, h))
        self.writer.write(image)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.release()


def run(
    pipeline: Pipeline,
    source: FrameSource,
    display: Display,
    notifier: Notifier,
    stats: RunStats,
    should_stop: Callable[[], bool],
    max_frames: int | None = None,
    events: IO[str] | None = None,
    recorder: Recorder | None = None,
    source_reconnects: Callable[[], int] = lambda: 0,
) -> str:
    """Process frames until stopped. Returns why it stopped: 'signal', 'max_frames', 'eos',
    or 'closed' (the user closed the window)."""
    config = pipeline.config
    last_publish = 0.0
    ready = False
    stats_path = config.stats.path
    while not should_stop():
        if max_frames is not None and stats.frames >= max_frames:
            return "max_frames"
        t0 = time.perf_counter()
        try:
            raw = source.read()
        except EndOfStream:
            return "eos"
        capture_ms = (time.perf_counter() - t0) * 1e3
        if raw is None:
            stats.bad_frames += 1
            continue
        result = pipeline.step(raw, capture_ms)
        stats.add_frame(result.timing_ms, [f.id for f in result.faces],
                        [f.smoothed for f in result.faces])
        lat = stats.latency
        hud = Hud(result.timing_ms["total"], result.timing_ms["detect"],
                  result.timing_ms["classify"], lat.fps())
        if not display.show(result.image, result.faces, hud):
            return "closed"
        if recorder is not None:
            recorder.write(render(result.image, result.faces, hud, pipeline.classifier.classes,
                                  config.display.top3))
        if events is not None:
            events.write(json.dumps(result.event()) + "\n")
        now = time.monotonic()
        if not ready:
            notifier.ready(f"first frame classified from {source.name}")
            log.info("ready: first frame classified from %s", source.name)
            ready = True
        notifier.frame_done(now)
        if now - last_publish >= config.stats.interval_s:
            last_publish = now
            live = stats.live(source.name, source_reconnects())
            notifier.status(f"{live['fps']:.1f} fps, {live['faces']} face(s), "
                            f"{live['frames']} frames")
            if stats_path is not None:
                try:
                    write_json_atomic(stats_path, live)
                except OSError as exc:
                    log.warning("cannot write stats to %s (%s); set stats.path to a writable "
                                "place; not publishing stats", stats_path, exc)
                    stats_path = None
    return "signal"

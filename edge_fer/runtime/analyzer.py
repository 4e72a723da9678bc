"""Image + face boxes -> classified faces: the one place the daemon and `edge-fer-classify` do it.

`FaceAnalyzer` cuts each box out with the model's own preprocessing (`emotions.preprocess`),
classifies all faces of an image in one batch (the classifier applies the model's
calibration) and reads the result the same way for a video frame and a photo: the most likely
emotion and its probability, `uncertain` for a face too small to read, and a face whose
scores are not finite left out with one warning. Finding the boxes is the caller's (the
pipeline's tracker, the photo search), and so are tracking and smoothing, which are about video.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from edge_fer.emotions.classifier import Classifier
from edge_fer.emotions.labels import UNCERTAIN
from edge_fer.emotions.preprocess import prepare_face
from edge_fer.runtime.results import Box, FaceResult

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FaceReading:
    """One classified face: `index` is its place in the boxes given, `probs` the calibrated
    probabilities of `classes`, `label`/`score` the most likely one and its probability,
    `readable` whether the face has enough pixels for its label to mean something."""

    index: int
    box: Box
    probs: np.ndarray
    label: str
    score: float
    readable: bool

    def result(
        self, face_id: int, smoothed: str | None = None, smoothed_score: float | None = None
    ) -> FaceResult:
        """This face as a `FaceResult`: published as `smoothed` (with `smoothed_score`), or as
        this reading's own label and score when there is no history (a photo); `uncertain`
        either way when the face is too small to read."""
        published = self.label if smoothed is None else smoothed
        return FaceResult(
            face_id,
            self.box,
            self.label,
            self.score,
            published if self.readable else UNCERTAIN,
            self.probs,
            self.score if smoothed_score is None else smoothed_score,
        )


class FaceAnalyzer:
    """Classifies the faces at given boxes of an image, in one batch. Faces with a side under
    `min_readable_px` are read but published `uncertain` (model card: accuracy by face size)."""

    def __init__(self, classifier: Classifier, min_readable_px: int = 0) -> None:
        self.classifier = classifier
        self.classes: tuple[str, ...] = tuple(classifier.classes)
        self.min_readable_px = min_readable_px
        self.nonfinite = 0  # faces left out for non-finite scores, over the analyzer's life

    def crop(self, image: np.ndarray, box: Box | None = None) -> np.ndarray:
        """The model's uint8 (S, S) gray input for the face at `box` (None: the image is the face)."""
        return prepare_face(image, self.classifier.spec, box)

    def crops(self, image: np.ndarray, boxes: list[Box]) -> np.ndarray:
        """The model's inputs for every box, (N, S, S) uint8."""
        size = self.classifier.spec.input_size
        if not boxes:
            return np.zeros((0, size, size), np.uint8)
        return np.stack([self.crop(image, box) for box in boxes])

    def read(self, crops: np.ndarray, boxes: list[Box], whole: bool = False) -> list[FaceReading]:
        """Classify `crops` (cut at `boxes`) in one batch. A face whose scores are not finite is
        left out (logged the first time). `whole`: each crop is a whole image the user says is a
        face, so it is read whatever its size."""
        if len(crops) != len(boxes):
            raise ValueError(f"{len(crops)} crops for {len(boxes)} boxes")
        if not boxes:
            return []
        probs = self.classifier.classify_batch(crops)
        readings = []
        for i, (box, p) in enumerate(zip(boxes, probs, strict=True)):
            if not np.isfinite(p).all():  # NaN/inf scores never reach an output
                self._skip_nonfinite(box)
                continue
            k = int(np.argmax(p))
            readable = whole or min(box[2], box[3]) >= self.min_readable_px
            readings.append(FaceReading(i, box, p, self.classes[k], float(p[k]), readable))
        return readings

    def analyze(self, image: np.ndarray, boxes: list[Box] | None) -> list[FaceReading]:
        """The faces at `boxes` of `image`, classified; `boxes=None`: the whole image is one face
        (a crop such as a FER2013 picture, cut with no margin)."""
        if boxes is None:
            h, w = image.shape[:2]
            return self.read(self.crop(image)[None], [(0, 0, w, h)], whole=True)
        return self.read(self.crops(image, boxes), boxes)

    def _skip_nonfinite(self, box: Box) -> None:
        self.nonfinite += 1
        if self.nonfinite == 1:
            log.warning(
                "the classifier gave the face at %s non-finite scores; such faces are left out of "
                "the results (check the model)",
                list(box),
            )

"""`FaceAnalyzer`: the one place an image plus face boxes become classified faces, shared by the
daemon's pipeline and `edge-fer-classify`."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_fer.config import DetectorConfig, SmoothingConfig, TrackerConfig
from edge_fer.emotions.labels import EMOTIONS, UNCERTAIN
from edge_fer.emotions.preprocess import PreprocessSpec, prepare_face
from edge_fer.runtime.analyzer import FaceAnalyzer

pytestmark = pytest.mark.fast  # units and contracts: the fast tier

SAMPLES = Path(__file__).resolve().parents[1] / "edge_fer" / "samples"


class Spy:
    """A classifier that records its batches; each face's label follows its mean grey level,
    and `nan_for` gives those faces (by place in the batch) NaN scores."""

    classes = EMOTIONS

    def __init__(self, nan_for: tuple[int, ...] = ()) -> None:
        self.spec = PreprocessSpec(margin=0.1)
        self.batches: list[np.ndarray] = []
        self.nan_for = nan_for

    def classify_batch(self, faces: np.ndarray) -> np.ndarray:
        self.batches.append(faces.copy())
        probs = np.full((len(faces), len(EMOTIONS)), 0.01, np.float32)
        for i, face in enumerate(faces):
            probs[i, int(face.mean()) % len(EMOTIONS)] = 0.94
        probs[list(self.nan_for)] = np.nan
        return probs


@pytest.fixture()
def frame(rng) -> np.ndarray:
    return rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)


def test_faces_are_cut_with_the_models_preprocessing_and_classified_in_one_batch(frame):
    spy = Spy()
    analyzer = FaceAnalyzer(spy)
    boxes = [(10, 20, 60, 60), (150, 40, 80, 80), (280, 200, 50, 50)]  # the last one past the edge
    readings = analyzer.analyze(frame, boxes)
    assert len(spy.batches) == 1
    expected = np.stack([prepare_face(frame, spy.spec, b) for b in boxes])
    np.testing.assert_array_equal(spy.batches[0], expected)
    assert [r.index for r in readings] == [0, 1, 2] and [r.box for r in readings] == boxes
    for reading, crop in zip(readings, expected, strict=True):
        k = int(crop.mean()) % len(EMOTIONS)
        assert reading.label == EMOTIONS[k] and reading.score == pytest.approx(0.94)
        assert reading.probs.shape == (len(EMOTIONS),) and reading.readable
    assert analyzer.analyze(frame, []) == [] and len(spy.batches) == 1  # no faces: no model call


def test_a_face_too_small_to_read_is_uncertain_but_a_whole_image_crop_is_read(frame):
    analyzer = FaceAnalyzer(Spy(), min_readable_px=24)
    small, big = analyzer.analyze(frame, [(5, 5, 23, 23), (100, 100, 24, 24)])
    assert not small.readable and big.readable
    assert small.result(1).smoothed == UNCERTAIN and small.result(1).label in EMOTIONS
    assert small.result(1, "happy", 0.8).smoothed == UNCERTAIN  # smoothed or not
    assert big.result(2).smoothed == big.label
    # --no-detect: the whole 20x20 image is the face the user named, cut with no margin.
    tiny = frame[:20, :20]
    (whole,) = analyzer.analyze(tiny, None)
    assert whole.box == (0, 0, 20, 20) and whole.readable and whole.result(1).smoothed == whole.label
    np.testing.assert_array_equal(analyzer.crop(tiny), prepare_face(tiny, Spy().spec))


def test_a_reading_is_published_with_its_smoothed_label_or_its_own(frame):
    (reading,) = FaceAnalyzer(Spy()).analyze(frame, [(40, 40, 100, 100)])
    photo = reading.result(3)
    assert (photo.id, photo.box, photo.smoothed, photo.smoothed_score) == (
        3,
        reading.box,
        reading.label,
        reading.score,
    )
    assert (photo.label, photo.score) == (reading.label, reading.score) and photo.probs is reading.probs
    video = reading.result(7, "positive", 0.5)
    assert (video.id, video.label, video.smoothed, video.smoothed_score) == (
        7,
        reading.label,
        "positive",
        0.5,
    )


def test_non_finite_scores_are_left_out_with_one_warning_and_the_rest_keep_their_place(frame, caplog):
    analyzer = FaceAnalyzer(Spy(nan_for=(1,)))
    boxes = [(10, 20, 60, 60), (150, 40, 80, 80), (200, 150, 50, 50)]
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            readings = analyzer.analyze(frame, boxes)
            assert [r.index for r in readings] == [0, 2]
            assert all(np.isfinite(r.probs).all() for r in readings)
    assert analyzer.nonfinite == 3 and caplog.text.count("non-finite scores") == 1
    assert "[150, 40, 80, 80]" in caplog.text  # which face, so the model can be checked on it


def test_crops_and_boxes_must_pair_up(frame):
    analyzer = FaceAnalyzer(Spy())
    with pytest.raises(ValueError, match="2 crops for 1 boxes"):
        analyzer.read(analyzer.crops(frame, [(0, 0, 50, 50)] * 2), [(0, 0, 50, 50)])


class FixedFinder:
    """The faces `everything` found, as a pipeline's finder (every round finds them again)."""

    name = "fixed"

    def __init__(self, boxes: list) -> None:
        self.boxes = boxes

    def everything(self, image: np.ndarray) -> list:
        return list(self.boxes)

    def round(self, image: np.ndarray, tracked: list, lores: object = None) -> list:
        return list(self.boxes)

    def between(self, image: np.ndarray, tracked: list) -> list:
        return []


def test_the_daemon_and_edge_fer_classify_read_a_face_alike(shipped_model):
    """The shipped model, real photos of real faces found by the real detector: a video frame
    through the daemon's pipeline and a photo through edge-fer-classify give each face the same
    label, score and probabilities, as both go through one analyzer."""
    from edge_fer.apps.classify import classify_image
    from edge_fer.emotions.classifier import load_classifier
    from edge_fer.faces.detect import make_detector
    from edge_fer.faces.finder import FaceFinder
    from edge_fer.runtime.pipeline import Pipeline
    from edge_fer.sources.base import RawFrame

    config = DetectorConfig()
    finder = FaceFinder(lambda: make_detector(config), config)
    classifier = load_classifier(shipped_model)
    try:
        # Two sample portraits side by side, one scaled down: faces of two sizes in one image.
        left = cv2.imread(str(SAMPLES / "london_022_smiling.jpg"))
        right = cv2.resize(
            cv2.imread(str(SAMPLES / "london_064_neutral.jpg")), (200, 300), interpolation=cv2.INTER_AREA
        )
        image = np.zeros((600, 700, 3), np.uint8)
        image[:, :400], image[150:450, 450:650] = left, right
        boxes = finder.everything(image)
        assert len(boxes) == 2, boxes
        photo = classify_image(image, FixedFinder(boxes), FaceAnalyzer(classifier, 24))
        pipeline = Pipeline(FixedFinder(boxes), classifier, config, TrackerConfig(), SmoothingConfig())
        video = pipeline.step(RawFrame(image), 0.0, 0).faces
    finally:
        classifier.close()
    assert [f.id for f in photo] == [1, 2] and [f.id for f in video] == [1, 2]
    for p, v in zip(photo, video, strict=True):
        assert p.box == v.box and p.label == v.label and p.score == v.score
        np.testing.assert_array_equal(p.probs, v.probs)
    assert {f.label for f in photo} == {"happy", "neutral"}

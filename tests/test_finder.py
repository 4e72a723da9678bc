"""The far-face search (edge_fer.faces.finder): tiles cover every frame, passes merge to one box per
face, and on a 1080p room with real faces it finds small faces the shrunk detection image
cannot, keeps their ids apart when they sit close together, and names too-small faces
`uncertain`."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_fer.config import Config, ConfigError, DetectorConfig, SmoothingConfig, TrackerConfig, validate
from edge_fer.faces.finder import FaceFinder, merge, overlap, tile_grid
from edge_fer.faces.track import IoUTracker


@pytest.mark.fast
@settings(max_examples=200, deadline=None)
@given(
    w=st.integers(1, 5000),
    h=st.integers(1, 3000),
    tile=st.integers(64, 1024),
    shifted=st.booleans(),
)
def test_tiles_lie_in_the_frame_and_the_plain_grid_covers_all_of_it(w, h, tile, shifted):
    tiles = tile_grid((w, h), tile, shifted)
    assert tiles and all(x >= 0 and y >= 0 and x + tw <= w and y + th <= h for x, y, tw, th in tiles)
    if not shifted:
        covered = np.zeros((h, w), bool)
        for x, y, tw, th in tiles:
            covered[y : y + th, x : x + tw] = True
        assert covered.all()


@pytest.mark.fast
def test_merge_keeps_one_box_per_face_earlier_passes_first():
    window, tile, coarse = [(100, 100, 40, 40)], [(102, 98, 42, 42), (500, 500, 30, 30)], [(98, 101, 44, 44)]
    assert merge([window, tile, coarse]) == [(100, 100, 40, 40), (500, 500, 30, 30)]
    assert overlap((0, 0, 10, 10), (2, 2, 4, 4)) == 1.0 and overlap((0, 0, 10, 10), (20, 0, 5, 5)) == 0.0


@pytest.mark.fast
def test_a_partial_search_starts_new_tracks_without_missing_the_others():
    tracker = IoUTracker(TrackerConfig(0.3, max_missed=1))
    tracker.update([(0, 0, 50, 50)])
    new = tracker.add_new([(5, 5, 50, 50), (300, 300, 30, 30)])  # the first overlaps track 1
    assert [t.box for t in new] == [(300, 300, 30, 30)]
    assert [t.id for t in tracker.visible()] == [1, 2] and tracker.tracks[0].missed == 0


@pytest.mark.fast
def test_the_picamera2_lores_stream_follows_main_and_a_mismatch_is_refused():
    assert Config().camera.lores == (576, 324)
    config = Config()
    config.camera.main_size = (640, 480)
    assert config.camera.lores == (576, 432)
    config.camera.main_size = (1001, 333)
    w, h = config.camera.lores
    assert w % 2 == 0 and h % 2 == 0 and abs(w / h - 1001 / 333) < 0.02
    config.camera.main_size, config.camera.lores_size = (2304, 1296), (480, 360)
    with pytest.raises(ConfigError, match="camera.lores_size"):
        validate(config)


def _room(faces_u8: list[np.ndarray], places: list[tuple[int, int]], px: int, shift: int = 0) -> tuple:
    """A 1920x1080 BGR room with each face (in its oval head) at its place, and the true boxes."""
    import cv2

    from edge_fer.data.demo_video import face_patch

    rng = np.random.default_rng(len(places) + shift + 100)
    frame = np.full((1080, 1920), 110, np.uint8)
    boxes = []
    for face, (x, y) in zip(faces_u8, places, strict=True):
        patch = face_patch(face, px)
        x += shift
        frame[y : y + patch.shape[0], x : x + patch.shape[1]] = patch
        pad = (patch.shape[1] - px) // 2
        boxes.append((x + pad, y + pad, px, px))
    noisy = np.clip(frame + rng.normal(0, 2, frame.shape), 0, 255).astype(np.uint8)
    return cv2.cvtColor(noisy, cv2.COLOR_GRAY2BGR), boxes


def _pipeline(yunet_model, detector: DetectorConfig, smoothing: SmoothingConfig | None = None):
    from edge_fer.emotions.labels import EMOTIONS
    from edge_fer.emotions.preprocess import PreprocessSpec
    from edge_fer.faces.detect import make_detector
    from edge_fer.runtime.pipeline import Pipeline

    class Even:
        classes, spec = EMOTIONS, PreprocessSpec()

        def classify_batch(self, faces: np.ndarray) -> np.ndarray:
            out = np.full((len(faces), 7), 0.02, np.float32)
            out[:, 3] = 0.88
            return out

    detector = dataclasses.replace(detector, yunet_model=yunet_model)
    finder = FaceFinder(lambda: make_detector(detector), detector)
    return Pipeline(finder, Even(), detector, TrackerConfig(), smoothing or SmoothingConfig(window=1))


def _found(faces, truth_box) -> list:
    cx, cy = truth_box[0] + truth_box[2] / 2, truth_box[1] + truth_box[3] / 2
    return [
        f for f in faces if f.box[0] <= cx <= f.box[0] + f.box[2] and f.box[1] <= cy <= f.box[1] + f.box[3]
    ]


def test_small_faces_on_a_1080p_frame_are_found_and_keep_their_ids(public_faces, yunet_model):
    """Four 40 px faces, two of them side by side: the coarse pass alone finds none; the default
    search finds them within two sweeps of the tiles and every face keeps one id, its own."""
    from edge_fer.sources.base import RawFrame

    faces = [(public_faces.images[i] * 255).astype(np.uint8) if public_faces.images.dtype != np.uint8
             else public_faces.images[i] for i in range(4)]  # fmt: skip
    places = [(300, 200), (370, 200), (1400, 700), (900, 850)]  # the first two ~1.3 faces apart
    px = 40

    coarse = _pipeline(yunet_model, DetectorConfig(tile_zoom=0, track_zoom_px=0))
    frame, boxes = _room(faces, places, px)
    assert all(not coarse.step(RawFrame(frame), 0.0, i).faces for i in range(4))

    pipeline = _pipeline(yunet_model, DetectorConfig())
    ids: list[set[int]] = [set() for _ in boxes]
    seen_all_at = None
    for i in range(300):
        frame, boxes = _room(faces, places, px, shift=int(6 * np.sin(i / 15)))
        result = pipeline.step(RawFrame(frame), 0.0, i)
        hits = [_found(result.faces, b) for b in boxes]
        for k, h in enumerate(hits):
            assert len(h) <= 1, "one box per face"
            ids[k] |= {f.id for f in h}
        if seen_all_at is None and all(hits):
            seen_all_at = i
        if seen_all_at is not None and i > seen_all_at + 90:  # three seconds of tracking
            break
    assert seen_all_at is not None and seen_all_at <= 2 * pipeline.finder.sweep_frames
    assert all(len(s) == 1 for s in ids), f"ids swapped or restarted: {ids}"
    assert len(set().union(*ids)) == 4


@pytest.mark.fast
def test_a_face_that_appears_where_nothing_was_is_searched_for_at_once(public_faces, yunet_model):
    """Motion puts a tile ahead of the rotation: a new face far from the tile the rotation is
    at is found within a few frames, not a sweep later."""
    from edge_fer.sources.base import RawFrame

    face = public_faces.images[5]
    face = face if face.dtype == np.uint8 else (face * 255).astype(np.uint8)
    pipeline = _pipeline(yunet_model, DetectorConfig())
    empty, _ = _room([], [], 40)
    for i in range(10):
        assert not pipeline.step(RawFrame(empty), 0.0, i).faces
    assert pipeline.finder.sweep_frames > 30
    frame, boxes = _room([face], [(1700, 900)], 40)  # the far corner: last in the rotation
    found_at = next(
        (i for i in range(10, 40) if _found(pipeline.step(RawFrame(frame), 0.0, i).faces, boxes[0])), None
    )
    assert found_at is not None and found_at <= 14


def test_faces_under_the_readable_size_are_uncertain(public_faces, yunet_model):
    from edge_fer.sources.base import RawFrame

    face = public_faces.images[0]
    face = face if face.dtype == np.uint8 else (face * 255).astype(np.uint8)
    frame, boxes = _room([face, face], [(200, 200), (900, 500)], 40)
    frame2, boxes2 = _room([face], [(1200, 200)], 100)
    frame[200:400, 1200:1400] = frame2[200:400, 1200:1400]
    labels = {}
    for limit in (0, 60):
        pipeline = _pipeline(yunet_model, DetectorConfig(), SmoothingConfig(window=1, min_readable_px=limit))
        result = None
        for i in range(200):
            result = pipeline.step(RawFrame(frame), 0.0, i)
            if len(result.faces) == 3:
                break
        labels[limit] = sorted((f.box[2] > 60, f.smoothed) for f in result.faces)
    assert labels[0] == [(False, "happy"), (False, "happy"), (True, "happy")]
    assert labels[60] == [(False, "uncertain"), (False, "uncertain"), (True, "happy")]

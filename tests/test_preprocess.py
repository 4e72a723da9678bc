import numpy as np
import pytest

from edge_fer.emotions.preprocess import (
    PreprocessSpec,
    crop_face,
    faces_to_input,
    prepare_face,
    to_gray,
)


@pytest.mark.fast
def test_crop_face_pads_at_the_border_and_is_square():
    gray = np.arange(100 * 80, dtype=np.uint8).reshape(100, 80)
    crop = crop_face(gray, (-10, 70, 40, 30), margin=0.1)
    assert crop.shape == (48, 48)  # max(w, h) * 1.2
    assert crop_face(gray, (10, 10, 20, 20), 0.0).tolist() == gray[10:30, 10:30].tolist()


@pytest.mark.fast
def test_a_negative_margin_cuts_inside_the_box():
    gray = np.arange(100 * 100, dtype=np.uint16).astype(np.uint8).reshape(100, 100)
    # a 40 px box shrunk by 5% of its size on each side: the centred 36 px square
    assert crop_face(gray, (30, 30, 40, 40), -0.05).tolist() == gray[32:68, 32:68].tolist()


@pytest.mark.fast
def test_prepare_face_gives_model_sized_gray_faces(rng):
    bgr = rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
    face = prepare_face(bgr, PreprocessSpec(input_size=48), box=(100, 100, 150, 150))
    assert face.shape == (48, 48) and face.dtype == np.uint8
    x = faces_to_input(bgr, [(100, 100, 150, 150), (300, 50, 80, 90)], PreprocessSpec())
    assert x.shape == (2, 1, 48, 48) and x.dtype == np.float32
    assert -1.0 <= x.min() and x.max() <= 1.0
    assert faces_to_input(bgr, [], PreprocessSpec()).shape == (0, 1, 48, 48)


@pytest.mark.fast
def test_sharp_faces_pass_through_unblurred(rng):
    # FER2013 train is sharp again (2026-11-24): no face may be low-passed on its way in.
    sharp = rng.integers(0, 255, (48, 48), dtype=np.uint8)
    np.testing.assert_array_equal(prepare_face(sharp, PreprocessSpec()), sharp)
    assert "max_sharpness" not in PreprocessSpec().to_dict()
    old = {"input_size": 48, "margin": 0.1, "mean": 0.5, "std": 0.5, "max_sharpness": 4.0}
    assert PreprocessSpec.from_dict(old) == PreprocessSpec(margin=0.1)


@pytest.mark.fast
def test_to_gray_accepts_all_layouts(rng):
    bgr = rng.integers(0, 255, (10, 12, 3), dtype=np.uint8)
    for image in (bgr[:, :, 0], bgr[:, :, :1], bgr, np.dstack([bgr, bgr[:, :, :1]])):
        assert to_gray(image).shape == (10, 12)


@pytest.mark.fast
def test_a_color_frame_gives_the_same_face_as_its_gray_version():
    # The daemon crops color frames before converting, so the frame is never converted whole.
    rng = np.random.default_rng(7)
    frame = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    gray = to_gray(frame)
    spec = PreprocessSpec()
    for box in ((40, 30, 50, 50), (0, 0, 40, 40), (130, 90, 30, 30), (-5, 100, 30, 30)):
        np.testing.assert_array_equal(prepare_face(frame, spec, box), prepare_face(gray, spec, box))


@pytest.mark.fast
def test_training_evaluation_and_the_daemon_feed_the_model_identical_inputs(tmp_path):
    """One preprocessing function: the same face file gives the same model input whether it is
    loaded for training, by tools/evaluate.py's loader, or found in a frame by the daemon."""
    import cv2
    import torch

    from edge_fer.config import DetectorConfig, SmoothingConfig, TrackerConfig
    from edge_fer.data.fer2013 import load_eval_folder, load_image_folder
    from edge_fer.emotions.labels import EMOTIONS
    from edge_fer.emotions.preprocess import normalize
    from edge_fer.faces.finder import FaceFinder
    from edge_fer.runtime.pipeline import Pipeline
    from edge_fer.sources.base import RawFrame
    from edge_fer.training.loop import to_input

    rng = np.random.default_rng(3)
    face = rng.integers(0, 256, (48, 48), dtype=np.uint8)
    (tmp_path / "happy").mkdir()
    cv2.imwrite(str(tmp_path / "happy" / "PublicTest_1.png"), face)
    spec = PreprocessSpec()

    training = to_input(torch.from_numpy(load_image_folder(tmp_path, spec).images), spec).numpy()
    evaluation = normalize(load_eval_folder(tmp_path, spec).images, spec)

    seen = []

    class Spy:
        classes = EMOTIONS

        def __init__(self) -> None:
            self.spec = spec

        def classify_batch(self, faces: np.ndarray) -> np.ndarray:
            seen.append(normalize(faces, self.spec))
            return np.full((len(faces), 7), 1 / 7, np.float32)

    class WholeImage:
        name = "stub"

        def detect(self, image: np.ndarray) -> list:
            return [(0, 0, image.shape[1], image.shape[0])]

    frame = cv2.cvtColor(cv2.imread(str(tmp_path / "happy" / "PublicTest_1.png")), cv2.COLOR_BGR2BGRA)
    near = DetectorConfig(detect_width=48, tile_zoom=0, track_zoom_px=0)  # the whole frame only
    pipeline = Pipeline(FaceFinder(WholeImage, near), Spy(), near, TrackerConfig(), SmoothingConfig())
    pipeline.step(RawFrame(frame[:, :, :3]), 0.0, 0)
    daemon = seen[0]
    np.testing.assert_array_equal(training, evaluation)
    np.testing.assert_array_equal(training, daemon)


def test_yunet_boxes_are_cut_like_fer2013_crops(data_dir, yunet_model):
    """The daemon crops YuNet's faces where FER2013 cropped them (the classifier's training
    convention), measured on train faces by the tool that set the mapping."""
    import subprocess
    import sys
    from pathlib import Path

    tool = Path(__file__).resolve().parents[1] / "tools" / "measure_face_boxes.py"
    rows = {}
    for raw in (False, True):
        out = subprocess.run(
            [sys.executable, str(tool), "--faces", "80", "--data", str(data_dir),
             "--yunet-model", str(yunet_model), *(["--raw"] if raw else [])],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        cells = [c.strip() for c in next(r for r in out.splitlines() if r.startswith("| yunet")).split("|")]
        rows[raw] = {"dy": float(cells[4]), "side": float(cells[5])}
    assert rows[True]["side"] > 1.05 and rows[True]["dy"] > 0.015  # YuNet's own box: larger, lower
    assert abs(rows[False]["side"] - 1) < 0.03 and abs(rows[False]["dy"]) < 0.012


@pytest.mark.fast
def test_demo_faces_reach_the_video_unblended(rng):
    """The demo feathers each face into its head outside FER2013's crop, never inside it, so
    bench_e2e's gap measures the daemon and not the compositing."""
    import cv2

    from edge_fer.data.demo_video import face_patch

    face = rng.integers(0, 255, (48, 48), dtype=np.uint8)
    for size in (64, 120, 201):
        patch, pad = face_patch(face, size), size // 3
        inner = cv2.resize(face, (size, size), interpolation=cv2.INTER_CUBIC)
        assert patch.shape == (size + 2 * pad,) * 2
        np.testing.assert_array_equal(patch[pad : pad + size, pad : pad + size], inner)
        assert abs(int(patch[0, 0]) - 110) <= 2  # the plain surround at the corners

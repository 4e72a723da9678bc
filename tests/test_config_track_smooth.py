from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_fer.config import ConfigError, SmoothingConfig, TrackerConfig, apply_overrides, load_config
from edge_fer.emotions.labels import EMOTIONS, LABEL_GROUPS, UNCERTAIN, published_labels
from edge_fer.emotions.preprocess import PreprocessSpec
from edge_fer.emotions.smooth import LabelSmoother
from edge_fer.faces.track import IoUTracker, iou

pytestmark = pytest.mark.fast

ROOT = Path(__file__).resolve().parents[1]


def test_example_config_is_valid():
    config = load_config(ROOT / "deploy" / "config.example.yaml")
    assert (
        config.detector.kind == "yunet"
        and config.detector.yunet_file.is_file()
        and config.smoothing.window == 30
    )


def test_example_config_documents_every_field_from_its_definition():
    """deploy/config.example.yaml is generated from the fields' descriptions and limits."""
    from edge_fer.config import example_yaml

    assert (ROOT / "deploy" / "config.example.yaml").read_text() == example_yaml(), (
        "regenerate it: python -m edge_fer.config > deploy/config.example.yaml"
    )
    assert "smoothing:" in example_yaml() and "(a positive number up to 1000)" in example_yaml()


def test_cli_choices_come_from_the_config_fields():
    from edge_fer.apps.daemon import parse_args
    from edge_fer.config import choices
    from edge_fer.emotions.classifier import RUNTIMES

    assert RUNTIMES == choices("model.runtime") == ("auto", "native", "pybind")
    with pytest.raises(SystemExit):
        parse_args(["--display", "hdmi"])
    assert parse_args(["--display", "drm"]).display == "drm"


@pytest.mark.parametrize(
    "text, message",
    [
        ("detector: {kind: dnn}", "'detector.kind': 'dnn' is not valid; expected one of haar, yunet"),
        ("smoothing: {window: 0}", "'smoothing.window': 0 is not valid; expected a positive number"),
        ("camera: {main_size: [640]}", "'camera.main_size'"),
        ("tracker: {iou_threshold: 1.5}", "between 0 and 1"),
        ("colour: red", "unknown config key 'colour'"),
        ("camera: 3", "section 'camera' must be a mapping"),
        ("source: usb", "'source': 'usb' is not valid"),
        ("model: {threads: two}", "'model.threads': 'two' is not valid; expected an integer"),
        ("a: [1, 2", "not valid YAML at line"),
        ("stats: {interval_s: .nan}", "'stats.interval_s': nan is not valid; expected a finite number"),
        ("stats: {window_s: .inf}", "'stats.window_s': inf is not valid; expected a finite number"),
        ("camera: {index: -1}", "'camera.index': -1 is not valid; expected a number >= 0"),
        (
            "model: {threads: 100000}",
            "'model.threads': 100000 is not valid; expected a positive number up to 16",
        ),
        ("stats: {interval_s: 0.001}", "'stats.interval_s': 0.001 is not valid"),
        ("source: ''", "'source': '' is not valid"),
    ],
)
def test_bad_config_names_key_value_and_allowed(tmp_path, text, message):
    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("(", r"\(")):
        load_config(path)


def test_unreadable_config_files_give_config_errors(tmp_path):
    bad_bytes = tmp_path / "latin1.yaml"
    bad_bytes.write_bytes(b"source: caf\xe9\n")
    with pytest.raises(ConfigError, match="not UTF-8 text"):
        load_config(bad_bytes)
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(tmp_path)
    locked = tmp_path / "locked.yaml"
    locked.write_text("smoothing: {window: 3}\n")
    locked.chmod(0)
    import os

    if os.geteuid() != 0:  # root reads anything
        with pytest.raises(ConfigError, match="not readable by this user"):
            load_config(locked)
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config(tmp_path / "list.yaml")


def test_missing_config_file_and_overrides(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    config = apply_overrides(load_config(None), {"display.mode": "none", "model.threads": 4})
    assert config.display.mode == "none" and config.model.threads == 4
    with pytest.raises(ConfigError, match="display.mode"):
        apply_overrides(config, {"display.mode": "hdmi"})


def test_tracker_keeps_ids_and_drops_faces_that_leave():
    tracker = IoUTracker(TrackerConfig(iou_threshold=0.3, max_missed=1))
    tracks, _ = tracker.update([(0, 0, 50, 50), (200, 0, 50, 50)])
    ids = {t.box[0]: t.id for t in tracks}
    tracks, _ = tracker.update([(205, 3, 50, 50), (4, 2, 50, 50)])  # moved a little, reordered
    assert {t.box[0]: t.id for t in tracks} == {4: ids[0], 205: ids[200]}
    tracks, dropped = tracker.update([(6, 2, 50, 50)])  # the right face is missed once: kept
    assert dropped == [] and len(tracker.tracks) == 2 and len(tracks) == 1
    tracks, dropped = tracker.update([(8, 2, 50, 50)])  # missed twice: dropped
    assert dropped == [ids[200]]
    tracks, _ = tracker.update([(8, 2, 50, 50), (400, 300, 40, 40)])
    assert sorted(t.id for t in tracks) == [ids[0], max(ids.values()) + 1]
    assert iou((0, 0, 10, 10), (5, 0, 10, 10)) == pytest.approx(50 / 150)


def test_reassign_gives_a_track_a_fresh_id_that_settles_over_the_next_detection():
    tracker = IoUTracker(TrackerConfig(iou_threshold=0.3, max_missed=1))
    tracks, _ = tracker.update([(0, 0, 50, 50), (200, 0, 50, 50)])
    left = tracks[0]
    assert tracker.reassign(left.id) == 3 and left.id == 3  # above every id given so far
    assert tracker.reassign(3) == 3  # the same round: the box is the previous face's, no new face
    tracks, _ = tracker.update([(2, 0, 50, 50), (200, 0, 50, 50)])  # the detection that re-boxes it
    assert tracker.reassign(3) == 3 and sorted(t.id for t in tracks) == [2, 3]
    tracker.update([(2, 0, 50, 50), (200, 0, 50, 50)])  # settled: a change now is someone new
    assert tracker.reassign(3) == 4 and tracker.reassign(2) == 5
    tracks, _ = tracker.update([(2, 0, 50, 50), (200, 0, 50, 50), (400, 0, 40, 40)])
    assert sorted(t.id for t in tracks) == [4, 5, 6]  # and the ids keep growing after it
    with pytest.raises(KeyError):
        tracker.reassign(1)  # that id is gone


def _probs(**given: float) -> np.ndarray:
    """7 emotion probabilities: the named ones, the rest sharing what is left."""
    p = np.full(len(EMOTIONS), (1 - sum(given.values())) / (len(EMOTIONS) - len(given)))
    for name, value in given.items():
        p[EMOTIONS.index(name)] = value
    return p


def _smoothing(**values: object) -> SmoothingConfig:
    """A smoothing section with only the named behaviours: no hysteresis, never uncertain."""
    return SmoothingConfig(**{"hysteresis": 0.0, "uncertain_below": 0.0, **values})


def test_components_take_their_config_section_and_its_defaults():
    """A default exists once, in the config: a component built without a section uses it."""
    smoother, tracker = LabelSmoother(), IoUTracker()
    config = load_config(None)
    assert (smoother.window, smoother.hysteresis, smoother.uncertain_below) == (
        config.smoothing.window,
        config.smoothing.hysteresis,
        config.smoothing.uncertain_below,
    )
    assert (tracker.iou_threshold, tracker.max_missed) == (
        config.tracker.iou_threshold,
        config.tracker.max_missed,
    )
    from edge_fer.emotions.smooth import AppearanceCheck

    assert AppearanceCheck().restart_below == config.smoothing.restart_below
    custom = LabelSmoother(SmoothingConfig(window=9, groups="valence"))
    assert custom.window == 9 and custom.names == tuple(LABEL_GROUPS["valence"])


def test_smoother_soft_majority_and_forgetting():
    s = LabelSmoother(_smoothing(window=3))
    # A confident "sad" frame outweighs two weak "happy" ones: the majority is over probabilities.
    labels = [s.update(1, p)[0] for p in [_probs(happy=0.4), _probs(happy=0.4), _probs(sad=0.9)]]
    assert labels == ["happy", "happy", "sad"]
    label, score = s.update(2, _probs(fear=0.8))
    assert label == "fear" and score == pytest.approx(0.8) and len(s) == 2
    s.forget([1])
    assert len(s) == 1 and s.update(1, _probs(angry=0.7))[0] == "angry"


def test_smoother_follows_a_new_face_for_its_first_frames_then_holds():
    """For `follow_frames` frames the label is the mean's argmax; after that a near-tie holds."""
    s = LabelSmoother(_smoothing(window=30, hysteresis=0.2), follow_frames=3)
    a, b = _probs(fear=0.5, angry=0.3), _probs(fear=0.2, angry=0.6)
    assert [s.update(1, p)[0] for p in (a, b)] == ["fear", "angry"]  # 0.35/0.45: follows
    # from the third frame on the margin holds: fear must beat angry by 0.2 to take over
    assert [s.update(1, a)[0] for _ in range(3)] == ["angry"] * 3


def test_smoother_hysteresis_holds_a_near_tie():
    s = LabelSmoother(_smoothing(window=4, hysteresis=0.1))
    tie = [_probs(fear=0.45, angry=0.40), _probs(fear=0.40, angry=0.45)]
    assert {s.update(1, tie[i % 2])[0] for i in range(20)} == {"fear"}  # never flips to angry
    flips = [s.update(1, _probs(angry=0.8))[0] for _ in range(4)]
    assert flips[-1] == "angry"  # a clear change still gets through
    plain = LabelSmoother(_smoothing(window=1))
    assert len({plain.update(1, tie[i % 2])[0] for i in range(4)}) == 2  # without: it alternates


def test_smoother_says_uncertain_when_evidence_is_weak():
    s = LabelSmoother(_smoothing(window=2, uncertain_below=0.5))
    label, score = s.update(1, _probs(happy=0.3, sad=0.25))
    assert label == UNCERTAIN and score == pytest.approx(0.3)
    assert s.update(1, _probs(happy=0.9)) == ("happy", pytest.approx(0.6))


@pytest.mark.parametrize("groups", sorted(LABEL_GROUPS))
def test_smoother_groups_sum_the_calibrated_probabilities(groups):
    s = LabelSmoother(_smoothing(window=1, groups=groups))
    p = _probs(angry=0.3, disgust=0.25, happy=0.2)
    label, score = s.update(1, p)
    sums = {
        name: sum(p[EMOTIONS.index(e)] for e in members) for name, members in LABEL_GROUPS[groups].items()
    }
    assert label == max(sums, key=sums.get) and score == pytest.approx(max(sums.values()))
    assert set(published_labels(groups)) == {*LABEL_GROUPS[groups], UNCERTAIN}


def test_appearance_check_tells_a_new_face_from_the_same_one_moving(public_faces):
    """Real faces: the same face a pixel or two off with camera noise keeps its history;
    another face in its place restarts it."""
    import cv2
    import numpy as np

    from edge_fer.emotions.smooth import AppearanceCheck

    rng = np.random.default_rng(0)
    images = public_faces.images[:200]
    same = other = 0
    for i, face in enumerate(images):
        check = AppearanceCheck(SmoothingConfig())
        assert not check.changed(1, face)  # nothing to compare with yet
        dx, dy = rng.integers(0, 3, 2)
        moved = cv2.resize(face[dy : dy + 46, dx : dx + 46], (48, 48))
        noisy = np.clip(moved + rng.normal(0, 3, moved.shape), 0, 255).astype(np.uint8)
        same += check.changed(1, noisy)
        other += check.changed(1, images[(i + 1) % len(images)])
    assert same <= 2, f"{same} of 200 moved faces looked new"
    assert other >= 150, f"only {other} of 200 swapped faces looked new"
    flat = AppearanceCheck.look(np.full((48, 48), 128, np.uint8))
    assert not AppearanceCheck(SmoothingConfig(restart_below=0)).changed(1, images[0])
    assert AppearanceCheck.similarity(flat, AppearanceCheck.look(images[0])) == pytest.approx(0, abs=1e-6)


def test_appearance_check_absorbs_a_shift_of_two_of_sixteen_pixels(public_faces):
    """A face that moved by 6 of its 48 px (2 of the look's 16) matches itself exactly where the
    windows overlap; a plain correlation without the shift search would not."""
    import numpy as np

    from edge_fer.emotions.smooth import AppearanceCheck

    face = public_faces.images[3]
    base = AppearanceCheck.look(face)
    moved = np.roll(base, (2, -2), axis=(0, 1))
    assert AppearanceCheck.similarity(base, moved) == pytest.approx(1.0, abs=1e-5)
    plain = np.corrcoef(base.ravel(), moved.ravel())[0, 1]
    assert plain < 0.9


def test_a_new_face_in_the_same_place_restarts_its_smoothing(public_faces):
    """One box, face A for 5 frames then face B: with the check on, B is a new face (a new
    id) whose label shows at once; with it off, the rolling majority keeps A's label for
    several frames under A's id."""
    import numpy as np

    from edge_fer.config import DetectorConfig, SmoothingConfig, TrackerConfig
    from edge_fer.emotions.labels import EMOTIONS
    from edge_fer.emotions.preprocess import PreprocessSpec
    from edge_fer.faces.finder import FaceFinder
    from edge_fer.runtime.pipeline import Pipeline
    from edge_fer.sources.base import RawFrame

    a, b = public_faces.images[0], public_faces.images[1]
    spec = PreprocessSpec()

    class ByFace:
        classes = EMOTIONS

        def __init__(self) -> None:
            self.spec = spec

        def classify_batch(self, faces: np.ndarray) -> np.ndarray:
            out = np.zeros((len(faces), 7), np.float32)
            for row, face in zip(out, faces, strict=True):
                row[EMOTIONS.index("happy" if np.abs(face.astype(int) - a).mean() < 1 else "sad")] = 1
            return out

    class OneBox:
        name = "stub"

        def detect(self, image: np.ndarray) -> list:
            return [(0, 0, 48, 48)]

    def smoothed(restart_below: float) -> tuple[list[str], list[int]]:
        near = DetectorConfig(detect_width=48, every_n_frames=2, tile_zoom=0, track_zoom_px=0)
        pipeline = Pipeline(
            FaceFinder(OneBox, near), ByFace(), near, TrackerConfig(),
            SmoothingConfig(window=7, restart_below=restart_below),
        )  # fmt: skip
        frames = [a] * 5 + [b] * 5  # the swap falls between two detections (frame 5 is not one)
        results = [
            pipeline.step(RawFrame(np.repeat(f[:, :, None], 3, 2)), 0.0, i) for i, f in enumerate(frames)
        ]
        return [r.faces[0].smoothed for r in results], [r.faces[0].id for r in results]

    labels, ids = smoothed(0.7)
    assert labels == ["happy"] * 5 + ["sad"] * 5
    assert ids == [1] * 5 + [2] * 5  # B is a new face from its first frame, and stays one
    labels, ids = smoothed(0.0)
    assert labels[5:8] == ["happy"] * 3 and ids == [1] * 10  # the check off: the track's id stays


def test_a_face_swapped_between_detections_is_one_new_face_when_its_box_is_corrected(public_faces):
    """B replaces A between two detections, so B's first frame is cut with A's box; the next
    detection boxes B (a bigger face), which changes its look again: still one new face."""
    from edge_fer.config import DetectorConfig, SmoothingConfig, TrackerConfig
    from edge_fer.faces.finder import FaceFinder
    from edge_fer.runtime.pipeline import Pipeline
    from edge_fer.sources.base import RawFrame

    a = cv2.resize(public_faces.images[0], (60, 60))
    b = cv2.resize(public_faces.images[1], (100, 100))  # its box still overlaps A's (IoU 0.36)

    def scene(face: np.ndarray) -> np.ndarray:
        image = np.full((120, 120), 128, np.uint8)
        image[10 : 10 + len(face), 10 : 10 + len(face)] = face
        return np.repeat(image[:, :, None], 3, 2)

    class WhereTheFaceIs:
        name = "stub"
        size = 60

        def detect(self, image: np.ndarray) -> list:
            return [(10, 10, self.size, self.size)]

    class Constant:
        classes = EMOTIONS
        spec = PreprocessSpec()

        def classify_batch(self, faces: np.ndarray) -> np.ndarray:
            return np.tile(np.eye(7, dtype=np.float32)[3], (len(faces), 1))

    detector = WhereTheFaceIs()
    near = DetectorConfig(detect_width=120, every_n_frames=2, tile_zoom=0, track_zoom_px=0)
    pipeline = Pipeline(
        FaceFinder(lambda: detector, near),
        Constant(),
        near,
        TrackerConfig(),
        SmoothingConfig(restart_below=0.7),
    )
    ids = []
    for i in range(12):
        face = a if i < 5 else b
        detector.size = len(face)
        ids.append(pipeline.step(RawFrame(scene(face)), 0.0, i).faces[0].id)
    assert ids == [1] * 5 + [2] * 7, ids
    assert pipeline.appearance._looks.keys() == {2}  # the old face's look is not kept

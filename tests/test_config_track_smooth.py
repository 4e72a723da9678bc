from pathlib import Path

import pytest

from edge_fer.config import ConfigError, apply_overrides, load_config
from edge_fer.smooth import LabelSmoother
from edge_fer.track import IoUTracker, iou

ROOT = Path(__file__).resolve().parents[1]


def test_example_config_is_valid():
    config = load_config(ROOT / "deploy" / "config.example.yaml")
    assert config.detector.kind == "haar" and config.smoothing.window == 7


@pytest.mark.parametrize("text, message", [
    ("detector: {kind: dnn}", "'detector.kind': 'dnn' is not valid; expected one of haar, yunet"),
    ("smoothing: {window: 0}", "'smoothing.window': 0 is not valid; expected a positive number"),
    ("camera: {main_size: [640]}", "'camera.main_size'"),
    ("tracker: {iou_threshold: 1.5}", "between 0 and 1"),
    ("colour: red", "unknown config key 'colour'"),
    ("camera: 3", "section 'camera' must be a mapping"),
    ("source: usb", "'source': 'usb' is not valid"),
    ("detector: {kind: yunet}", "'detector.yunet_model' is required"),
    ("model: {threads: two}", "'model.threads': 'two' is not valid; expected an integer"),
    ("a: [1, 2", "not valid YAML at line"),
])
def test_bad_config_names_key_value_and_allowed(tmp_path, text, message):
    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("(", r"\(")):
        load_config(path)


def test_missing_config_file_and_overrides(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    config = apply_overrides(load_config(None), {"display.mode": "none", "model.threads": 4})
    assert config.display.mode == "none" and config.model.threads == 4
    with pytest.raises(ConfigError, match="display.mode"):
        apply_overrides(config, {"display.mode": "hdmi"})


def test_tracker_keeps_ids_and_drops_faces_that_leave():
    tracker = IoUTracker(iou_threshold=0.3, max_missed=1)
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


def test_smoother_majority_ties_and_forgetting():
    s = LabelSmoother(window=3)
    assert [s.update(1, x) for x in ["happy", "sad", "happy", "sad", "sad"]] == \
        ["happy", "sad", "happy", "sad", "sad"]
    assert s.update(2, "fear") == "fear" and len(s) == 2
    s.forget([1])
    assert len(s) == 1 and s.update(1, "angry") == "angry"

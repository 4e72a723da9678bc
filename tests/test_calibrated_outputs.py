"""Calibrated scores and the honest `uncertain`, through the daemon's real outputs (events,
MQTT) with the shipped program and copies whose metadata carry another calibration map."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge_fer.emotions.classifier import ModelError, PteClassifier, softmax
from edge_fer.emotions.labels import EMOTIONS, LABEL_GROUPS, UNCERTAIN
from edge_fer.emotions.preprocess import normalize

ROOT = Path(__file__).resolve().parents[1]


def model_with(tmp_path: Path, shipped: Path, calibration: object) -> Path:
    """A copy of the shipped program whose metadata says `calibration`."""
    folder = tmp_path / f"model_{len(list(tmp_path.glob('model_*')))}"
    folder.mkdir()
    pte = folder / shipped.name
    shutil.copy(shipped, pte)
    meta = json.loads(shipped.with_suffix(".json").read_text())
    meta["calibration"] = calibration
    pte.with_suffix(".json").write_text(json.dumps(meta))
    return pte


def run_daemon(tmp_path: Path, model: Path, video: Path, smoothing: dict, *extra: str) -> list[dict]:
    tmp_path = model.parent  # one folder per model copy: config, events, stats
    config = tmp_path / "config.yaml"
    config.write_text(json.dumps({"smoothing": smoothing}))  # JSON is YAML
    events = tmp_path / "events.jsonl"
    cmd = [sys.executable, "-m", "edge_fer.apps.daemon", "--config", str(config), "--source", f"file:{video}",
           "--display", "none", "--model", str(model), "--stats-path", str(tmp_path / "stats.json"),
           "--events-jsonl", str(events), "--max-frames", "45", "--console", "off", *extra]  # fmt: skip
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return [f for line in events.read_text().splitlines() for f in json.loads(line)["faces"]]


def test_scores_are_the_softmax_at_the_metadata_temperature(tmp_path, shipped_model, public_faces):
    faces = public_faces.images[:40]
    plain = PteClassifier(shipped_model)
    logits = plain.logits(normalize(faces, plain.spec))
    hot = PteClassifier(model_with(tmp_path, shipped_model, {"temperature": 0.5}))
    assert hot.calibration.scale == (2.0,) * 7 and hot.calibration.bias == (0.0,) * 7
    np.testing.assert_allclose(hot.classify_batch(faces), softmax(logits / 0.5), atol=1e-5)
    assert (hot.classify_batch(faces).argmax(1) == logits.argmax(1)).all()  # labels unchanged


@pytest.mark.fast
@pytest.mark.parametrize("bad", [0, -1, 1e9, "cold", True, None, [], {"temperature": "1"}])
def test_a_bad_temperature_is_a_model_error(tmp_path, shipped_model, bad):
    calibration = bad if isinstance(bad, dict) else {"temperature": bad}
    with pytest.raises(ModelError, match="calibration.temperature"):
        PteClassifier(model_with(tmp_path, shipped_model, calibration))


@pytest.mark.fast
def test_scores_are_the_softmax_of_the_vector_scaled_logits(tmp_path, shipped_model, public_faces):
    faces = public_faces.images[:40]
    plain = PteClassifier(shipped_model)
    logits = plain.logits(normalize(faces, plain.spec))
    scale, bias = [0.5, 1, 1.5, 2, 1, 0.8, 1.2], [0, -1, 0.5, 0, 0.25, 0, -0.5]
    mapped = PteClassifier(model_with(tmp_path, shipped_model, {"scale": scale, "bias": bias}))
    expected = softmax(logits * np.float32(scale) + np.float32(bias))
    np.testing.assert_allclose(mapped.classify_batch(faces), expected, atol=1e-5)


@pytest.mark.fast
@pytest.mark.parametrize(
    "bad",
    [
        {"scale": [1] * 7},  # no bias
        {"bias": [0] * 7},
        {"scale": [1] * 6, "bias": [0] * 7},
        {"scale": [1] * 7, "bias": [0] * 8},
        {"scale": [0] * 7, "bias": [0] * 7},
        {"scale": [1] * 6 + [-1], "bias": [0] * 7},
        {"scale": [1] * 7, "bias": [0] * 6 + [1e9]},
        {"scale": [1] * 6 + [True], "bias": [0] * 7},
        {"scale": "1111111", "bias": [0] * 7},
        {"scale": [1] * 7, "bias": [0] * 6 + [None]},
        {"scale": [1] * 7, "bias": [0] * 7, "temperature": 1.0},
    ],
)
def test_a_bad_vector_calibration_is_a_one_line_model_error(tmp_path, shipped_model, bad):
    with pytest.raises(ModelError, match=r"calibration(\.scale|\.bias| gives both)") as info:
        PteClassifier(model_with(tmp_path, shipped_model, bad))
    assert "\n" not in str(info.value) and "tools/calibrate.py" in str(info.value)


@pytest.mark.fast
def test_the_shipped_model_is_calibrated(shipped_model, public_faces):
    meta = json.loads(shipped_model.with_suffix(".json").read_text())
    cal = meta["calibration"]
    assert len(cal["scale"]) == len(cal["bias"]) == 7 and cal["ece_after"] < cal["ece_before"]
    # Its calibrated labels are the model's own labels on nearly every face.
    classifier = PteClassifier(shipped_model)
    raw = classifier.logits(normalize(public_faces.images, classifier.spec)).argmax(1)
    calibrated = classifier.classify_batch(public_faces.images).argmax(1)
    assert (raw == calibrated).mean() > 0.95


def test_events_say_uncertain_when_the_evidence_is_weak(tmp_path, shipped_model, demo_video):
    # A very high temperature flattens every face's probabilities towards 1/7: all uncertain.
    flat = run_daemon(tmp_path, model_with(tmp_path, shipped_model, {"temperature": 20}), demo_video,
                      {"uncertain_below": 0.3})  # fmt: skip
    assert flat and all(f["smoothed"] == UNCERTAIN and f["smoothed_score"] < 0.3 for f in flat)
    assert all(f["label"] in EMOTIONS for f in flat)  # the per-frame label is still named
    # A very low one makes the model sure of itself: never uncertain, scores near 1.
    sharp = run_daemon(tmp_path, model_with(tmp_path, shipped_model, {"temperature": 0.05}), demo_video,
                       {"uncertain_below": 0.3})  # fmt: skip
    assert sharp and all(f["smoothed"] in EMOTIONS for f in sharp)
    assert all(f["score"] > 0.9 for f in sharp) and np.median([f["smoothed_score"] for f in sharp]) > 0.9


@pytest.mark.parametrize("groups", ["valence", "four"])
def test_events_publish_label_groups(tmp_path, shipped_model, demo_video, groups):
    model = model_with(tmp_path, shipped_model, {"temperature": 1.0})
    faces = run_daemon(tmp_path, model, demo_video, {"groups": groups, "uncertain_below": 0.2})
    names = set(LABEL_GROUPS[groups])
    assert faces and {f["smoothed"] for f in faces} <= names | {UNCERTAIN}
    assert {f["smoothed"] for f in faces} & names


def test_mqtt_says_uncertain_and_lists_it_for_home_assistant(tmp_path, shipped_model, demo_video):
    integrations = pytest.importorskip("test_integrations")
    if integrations.MOSQUITTO is None:
        pytest.skip("mosquitto not installed (apt install mosquitto)")
    broker = integrations.Broker(tmp_path)
    sub = integrations.Subscriber(broker.port)
    try:
        run_daemon(tmp_path, model_with(tmp_path, shipped_model, {"temperature": 20}), demo_video,
                   {"uncertain_below": 0.3}, "--mqtt", f"mqtt://127.0.0.1:{broker.port}")  # fmt: skip
        assert sub.wait_for("/availability", "offline", timeout=5)
        states = [json.loads(p) for _, _, p, _ in sub.topics("/state")]
        assert any(s["faces"] >= 1 for s in states)
        assert all(s["emotion"] in (UNCERTAIN, None) for s in states if s["faces"])
        assert all(s["score"] is None or s["score"] < 0.3 for s in states)
        configs = {t: json.loads(p) for _, t, p, _ in sub.topics("/config")}
        emotion = next(c for t, c in configs.items() if t.endswith("/emotion/config"))
        assert UNCERTAIN in emotion["options"] and set(EMOTIONS) <= set(emotion["options"])
    finally:
        sub.close()
        broker.stop()

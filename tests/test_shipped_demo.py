"""The demo that ships in the package (edge_fer/samples/): real faces under a licence that allows
redistribution, named in the files themselves; the daemon's `auto` source reaches it when there
is no camera and no FER2013 demo; the shipped detector and model see what the photos show."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import cv2
import pytest

from edge_fer.config import DEFAULT_DEMO_VIDEO, load_config
from edge_fer.core.paths import SAMPLES_DIR, SHIPPED_DEMO_VIDEO, SHIPPED_YUNET
from edge_fer.data.sample_video import PAIRS, photo_path, read_mp4_metadata
from edge_fer.faces.detect import YuNetDetector
from edge_fer.sources.capture import CaptureError, OpenCVSource, fallback_chain, make_source

ROOT = Path(__file__).resolve().parents[1]
LICENCE = "CC BY 4.0"
DOI = "10.6084/m9.figshare.5047666"


@pytest.mark.fast
def test_the_material_names_its_source_and_licence_everywhere():
    notice = (SAMPLES_DIR / "ATTRIBUTION.md").read_text()
    assert "Face Research Lab London Set" in notice and LICENCE in notice and DOI in notice
    assert "Attribution 4.0 International" in (SAMPLES_DIR / "LICENSE-CC-BY-4.0.md").read_text()
    tags = read_mp4_metadata(SHIPPED_DEMO_VIDEO)
    assert LICENCE in tags["\xa9cmt"] and DOI in tags["\xa9cmt"] and "DeBruine" in tags["\xa9ART"]
    from PIL import Image  # the dev extra's

    for pair in PAIRS:
        for face_id in pair:
            for pose in ("neutral", "smiling"):
                exif = Image.open(photo_path(face_id, pose)).getexif()
                assert LICENCE in exif[0x010E] and DOI in exif[0x010E] and "DeBruine" in exif[0x013B]
    shipped = [p for p in SAMPLES_DIR.iterdir() if p.is_file()]
    assert sum(p.stat().st_size for p in shipped) < 2_000_000, "the demo is meant to stay small in git"
    # ... and it is package data, so a regular install (deploy/install.sh) has it too
    assert "samples/*.mp4" in (ROOT / "setup.cfg").read_text()


def test_the_video_plays_and_yunet_finds_both_people():
    meta = json.loads(SHIPPED_DEMO_VIDEO.with_suffix(".json").read_text())
    cap = cv2.VideoCapture(str(SHIPPED_DEMO_VIDEO))
    assert cap.get(cv2.CAP_PROP_FPS) == meta["fps"] == 30
    detector = YuNetDetector(SHIPPED_YUNET)
    frames = found = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        if frames % 60 == 0:
            assert frame.shape == (480, 640, 3)
            boxes = detector.detect(frame)
            found += len(boxes) == 2 and {b[0] + b[2] // 2 < 320 for b in boxes} == {True, False}
        frames += 1
    assert frames == meta["frames"] == 720 and found == 12, (frames, found)


def test_the_model_reads_the_photos_as_the_people_posed():
    """`edge-fer-classify` on the shipped photos (the README's photo example): every photo has
    its face found, and the model names most smiles happy and most neutral faces neutral."""
    proc = subprocess.run(
        [sys.executable, "-m", "edge_fer.apps.classify", str(SAMPLES_DIR)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(rows) == 16 and all(r["face"] == 1 for r in rows)
    by_pose = {
        pose: Counter(r["label"] for r in rows if f"_{pose}." in r["image"])
        for pose in ("neutral", "smiling")
    }
    assert by_pose["smiling"]["happy"] >= 7 and by_pose["neutral"]["neutral"] >= 6, by_pose


@pytest.mark.fast
def test_auto_without_a_camera_plays_the_fer2013_demo_then_the_shipped_one(tmp_path):
    config = load_config(None)
    assert config.fallback_video == DEFAULT_DEMO_VIDEO
    assert fallback_chain(config.fallback_video) == [DEFAULT_DEMO_VIDEO, SHIPPED_DEMO_VIDEO]
    assert fallback_chain(None) == []
    config.camera.index = 7  # no webcam at /dev/video7 here
    fer_demo = tmp_path / "faces_640x480.mp4"
    source = make_source("auto", config.camera, fer_demo)  # no FER2013 demo built
    assert isinstance(source, OpenCVSource) and source.target == SHIPPED_DEMO_VIDEO
    fer_demo.write_bytes(SHIPPED_DEMO_VIDEO.read_bytes())  # one built from the dataset
    assert make_source("auto", config.camera, fer_demo).target == fer_demo
    with pytest.raises(CaptureError, match=r"no fallback video \(fallback_video: null\)"):
        make_source("auto", config.camera, None)
    with pytest.raises(CaptureError, match="missing.*gone.mp4 \\(missing\\)"):
        make_source("auto", config.camera, tmp_path / "missing.mp4", shipped_demo=tmp_path / "gone.mp4")


@pytest.mark.skipif(os.path.exists("/dev/video0"), reason="a webcam here would be the auto source")
def test_the_daemon_with_no_camera_and_no_dataset_shows_the_shipped_faces(tmp_path):
    """`edge-fer` as a new user runs it, headless: the shipped demo, two people, labels that
    follow their smiles (neutral and happy at least)."""
    events = tmp_path / "events.jsonl"
    config = tmp_path / "config.yaml"
    config.write_text(f"fallback_video: {tmp_path / 'no-fer2013-demo.mp4'}\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "edge_fer.apps.daemon",
            "--config",
            str(config),
            "--display",
            "none",
            "--pace",
            "fast",
        ]
        + [
            "--max-frames",
            "360",
            "--events-jsonl",
            str(events),
            "--stats-path",
            str(tmp_path / "stats.json"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    assert f"playing the shipped demo video {SHIPPED_DEMO_VIDEO}" in proc.stderr
    rows = [json.loads(line) for line in events.read_text().splitlines()]
    assert len(rows) == 360 and sum(len(r["faces"]) == 2 for r in rows) >= 350
    labels = Counter(f["smoothed"] for r in rows for f in r["faces"])
    assert labels["happy"] > 100 and labels["neutral"] > 100, labels

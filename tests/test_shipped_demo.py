"""The demo that ships in the package (edge_fer/samples/): real and synthetic faces under
licences that allow redistribution, named in the files themselves; the daemon's `auto` source
reaches it when there is no camera and no FER2013 demo; the shipped detector and model see what
the photos show, several emotions among them."""

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
from edge_fer.data.sample_video import (
    EXPRESSIONS,
    GROUP_PHOTO,
    PAIRS,
    expression_path,
    photo_path,
    read_mp4_metadata,
)
from edge_fer.faces.detect import YuNetDetector
from edge_fer.sources.base import CaptureError
from edge_fer.sources.registry import make_source
from edge_fer.sources.video import OpenCVSource, fallback_chain

ROOT = Path(__file__).resolve().parents[1]
LICENCE = "CC BY 4.0"
DOI = "10.6084/m9.figshare.5047666"
SFHQ = "SFHQ-T2I"
SFHQ_FACES = [face for row in EXPRESSIONS for face in row]


@pytest.mark.fast
def test_the_material_names_its_source_and_licence_everywhere():
    notice = (SAMPLES_DIR / "ATTRIBUTION.md").read_text()
    assert "Face Research Lab London Set" in notice and LICENCE in notice and DOI in notice
    assert SFHQ in notice and "MIT" in notice and "not real people" in notice
    assert "Attribution 4.0 International" in (SAMPLES_DIR / "LICENSE-CC-BY-4.0.md").read_text()
    mit = (SAMPLES_DIR / "LICENSE-MIT-SFHQ-T2I.md").read_text()
    assert "MIT License" in mit and "Copyright (c) 2024 David Beniaguev" in mit
    tags = read_mp4_metadata(SHIPPED_DEMO_VIDEO)
    assert LICENCE in tags["\xa9cmt"] and DOI in tags["\xa9cmt"] and "DeBruine" in tags["\xa9ART"]
    assert SFHQ in tags["\xa9cmt"] and "MIT" in tags["\xa9cmt"] and "Beniaguev" in tags["\xa9ART"]
    from PIL import Image  # the dev extra's

    for pair in PAIRS:
        for face_id in pair:
            for pose in ("neutral", "smiling"):
                exif = Image.open(photo_path(face_id, pose)).getexif()
                assert LICENCE in exif[0x010E] and DOI in exif[0x010E] and "DeBruine" in exif[0x013B]
    for path in [expression_path(face) for face in SFHQ_FACES] + [SAMPLES_DIR / GROUP_PHOTO]:
        exif = Image.open(path).getexif()
        assert SFHQ in exif[0x010E] and "MIT" in exif[0x010E] and "Beniaguev" in exif[0x013B], path
    shipped = [p for p in SAMPLES_DIR.iterdir() if p.is_file()]
    assert sum(p.stat().st_size for p in shipped) < 3_000_000, "the demo is meant to stay small in git"
    # ... and it is package data, so a regular install (deploy/install.sh) has it too
    assert "samples/*.mp4" in (ROOT / "setup.cfg").read_text()


def test_the_video_plays_and_yunet_finds_both_faces():
    meta = json.loads(SHIPPED_DEMO_VIDEO.with_suffix(".json").read_text())
    cap = cv2.VideoCapture(str(SHIPPED_DEMO_VIDEO))
    assert cap.get(cv2.CAP_PROP_FPS) == meta["fps"] == 30
    detector = YuNetDetector(SHIPPED_YUNET, score_threshold=0.7, min_face=24)
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
    assert frames == meta["frames"] == 1440 and found == 24, (frames, found)
    assert len(meta["people"]) == len(meta["poses"]) == frames
    shown = {pose for row in meta["poses"] for pose in row}
    assert {"happy", "sad", "angry", "surprise", "fear", "neutral", "smiling"} <= shown, shown


def _classify(*paths: Path) -> list[dict]:
    proc = subprocess.run(
        [sys.executable, "-m", "edge_fer.apps.classify", *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines()]


def test_the_model_reads_the_photos_as_the_people_posed():
    """`edge-fer-classify` on the shipped photos (the README's photo examples): every photo has
    its face found; the model names most smiles happy, most neutral faces neutral, and most
    SFHQ faces by the expression they were chosen for."""
    london = sorted(SAMPLES_DIR.glob("london_*.jpg"))
    rows = _classify(*london)
    assert len(rows) == 16 and all(r["face"] == 1 for r in rows)
    by_pose = {
        pose: Counter(r["label"] for r in rows if f"_{pose}." in r["image"])
        for pose in ("neutral", "smiling")
    }
    assert by_pose["smiling"]["happy"] >= 7 and by_pose["neutral"]["neutral"] >= 6, by_pose
    rows = _classify(*[expression_path(face) for face in SFHQ_FACES])
    firsts = {r["image"]: r["label"] for r in rows if r["face"] == 1}
    assert len(firsts) == len(SFHQ_FACES) == 12
    right = sum(firsts[str(expression_path(face))] == face.label for face in SFHQ_FACES)
    assert right >= 10, firsts
    group = _classify(SAMPLES_DIR / GROUP_PHOTO)
    assert len(group) == 6 and len({r["label"] for r in group}) >= 4, group


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
    """`edge-fer` as a new user runs it, headless, over the whole shipped demo: two faces in
    nearly every frame, labels that follow the London smiles, and the SFHQ faces' several
    emotions named by the smoothed labels."""
    events = tmp_path / "events.jsonl"
    config = tmp_path / "config.yaml"
    config.write_text(f"fallback_video: {tmp_path / 'no-fer2013-demo.mp4'}\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    meta = json.loads(SHIPPED_DEMO_VIDEO.with_suffix(".json").read_text())
    frames = meta["frames"]
    command = [sys.executable, "-m", "edge_fer.apps.daemon", "--config", str(config), "--display", "none",
               "--pace", "fast", "--max-frames", str(frames), "--events-jsonl", str(events),
               "--stats-path", str(tmp_path / "stats.json")]  # fmt: skip
    proc = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    assert f"playing the shipped demo video {SHIPPED_DEMO_VIDEO}" in proc.stderr
    rows = [json.loads(line) for line in events.read_text().splitlines()]
    assert len(rows) == frames and sum(len(r["faces"]) == 2 for r in rows) >= 0.97 * frames
    named = {"smiling": "happy"}
    agree = Counter()
    for i, row in enumerate(rows):
        for face in row["faces"]:
            x, _, w, _ = face["box"]
            pose = meta["poses"][i][int(x + w / 2 >= 320)]
            if pose != "turning":
                agree[pose, named.get(pose, pose) == face["smoothed"]] += 1
    london = {"smiling", "neutral"}
    sfhq_poses = set(meta["parts"][1]["poses"])
    share = {p: agree[p, True] / max(1, agree[p, True] + agree[p, False]) for p in london | sfhq_poses}
    assert share["smiling"] > 0.6 and share["neutral"] > 0.5, share
    # the SFHQ part: at least four of its six emotions are named most of the time they are shown
    assert sum(share[p] > 0.5 for p in sfhq_poses) >= 4, share

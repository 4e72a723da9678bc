"""`edge-fer-classify` on real photos: FER2013 face crops, a frame of real faces found by the
detector, annotated output, and every kind of bad input as a one-line error."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_fer.emotions.labels import EMOTIONS

ROOT = Path(__file__).resolve().parents[1]


def classify(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "edge_fer.apps.classify", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def lines(proc: subprocess.CompletedProcess) -> list[dict]:
    return [json.loads(line) for line in proc.stdout.splitlines()]


@pytest.fixture(scope="module")
def fer_folder(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Path:
    """8 real FER2013 test faces per class, named by their true class."""
    out = tmp_path_factory.mktemp("fer_photos")
    for emotion in EMOTIONS:
        for f in sorted((data_dir / "test" / emotion).glob("*.jpg"))[:8]:
            shutil.copy(f, out / f"{emotion}_{f.name}")
    return out


def test_face_crops_are_classified_like_the_daemon_does(fer_folder, shipped_model):
    proc = classify("--no-detect", "--model", str(shipped_model), str(fer_folder))
    assert proc.returncode == 0, proc.stderr
    rows = lines(proc)
    assert len(rows) == 7 * 8
    for row in rows:
        assert row["face"] == 1 and row["label"] in EMOTIONS and set(row["probs"]) == set(EMOTIONS)
        assert abs(sum(row["probs"].values()) - 1) < 0.01 and row["score"] == max(row["probs"].values())
    right = sum(Path(r["image"]).name.split("_")[0] == r["label"] for r in rows)
    assert right / len(rows) > 0.45, right  # the shipped model: ~68% on the whole test split


def test_faces_in_a_photo_are_found_classified_and_drawn(tmp_path, data_dir, shipped_model):
    from edge_fer.data.demo_video import build_demo_video

    video = tmp_path / "two.avi"
    meta = build_demo_video(data_dir, video, frames=1, faces=2, hold=1, seed=4, size=(960, 540))
    ok, frame = cv2.VideoCapture(str(video)).read()
    assert ok
    photo = tmp_path / "two faces.png"
    cv2.imwrite(str(photo), frame)
    out = tmp_path / "annotated.png"
    proc = classify("--model", str(shipped_model), str(photo), "--annotate", str(out))
    assert proc.returncode == 0, proc.stderr
    rows = lines(proc)
    assert [r["face"] for r in rows] == [1, 2]

    def iou(a, b):
        ax, ay, aw, ah = a
        bx, by, bw, bh = b
        w = max(0, min(ax + aw, bx + bw) - max(ax, bx))
        h = max(0, min(ay + ah, by + bh) - max(ay, by))
        return w * h / (aw * ah + bw * bh - w * h)

    for truth in meta["boxes"][0]:
        assert max(iou(truth, r["box"]) for r in rows) > 0.3, (truth, rows)
    drawn = cv2.imread(str(out))
    assert drawn.shape == frame.shape and np.abs(drawn.astype(int) - frame).sum() > 0


def test_a_photo_without_faces_says_so(tmp_path, shipped_model):
    blank = tmp_path / "wall.jpg"
    cv2.imwrite(str(blank), np.full((240, 320, 3), 128, np.uint8))
    proc = classify("--model", str(shipped_model), str(blank))
    assert proc.returncode == 0, proc.stderr
    assert lines(proc) == [
        {"image": str(blank), "face": None, "box": None, "label": None, "score": None, "probs": None}
    ]


def test_bad_inputs_are_one_line_errors_and_the_good_images_still_run(tmp_path, fer_folder, shipped_model):
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    folder = tmp_path / "nothing"
    folder.mkdir()
    good = next(fer_folder.iterdir())
    proc = classify(
        "--no-detect", "--model", str(shipped_model), str(text), str(empty), str(folder),
        str(tmp_path / "missing.jpg"), str(good),
    )  # fmt: skip
    assert proc.returncode == 2
    assert [r["image"] for r in lines(proc)] == [str(good)]
    errors = proc.stderr.strip().splitlines()
    assert "Traceback" not in proc.stderr and len(errors) == 4, proc.stderr
    for needle in (
        "not an image OpenCV can decode",
        "the file is empty",
        "holds no image files",
        "no such file",
    ):
        assert sum(needle in e for e in errors) == 1, (needle, errors)


def test_a_missing_model_is_exit_3_and_a_bad_flag_exit_2(tmp_path, fer_folder):
    proc = classify("--model", str(tmp_path / "none.pte"), str(fer_folder))
    assert proc.returncode == 3 and "model error" in proc.stderr and "Traceback" not in proc.stderr
    proc = classify("--threads", "99", str(fer_folder))
    assert proc.returncode == 2 and "model.threads" in proc.stderr and "Traceback" not in proc.stderr


def test_annotate_to_a_file_with_many_images_is_refused(tmp_path, fer_folder, shipped_model):
    target = tmp_path / "one.png"
    target.write_bytes(b"x")
    proc = classify("--no-detect", "--model", str(shipped_model), str(fer_folder), "--annotate", str(target))
    assert proc.returncode == 2 and "name a folder" in proc.stderr
    out = tmp_path / "annotated"
    proc = classify("--no-detect", "--model", str(shipped_model), str(fer_folder), "--annotate", str(out))
    assert proc.returncode == 0 and len(list(out.iterdir())) == 7 * 8


def test_a_photo_over_the_frame_limit_is_searched_scaled_but_answered_in_its_own_pixels(
    tmp_path, shipped_model
):
    portrait = cv2.imread(str(ROOT / "edge_fer" / "samples" / "london_022_smiling.jpg"))
    photo = tmp_path / "big.png"
    cv2.imwrite(str(photo), cv2.resize(portrait, (1200, 1800), interpolation=cv2.INTER_CUBIC))
    config = tmp_path / "config.yaml"
    config.write_text("frames:\n  max_pixels: 500000\n")  # 2.16 MP searched at 0.5 MP
    out = tmp_path / "annotated.png"
    proc = classify(
        "--config", str(config), "--model", str(shipped_model), str(photo), "--annotate", str(out)
    )
    assert proc.returncode == 0, proc.stderr
    (scaled,) = lines(proc)
    proc = classify("--model", str(shipped_model), str(photo))
    assert proc.returncode == 0, proc.stderr
    (full,) = lines(proc)
    assert scaled["label"] == full["label"] == "happy"
    x, y, w, h = scaled["box"]
    assert w == h and x + w <= 1200 and y + h <= 1800
    # The same face, to the detector's precision at the two scales (2 px here are 1 px there).
    assert all(abs(a - b) <= 0.03 * full["box"][2] for a, b in zip(scaled["box"], full["box"], strict=True))
    assert cv2.imread(str(out)).shape == (1800, 1200, 3)  # drawn on the photo, not on the scaled copy

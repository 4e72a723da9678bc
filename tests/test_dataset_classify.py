import csv
import shutil

import cv2
import numpy as np
import pytest

from edge_fer.data.fer2013 import DatasetError, load_csv, load_image_folder, load_split
from edge_fer.emotions.classifier import ModelError, PteClassifier, TorchClassifier, load_classifier
from edge_fer.emotions.labels import EMOTIONS
from edge_fer.emotions.preprocess import PreprocessSpec

SPEC = PreprocessSpec()


@pytest.mark.fast
def test_image_folder_and_prefix_split(small_fer, tmp_path):
    train = load_split(small_fer, "train", SPEC)
    assert len(train) == 84 and set(train.labels) == set(range(7))
    assert train.images.shape[1:] == (48, 48)
    # A test/ folder with both halves is split by file-name prefix.
    both = tmp_path / "both"
    shutil.copytree(small_fer, both)
    for f in list((both / "test" / "happy").glob("*.jpg"))[:5]:
        f.rename(f.with_name(f.name.replace("PublicTest_", "PrivateTest_")))
    public = load_split(both, "public", SPEC)
    private = load_split(both, "private", SPEC)
    assert len(public) == 79 and len(private) == 5
    assert all("PrivateTest_" in s for s in private.sources)


@pytest.mark.fast
def test_csv_layout_matches_folder_layout(small_fer, tmp_path):
    path = tmp_path / "fer2013.csv"
    csv_index = {"angry": 0, "disgust": 1, "fear": 2, "happy": 3, "sad": 4, "surprise": 5, "neutral": 6}
    rows = []
    for usage, split in (("Training", "train"), ("PublicTest", "test")):
        for name in EMOTIONS:
            for f in sorted((small_fer / split / name).glob("*.jpg"))[:3]:
                pixels = cv2.imread(str(f), cv2.IMREAD_GRAYSCALE)
                rows.append([csv_index[name], " ".join(map(str, pixels.ravel())), usage])
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["emotion", "pixels", "Usage"])
        w.writerows(rows)
    train = load_split(tmp_path, "train", SPEC)
    assert len(train) == 21 and train.class_counts().tolist() == [3] * 7
    folder = load_image_folder(small_fer / "train", SPEC)
    # Same images, same labels, same pixels whichever layout they came from.
    first_sad = folder.images[folder.labels == EMOTIONS.index("sad")][0]
    assert np.array_equal(train.images[train.labels == EMOTIONS.index("sad")][0], first_sad)
    assert len(load_split(path, "public", SPEC)) == 21


@pytest.mark.fast
def test_dataset_errors_say_what_is_wrong(small_fer, tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        load_split(tmp_path / "nowhere", "train", SPEC)
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(DatasetError, match="a_file is not a folder"):
        load_split(tmp_path / "a_file", "train", SPEC)
    bad = tmp_path / "bad"
    shutil.copytree(small_fer / "train", bad)
    (bad / "contempt").mkdir()
    with pytest.raises(DatasetError, match=r"unknown class folder\(s\) \['contempt'\]"):
        load_image_folder(bad, SPEC)
    (bad / "contempt").rmdir()
    (bad / "happy" / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DatasetError, match="cannot read image .*broken.jpg"):
        load_image_folder(bad, SPEC)
    csv_path = tmp_path / "fer2013.csv"
    csv_path.write_text("emotion,pixels,Usage\n3,1 2 3,Training\n")
    with pytest.raises(DatasetError, match="line 2: 3 pixels do not form a square"):
        load_csv(csv_path, SPEC)
    csv_path.write_text("emotion,pixels,Usage\nx,1 2 3 4,Training\n")
    with pytest.raises(DatasetError, match="line 2: malformed row"):
        load_csv(csv_path, SPEC)
    csv_path.write_text("label,image\n")
    with pytest.raises(DatasetError, match="header lacks"):
        load_csv(csv_path, SPEC)


@pytest.mark.fast
def test_bad_model_files_give_clear_errors(tmp_path, shipped_model):
    with pytest.raises(ModelError, match="does not exist"):
        load_classifier(tmp_path / "missing.pte")
    junk = tmp_path / "junk.pte"
    junk.write_bytes(b"\x00" * 64)
    with pytest.raises(ModelError, match="not an ExecuTorch program"):
        load_classifier(junk)
    lonely = tmp_path / "lonely.pte"
    shutil.copy(shipped_model, lonely)
    with pytest.raises(ModelError, match="metadata .* is missing"):
        load_classifier(lonely)
    (tmp_path / "lonely.json").write_text("{")
    with pytest.raises(ModelError, match="not valid JSON"):
        load_classifier(lonely)
    (tmp_path / "notackpt.pt").write_bytes(b"garbage")
    with pytest.raises(ModelError, match="not a checkpoint edge-fer can read"):
        TorchClassifier(tmp_path / "notackpt.pt")


def test_shipped_model_classifies_real_faces(shipped_model, public_faces):
    classifier = PteClassifier(shipped_model, threads=1)
    probs = classifier.classify_batch(public_faces.images[:32])
    assert probs.shape == (32, 7)
    assert np.allclose(probs.sum(1), 1, atol=1e-4)
    assert classifier.classify_batch(public_faces.images[:0]).shape == (0, 7)
    meta = classifier.metadata
    assert meta["classes"] == list(EMOTIONS) and meta["model_bytes"] <= 1_000_000
    accuracy = classifier.classify_batch(public_faces.images).argmax(1) == public_faces.labels
    assert accuracy.mean() > 1.5 / 7  # clearly better than chance on real faces


@pytest.mark.fast
def test_all_faces_of_a_frame_in_one_call_match_one_at_a_time(shipped_model, public_faces):
    classifier = PteClassifier(shipped_model, threads=1)
    assert classifier.dynamic_batch and classifier.batch >= 4  # a frame's faces in one call
    faces = public_faces.images[: classifier.batch + 5]  # more than one call's worth too
    one_by_one = np.concatenate([classifier.classify_batch(f[None]) for f in faces])
    for n in (1, 3, len(faces)):
        np.testing.assert_allclose(classifier.classify_batch(faces[:n]), one_by_one[:n], atol=1e-5)

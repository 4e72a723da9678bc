"""FER2013 loaders for both forms users have: class folders and the canonical CSV.

Everything loads into memory as uint8 arrays (28k 48x48 faces are 66 MB), which lets
training augment whole batches on the GPU instead of decoding JPEGs per step.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge_fer.emotions.labels import EMOTIONS, FER_CSV_TO_INDEX
from edge_fer.emotions.preprocess import PreprocessSpec, prepare_face

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".pgm"}
# Which file-name prefixes / CSV "Usage" values make each split.
SPLIT_USAGE = {"train": "Training", "public": "PublicTest", "private": "PrivateTest"}


class DatasetError(ValueError):
    """A dataset path or file that cannot be used; the message says what to fix."""


@dataclass
class FaceSet:
    """Faces as uint8 (N, S, S), labels as int64 (N,), and where each face came from."""

    images: np.ndarray
    labels: np.ndarray
    sources: list[str]

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: np.ndarray) -> FaceSet:
        return FaceSet(self.images[index], self.labels[index], [self.sources[i] for i in index])

    def class_counts(self) -> np.ndarray:
        return np.bincount(self.labels, minlength=len(EMOTIONS))


def _read_face(path: Path, spec: PreprocessSpec) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise DatasetError(
            f"cannot read image {path}: the file is corrupt or not an image; remove or replace it"
        )
    return prepare_face(image, spec)


def _missing_or_not_a_folder(path: Path) -> str:
    return "is not a folder" if path.exists() or path.is_symlink() else "does not exist"


def load_image_folder(folder: Path, spec: PreprocessSpec, prefix: str | None = None) -> FaceSet:
    """Load `folder/<class>/*.jpg`. With `prefix`, keep only files whose name starts with it."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(
            f"dataset folder {folder} {_missing_or_not_a_folder(folder)}; pass --data pointing at a "
            "folder with train/ and test/ class subfolders or a fer2013.csv"
        )
    class_dirs = sorted(p for p in folder.iterdir() if p.is_dir())
    unknown = [p.name for p in class_dirs if p.name not in EMOTIONS]
    if unknown:
        raise DatasetError(f"unknown class folder(s) {unknown} in {folder}; allowed: {', '.join(EMOTIONS)}")
    if not class_dirs:
        raise DatasetError(f"{folder} has no class subfolders; expected {', '.join(EMOTIONS)}")
    images, labels, sources = [], [], []
    for class_dir in class_dirs:
        label = EMOTIONS.index(class_dir.name)
        for path in sorted(class_dir.iterdir()):
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            if prefix is not None and not path.name.startswith(prefix):
                continue
            images.append(_read_face(path, spec))
            labels.append(label)
            sources.append(str(path))
    if not images:
        what = f" starting with {prefix!r}" if prefix else ""
        raise DatasetError(f"no images{what} found under {folder}")
    return FaceSet(np.stack(images), np.asarray(labels, np.int64), sources)


def load_csv(path: Path, spec: PreprocessSpec, usage: str | None = None) -> FaceSet:
    """Load the canonical `fer2013.csv` (emotion,pixels,Usage); optionally one Usage only."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"CSV file {path} does not exist")
    images, labels, sources = [], [], []
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        missing = {"emotion", "pixels"} - set(reader.fieldnames or [])
        if missing:
            raise DatasetError(
                f"{path}: header lacks column(s) {sorted(missing)}; expected emotion,pixels,Usage"
            )
        for line_no, row in enumerate(reader, start=2):
            if usage is not None and row.get("Usage") != usage:
                continue
            try:
                emotion = int(row["emotion"])
                pixels = np.array(row["pixels"].split(), dtype=np.float32)
            except (ValueError, AttributeError) as exc:
                raise DatasetError(
                    f"{path} line {line_no}: malformed row ({exc}); expected an "
                    "integer emotion and space-separated pixel values"
                ) from None
            if emotion not in FER_CSV_TO_INDEX:
                raise DatasetError(f"{path} line {line_no}: emotion {emotion} is not 0-6")
            side = int(round(len(pixels) ** 0.5))
            if side * side != len(pixels) or side == 0 or pixels.min() < 0 or pixels.max() > 255:
                raise DatasetError(
                    f"{path} line {line_no}: {len(pixels)} pixels do not form a "
                    "square 8-bit image (FER2013 rows have 2304 = 48x48)"
                )
            face = pixels.reshape(side, side).astype(np.uint8)
            images.append(prepare_face(face, spec))
            labels.append(FER_CSV_TO_INDEX[emotion])
            sources.append(f"{path}:{line_no}")
    if not images:
        what = f" with Usage={usage}" if usage else ""
        raise DatasetError(f"{path} has no rows{what}")
    return FaceSet(np.stack(images), np.asarray(labels, np.int64), sources)


def find_csv(data: Path) -> Path | None:
    if data.is_file() and data.suffix == ".csv":
        return data
    candidate = data / "fer2013.csv"
    return candidate if candidate.is_file() else None


def load_split(data: Path, split: str, spec: PreprocessSpec) -> FaceSet:
    """Load `train`, `public` (PublicTest) or `private` (PrivateTest) from either layout.

    In the folder layout a `test/` folder holding both halves is split by file-name prefix;
    a `test/` folder of un-prefixed files counts as the public half.
    """
    if split not in SPLIT_USAGE:
        raise DatasetError(f"unknown split {split!r}; use one of {sorted(SPLIT_USAGE)}")
    data = Path(data)
    csv_path = find_csv(data)
    if csv_path is not None:
        return load_csv(csv_path, spec, SPLIT_USAGE[split])
    if not data.is_dir():
        raise DatasetError(
            f"dataset {data} {_missing_or_not_a_folder(data)}; pass --data with the FER2013 folder "
            "(train/ and test/ class subfolders) or fer2013.csv"
        )
    if split == "train":
        return load_image_folder(data / "train", spec)
    test_dir = data / "test"
    if not test_dir.is_dir():
        raise DatasetError(f"{data} has no test/ folder")
    prefix = f"{SPLIT_USAGE[split]}_"
    names = [p.name for p in test_dir.glob("*/*") if p.suffix.lower() in IMAGE_SUFFIXES]
    if any(n.startswith(("PublicTest_", "PrivateTest_")) for n in names):
        return load_image_folder(test_dir, spec, prefix)
    if split == "private":
        raise DatasetError(f"{test_dir} has no PrivateTest_ files")
    return load_image_folder(test_dir, spec)


def load_eval_folder(folder: Path, spec: PreprocessSpec) -> FaceSet:
    """Load any folder to evaluate on: class subfolders, a FER2013 root, or a CSV."""
    folder = Path(folder)
    if find_csv(folder) is not None:
        return load_split(folder, "public", spec)
    if folder.is_dir() and (folder / "test").is_dir() and (folder / "train").is_dir():
        return load_split(folder, "public", spec)
    return load_image_folder(folder, spec)


def stratified_subset(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Indices of a class-stratified random subset (at least 2 per present class)."""
    rng = np.random.default_rng(seed)
    keep = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        n = max(2, int(round(len(idx) * fraction)))
        keep.append(rng.choice(idx, size=min(n, len(idx)), replace=False))
    return np.sort(np.concatenate(keep))

"""`edge-fer-classify`: the emotion on each face of photos, one JSON line per face.

    edge-fer-classify photo.jpg [more.png ...] [FOLDER ...] [--annotate OUT] [--no-detect]

Each image goes through the daemon's own detector, preprocessing and classifier, once: no
tracker and no smoothing (a photo has no history). A line per face:
`{"image", "face", "box": [x, y, w, h], "label", "score", "probs": {emotion: p}}`; an image
with no face gives one line with `"face": null`. `--annotate` writes the image with its boxes
and labels (a file for one image, else a folder). A folder is read for its image files (not
recursively). Exit codes: 0 every image read, 2 a bad argument or an unreadable image (the
others are still classified), 3 model or detector error.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import TextIO

import cv2
import numpy as np

from edge_fer import __version__
from edge_fer.capture import IMAGE_SUFFIXES
from edge_fer.classify import Classifier, ModelError, load_classifier
from edge_fer.config import (
    DEFAULT_CONFIG_PATH,
    MAX_THREADS,
    ConfigError,
    apply_overrides,
    choices,
    load_config,
)
from edge_fer.detect import DetectorError, FaceDetector, make_detector
from edge_fer.preprocess import prepare_face
from edge_fer.results import Box, FaceResult

log = logging.getLogger("edge_fer.photo")
EXIT_INPUT, EXIT_MODEL = 2, 3
MAX_PIXELS = 100_000_000  # a 100-megapixel photo; larger is refused rather than exhausting memory


class ImageError(ValueError):
    """An argument that is not a readable image; the message says what to do."""


def expand_inputs(paths: list[Path]) -> tuple[list[Path], list[str]]:
    """Image files named directly or found in named folders, and an error per bad argument."""
    images, errors = [], []
    for path in paths:
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                errors.append(
                    f"{path}: folder holds no image files ({', '.join(IMAGE_SUFFIXES)}); "
                    "name image files or a folder with some"
                )
            images += found
        elif path.exists():
            images.append(path)
        else:
            errors.append(f"{path}: no such file or folder; check the path")
    return images, errors


def read_image(path: Path) -> np.ndarray:
    """A BGR image (EXIF orientation applied), or ImageError naming the problem."""
    try:
        data = np.fromfile(path, np.uint8)
    except PermissionError:
        raise ImageError(f"{path}: not readable by this user; check its permissions") from None
    except OSError as exc:
        raise ImageError(f"{path}: cannot be read ({exc.strerror}); check the path") from None
    if data.size == 0:
        raise ImageError(f"{path}: the file is empty; pass a JPEG, PNG, BMP, WebP or TIFF image")
    # OpenCV refuses images over CV_IO_MAX_IMAGE_PIXELS (2^30) before decoding them.
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if image is None:
        raise ImageError(
            f"{path}: not an image OpenCV can decode; pass a JPEG, PNG, BMP, WebP or TIFF image "
            "(for a video use edge-fer --source file:PATH)"
        )
    if image.shape[0] * image.shape[1] > MAX_PIXELS:
        raise ImageError(f"{path}: {image.shape[1]}x{image.shape[0]} is too large; scale it down")
    return image


def classify_image(
    image: np.ndarray, detector: FaceDetector | None, classifier: Classifier, detect_width: int
) -> list[FaceResult]:
    """Every face in `image`, classified (no tracking, no smoothing): `smoothed` is the label.
    With no detector the whole image is one face (a crop such as a FER2013 picture)."""
    h, w = image.shape[:2]
    if detector is None:
        boxes: list[Box] = [(0, 0, w, h)]
    else:
        target = min(detect_width, w)
        small = image if target == w else cv2.resize(image, (target, round(h * target / w)), cv2.INTER_AREA)
        scale = w / target
        boxes = []
        for bx, by, bw, bh in detector.detect(small):
            x, y = max(0, round(bx * scale)), max(0, round(by * scale))
            box = (x, y, min(round(bw * scale), w - x), min(round(bh * scale), h - y))
            if box[2] > 0 and box[3] > 0:
                boxes.append(box)
    if not boxes:
        return []
    spec = classifier.spec
    crops = np.stack([prepare_face(image, spec, None if detector is None else b) for b in boxes])
    probs = classifier.classify_batch(crops)
    faces = []
    for i, (box, p) in enumerate(zip(boxes, probs, strict=True)):
        k = int(np.argmax(p))
        label = classifier.classes[k]
        faces.append(FaceResult(i + 1, box, label, float(p[k]), label, p, float(p[k])))
    return faces


def face_lines(image: Path, faces: list[FaceResult], classes: tuple[str, ...]) -> list[dict]:
    """The JSON records of one image."""
    if not faces:
        return [{"image": str(image), "face": None, "box": None, "label": None, "score": None, "probs": None}]
    return [
        {
            "image": str(image),
            "face": f.id,
            "box": [int(v) for v in f.box],
            "label": f.label,
            "score": round(f.score, 4),
            "probs": {c: round(float(p), 4) for c, p in zip(classes, f.probs, strict=True)},
        }
        for f in faces
    ]


def annotated_path(out: Path, image: Path, single: bool) -> Path:
    """Where the annotated copy of `image` goes: `out` itself for one image named as a file."""
    if single and out.suffix.lower() in IMAGE_SUFFIXES:
        return out
    return out / f"{image.stem}.annotated{image.suffix if image.suffix.lower() in IMAGE_SUFFIXES else '.png'}"


def write_annotated(path: Path, image: np.ndarray, faces: list[FaceResult], classes: tuple[str, ...]) -> None:
    from edge_fer.overlay import draw_faces

    canvas = image.copy()
    draw_faces(canvas, faces, classes)
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, data = cv2.imencode(path.suffix if path.suffix else ".png", canvas)
    if not ok:
        raise ImageError(f"{path}: cannot encode an image with this suffix; use .jpg or .png")
    try:
        path.write_bytes(data.tobytes())
    except OSError as exc:
        raise ImageError(
            f"{path}: cannot write the annotated image ({exc.strerror}); check --annotate"
        ) from None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="edge-fer-classify",
        description="The emotion on each face of photos: one JSON line per face on stdout.",
    )
    p.add_argument("images", nargs="+", type=Path, metavar="IMAGE", help="image files or folders of them")
    p.add_argument(
        "--annotate", type=Path, metavar="OUT", help="write annotated images (a file, or a folder)"
    )
    p.add_argument(
        "--no-detect", action="store_true", help="each image is one face already cropped (as FER2013's)"
    )
    p.add_argument(
        "--config",
        type=Path,
        default=DEFAULT_CONFIG_PATH,
        help="the daemon's YAML config: its model and detector sections are used",
    )
    p.add_argument("--model", help="model file (.pte, or a float .pt checkpoint)")
    p.add_argument("--detector", choices=choices("detector.kind"))
    p.add_argument("--yunet-model", help="YuNet .onnx file")
    p.add_argument("--detect-width", type=int, help="images are scaled to this width to find faces")
    p.add_argument("--runtime", choices=choices("model.runtime"))
    p.add_argument("--threads", type=int, help=f"classifier threads (1-{MAX_THREADS})")
    p.add_argument("--version", action="version", version=f"edge-fer {__version__}")
    return p.parse_args(argv)


def main(argv: list[str] | None = None, out: TextIO = sys.stdout) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="edge-fer-classify: %(message)s")
    try:
        config = apply_overrides(
            load_config(args.config),
            {
                "model.path": args.model,
                "model.runtime": args.runtime,
                "model.threads": args.threads,
                "detector.kind": args.detector,
                "detector.yunet_model": args.yunet_model,
                "detector.detect_width": args.detect_width,
            },
        )
    except ConfigError as exc:
        log.error("config error: %s", exc)
        return EXIT_INPUT
    images, errors = expand_inputs(args.images)
    for error in errors:
        log.error("error: %s", error)
    if (
        args.annotate is not None
        and args.annotate.exists()
        and not args.annotate.is_dir()
        and len(images) > 1
    ):
        log.error(
            "error: --annotate %s is a file but there are %d images; name a folder",
            args.annotate,
            len(images),
        )
        return EXIT_INPUT
    if not images:
        return EXIT_INPUT
    try:
        classifier = load_classifier(config.model.file, config.model.threads, config.model.runtime)
    except ModelError as exc:
        log.error("model error: %s", exc)
        return EXIT_MODEL
    try:
        detector = None if args.no_detect else make_detector(config.detector)
    except DetectorError as exc:
        classifier.close()
        log.error("model error: %s", exc)
        return EXIT_MODEL
    bad = bool(errors)
    try:
        for path in images:
            try:
                image = read_image(path)
                faces = classify_image(image, detector, classifier, config.detector.detect_width)
                for line in face_lines(path, faces, classifier.classes):
                    out.write(json.dumps(line) + "\n")
                out.flush()
                if args.annotate is not None:
                    write_annotated(
                        annotated_path(args.annotate, path, len(images) == 1),
                        image,
                        faces,
                        classifier.classes,
                    )
            except ImageError as exc:
                log.error("error: %s", exc)
                bad = True
    finally:
        classifier.close()
    return EXIT_INPUT if bad else 0


if __name__ == "__main__":
    sys.exit(main())

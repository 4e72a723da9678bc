"""`edge-fer-classify`: the emotion on each face of photos, one JSON line per face.

    edge-fer-classify photo.jpg [more.png ...] [FOLDER ...] [--annotate OUT] [--no-detect]

Each image goes through the daemon's own detector (`FaceFinder.everything`, every scale) and
its `FaceAnalyzer` (crop, classifier, calibration), once: no tracker and no smoothing (a photo
has no history). A line per face:
`{"image", "face", "box": [x, y, w, h], "label", "score", "probs": {emotion: p}}` (and
`"annotated": PATH` with --annotate); an image with no face gives one line with `"face": null`.
`--annotate` writes the image with its boxes and labels (a file for one image, else a folder;
never over an input, a second p.jpg becomes p-2.annotated.jpg). A folder is read for its image
files (not recursively). Images are read through the daemon's file boundary (regular files
only, at most MAX_IMAGE_BYTES, a header claiming more than MAX_PIXELS is refused before
decoding). Exit codes: 0 every image read, 2 a bad argument, an unreadable image (the others
are still classified) or stdout that cannot be written, 3 model or detector error, 130
interrupted (Ctrl-C), 141 the reader of stdout went away (`| head -1`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import stat
import sys
from pathlib import Path
from typing import TextIO

import cv2
import numpy as np

from edge_fer import __version__
from edge_fer.config import (
    DEFAULT_CONFIG_PATH,
    ConfigError,
    apply_overrides,
    config_flags,
    load_config,
)
from edge_fer.core.image_header import HeaderError, image_size
from edge_fer.core.logs import ensure_std_streams
from edge_fer.core.safe_io import (
    EXIT_BROKEN_PIPE,
    MAX_NAME,
    PathRefused,
    StreamGone,
    check_distinct,
    check_length,
    check_writable,
    cut_name,
    read_regular,
    release_stdout,
    same_file,
    write_atomic,
    write_line,
)
from edge_fer.core.schema import check_flags
from edge_fer.core.user_input import FlagParser, path_arg
from edge_fer.emotions.classifier import ModelError, load_classifier
from edge_fer.faces.detect import DetectorError, make_detector
from edge_fer.faces.finder import FaceFinder
from edge_fer.runtime.analyzer import FaceAnalyzer
from edge_fer.runtime.results import Box, FaceResult
from edge_fer.sources.base import quiet_opencv
from edge_fer.sources.frames import check_frame
from edge_fer.sources.video import IMAGE_SUFFIXES

log = logging.getLogger("edge_fer.apps.classify")
EXIT_INPUT, EXIT_MODEL = 2, 3
EXIT_INTERRUPTED = 128 + 2  # SIGINT, as a shell reports it
# A 100-megapixel photo (300 MB decoded); a header claiming more is refused before decoding.
MAX_PIXELS = 100_000_000
MAX_IMAGE_BYTES = 256 << 20  # far above any photo of MAX_PIXELS; a 2 GB "photo" is not read
ANNOTATED = ".annotated"
MIN_CROP, MAX_CROP_ASPECT = 16, 4  # --no-detect: what could be a face crop (FER2013's are 48x48)


class ImageError(ValueError):
    """An argument that is not a readable image; the message says what to do."""


def shown_path(path: str | Path) -> str:
    """A path for a one-line message: as it is when printable, else escaped (a newline or a
    byte that is not UTF-8 in a file name would break the line)."""
    text = str(path)
    return text if text.isprintable() else ascii(text)


def _is_annotated_name(name: str) -> bool:
    stem, suffix = Path(name).stem, Path(name).suffix
    return suffix.lower() in IMAGE_SUFFIXES and stem.endswith(ANNOTATED)


def expand_inputs(paths: list[Path], annotate: Path | None = None) -> tuple[list[Path], list[str]]:
    """Image files named directly or found in named folders, and an error per bad argument.
    A folder that is also the --annotate folder is read without the annotated copies a
    previous run left there."""
    images, errors = [], []
    for path in paths:
        try:
            check_length(path)
            if path.is_dir():
                skip = annotate is not None and same_file(path, annotate)
                listed = sorted(
                    p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                )
                found = [p for p in listed if not (skip and _is_annotated_name(p.name))]
                if len(found) < len(listed):
                    log.warning(
                        "%s: left out %d annotated copies from an earlier run (*%s.*), as it is also "
                        "the --annotate folder",
                        shown_path(path),
                        len(listed) - len(found),
                        ANNOTATED,
                    )
                if not found:
                    errors.append(
                        f"{shown_path(path)}: folder holds no image files ({', '.join(IMAGE_SUFFIXES)}); "
                        "name image files or a folder with some"
                    )
                images += found
            elif path.exists() or path.is_symlink():
                images.append(path)
            else:
                errors.append(f"{shown_path(path)}: no such file or folder; check the path")
        except PathRefused as exc:
            errors.append(f"{shown_path(path)}: {exc}; check the path")
        except OSError as exc:  # a folder we may not list, a path through a file
            errors.append(f"{shown_path(path)}: cannot be read ({exc.strerror or exc}); check the path")
    return images, errors


def read_image(path: Path) -> np.ndarray:
    """A BGR image (EXIF orientation applied), or ImageError naming the problem. Only a
    regular file is opened (a FIFO or device is refused, never waited on), at most
    MAX_IMAGE_BYTES are read, and the pixel size its header claims is checked against
    MAX_PIXELS before any decoder allocates it."""
    name = shown_path(path)
    try:
        data = read_regular(path, MAX_IMAGE_BYTES)
    except PathRefused as exc:
        why = str(exc) if str(exc).startswith(str(path)) else f"{name}: {exc}"
        raise ImageError(f"{why}; pass an image file") from None
    except PermissionError:
        raise ImageError(f"{name}: not readable by this user; check its permissions") from None
    except OSError as exc:
        raise ImageError(f"{name}: cannot be read ({exc.strerror or exc}); check the path") from None
    if not data:
        raise ImageError(f"{name}: the file is empty; pass a JPEG, PNG, BMP, WebP or TIFF image")
    try:
        kind, w, h = image_size(data)
    except HeaderError as exc:
        raise ImageError(
            f"{name}: not an image OpenCV can decode ({exc}); pass a JPEG, PNG, BMP, WebP or TIFF "
            "image (for a video use edge-fer --source file:PATH)"
        ) from None
    if w * h == 0:
        raise ImageError(f"{name}: the {kind} header says {w}x{h} pixels; pass a real image")
    if w * h > MAX_PIXELS:
        raise ImageError(
            f"{name}: the {kind} header says {w}x{h} pixels, past the limit of {MAX_PIXELS // 10**6} "
            "megapixels; scale it down first"
        )
    try:
        with quiet_opencv():  # its own log lines would be a second, less clear, error
            image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    except MemoryError:
        raise ImageError(f"{name}: not enough memory to decode {w}x{h} pixels; scale it down first") from None
    except cv2.error as exc:
        if _out_of_memory(exc):
            raise ImageError(
                f"{name}: not enough memory to decode {w}x{h} pixels; scale it down first"
            ) from None
        image = None
    if image is None or image.size == 0:
        raise ImageError(f"{name}: a {kind} file OpenCV cannot decode (damaged or cut short?)")
    return image


def _out_of_memory(exc: cv2.error) -> bool:
    """An OpenCV error that is an allocation failure (its message says so; there is no code)."""
    text = str(exc).lower()
    return "memory" in text or "alloc" in text


def classify_image(image: np.ndarray, finder: FaceFinder | None, analyzer: FaceAnalyzer) -> list[FaceResult]:
    """Every face in `image`, classified by the daemon's analyzer (no tracking, no smoothing):
    `smoothed` is the label (`uncertain` on a face too small to read), faces are numbered from
    1 in the finder's order. With no finder the whole image is one face (a crop such as a
    FER2013 picture)."""
    if finder is None:
        h, w = image.shape[:2]
        if min(w, h) < MIN_CROP or max(w, h) > MAX_CROP_ASPECT * min(w, h):
            raise ImageError(
                f"{w}x{h} is not a face crop; --no-detect takes images of one face, roughly square "
                f"and at least {MIN_CROP} pixels a side (leave it out to find the faces)"
            )
        readings = analyzer.analyze(image, None)
    else:
        readings = analyzer.analyze(image, finder.everything(image))  # every scale at once
    return [r.result(r.index + 1) for r in readings]


def in_photo_pixels(
    faces: list[FaceResult], searched: tuple[int, ...], photo: tuple[int, ...]
) -> list[FaceResult]:
    """`faces` found in an image of shape `searched`, with their boxes in the pixels of the
    photo (shape `photo`) it was scaled from, kept inside it."""
    (sh, sw), (ph, pw) = searched[:2], photo[:2]
    if (sh, sw) == (ph, pw):
        return faces
    fx, fy = pw / sw, ph / sh
    fs = (fx + fy) / 2  # one factor for the size: a square box stays square
    out = []
    for f in faces:
        x, y, w, h = f.box
        x0, y0 = min(pw - 1, round(x * fx)), min(ph - 1, round(y * fy))
        box: Box = (x0, y0, max(1, min(pw - x0, round(w * fs))), max(1, min(ph - y0, round(h * fs))))
        out.append(dataclasses.replace(f, box=box))
    return out


def face_lines(
    image: Path, faces: list[FaceResult], classes: tuple[str, ...], annotated: Path | None = None
) -> list[dict]:
    """The JSON records of one image (with the annotated copy's path when one is written)."""
    extra = {} if annotated is None else {"annotated": str(annotated)}
    if not faces:
        return [
            {"image": str(image), "face": None, "box": None, "label": None, "score": None, "probs": None}
            | extra
        ]
    return [
        {
            "image": str(image),
            "face": f.id,
            "box": [int(v) for v in f.box],
            "label": f.smoothed,  # `uncertain` on a face too small to read
            "score": round(f.score, 4),
            "probs": {c: round(float(p), 4) for c, p in zip(classes, f.probs, strict=True)},
        }
        | extra
        for f in faces
    ]


def _writable_suffix(suffix: str) -> str:
    """The input's suffix when OpenCV can write it, else .png."""
    return suffix if suffix.lower() in IMAGE_SUFFIXES and cv2.haveImageWriter(f"x{suffix}") else ".png"


def _fit_name(stem: str, tail: str) -> str:
    """`stem + tail`, the stem cut (by characters) so the name fits NAME_MAX bytes."""
    return cut_name(stem, MAX_NAME - len(os.fsencode(tail))) + tail


def plan_annotations(out: Path, images: list[Path]) -> list[Path]:
    """Where the annotated copy of each image goes (in the order of `images`): `out` itself
    for one image when it names an image file, else `out/<stem>.annotated<suffix>`. Every
    target is checked before any work: never an input (by path or inode), never one target
    for two images (a second p.jpg becomes p-2.annotated.jpg), the folder writable.
    ImageError says what to change."""
    name = shown_path(out)
    try:
        check_length(out)
        st = os.stat(out)
    except PathRefused as exc:
        raise ImageError(f"--annotate {name}: {exc}") from None
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise ImageError(f"--annotate {name}: cannot be used ({exc.strerror or exc})") from None
    image_suffix = out.suffix.lower() in IMAGE_SUFFIXES
    is_dir = st is not None and stat.S_ISDIR(st.st_mode)
    inputs = [("the input image", p) for p in images]
    if not is_dir and (st is not None or image_suffix):  # `out` names one image file
        if len(images) > 1:
            raise ImageError(
                f"--annotate {name} names an image file but there are {len(images)} images; name a folder"
            )
        if not image_suffix:
            raise ImageError(
                f"--annotate {name} is an existing file without an image suffix; name an image file "
                "(.jpg, .png, ...) or a folder"
            )
        if not cv2.haveImageWriter(str(out)):
            raise ImageError(f"--annotate {name}: OpenCV cannot write {out.suffix} images; use .jpg or .png")
        try:
            check_distinct([("--annotate", out)], inputs)
            check_writable(out)
        except PathRefused as exc:
            raise ImageError(f"{exc}; name another file for --annotate") from None
        return [out]
    plan: list[Path] = []
    taken: set[str] = set()
    for image in images:
        stem, suffix = image.stem, _writable_suffix(image.suffix)
        for k in range(1, len(images) + 2):  # one name in that range is free of the others
            target = out / _fit_name(stem, f"{'' if k == 1 else f'-{k}'}{ANNOTATED}{suffix}")
            # Compared case-blind: on a FAT USB stick P.annotated.jpg and p.annotated.jpg are one file.
            if target.name.casefold() not in taken and not any(same_file(target, p) for p in images):
                break
        taken.add(target.name.casefold())
        plan.append(target)
    if plan:
        try:
            check_writable(plan[0])  # makes the folder, probes it
        except PathRefused as exc:
            raise ImageError(f"--annotate {name}: {exc}; name a folder you can write to") from None
    return plan


def write_annotated(
    path: Path, image: np.ndarray, faces: list[FaceResult], classes: tuple[str, ...], mode: int = 0o644
) -> None:
    """The image with its faces drawn, replacing `path` atomically (a reader, or a full disk,
    sees the old file or the new one, never half of one; a symlink at `path` is replaced,
    never followed)."""
    from edge_fer.display.overlay import draw_faces

    canvas = image.copy()
    draw_faces(canvas, faces, classes)
    try:
        with quiet_opencv():
            ok, data = cv2.imencode(path.suffix, canvas)
    except cv2.error as exc:
        if _out_of_memory(exc):
            raise MemoryError from None
        ok = False
    if not ok:  # the suffix was checked when the target was planned: this is OpenCV failing
        h, w = canvas.shape[:2]
        raise ImageError(
            f"{shown_path(path)}: OpenCV could not encode the annotated {w}x{h} image (usually too "
            "little memory); scale it down or allow edge-fer-classify more memory"
        )
    try:
        write_atomic(path, data.tobytes(), mode)
    except PathRefused as exc:
        raise ImageError(f"{shown_path(path)}: not written: {exc}") from None
    except OSError as exc:
        raise ImageError(
            f"{shown_path(path)}: cannot write the annotated image ({exc.strerror or exc}); "
            "the file there is unchanged; check --annotate"
        ) from None


def _stdout_closed() -> bool:
    try:
        os.fstat(1)
    except OSError:
        return True
    return sys.stdout is None


def _file_mode() -> int:
    """0666 less the umask: annotated images get the permissions any new file would."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


PHOTO_KEYS = (
    "model.path",
    "detector.kind",
    "detector.yunet_model",
    "detector.detect_width",
    "model.runtime",
    "model.threads",
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = FlagParser(
        prog="edge-fer-classify",
        description="The emotion on each face of photos: one JSON line per face on stdout.",
    )
    p.add_argument("images", nargs="+", type=path_arg, metavar="IMAGE", help="image files or folders of them")
    p.add_argument(
        "--annotate", type=path_arg, metavar="OUT", help="write annotated images (a file, or a folder)"
    )
    p.add_argument(
        "--no-detect", action="store_true", help="each image is one face already cropped (as FER2013's)"
    )
    p.add_argument(
        "--config",
        type=path_arg,
        default=DEFAULT_CONFIG_PATH,
        help="the daemon's YAML config: its model and detector sections are used",
    )
    # The config keys a photo uses, as the daemon's flags (generated from their declarations).
    added = config_flags(p, PHOTO_KEYS)
    p.add_argument("--version", action="version", version=f"edge-fer {__version__}")
    args = p.parse_args(argv)
    check_flags(p, args, added)
    return args


def main(argv: list[str] | None = None, out: TextIO | None = None) -> int:
    """The command: its exit code (see the module doc)."""
    try:
        return _run(argv, out)
    except KeyboardInterrupt:  # Ctrl-C: stop as other tools do, no traceback
        return EXIT_INTERRUPTED


def _run(argv: list[str] | None, out: TextIO | None) -> int:
    closed = False
    if out is None:  # the real command (tests pass `out` and keep their own streams)
        closed = _stdout_closed()
        ensure_std_streams()  # fds 0-2 taken, so no image or temp file lands on them
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="edge-fer-classify: %(message)s")
    if closed:
        log.error("error: stdout is closed; run with stdout open (e.g. > faces.jsonl)")
        return EXIT_INPUT
    stream = sys.stdout if out is None else out
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
    images, errors = expand_inputs(args.images, args.annotate)
    for error in errors:
        log.error("error: %s", error)
    if not images:
        return EXIT_INPUT
    plan: list[Path] = []
    if args.annotate is not None:
        try:
            plan = plan_annotations(args.annotate, images)
        except ImageError as exc:
            log.error("error: %s", exc)
            return EXIT_INPUT
    try:
        classifier = load_classifier(config.model.file, config.model.threads, config.model.runtime)
    except ModelError as exc:
        log.error("model error: %s", exc)
        return EXIT_MODEL
    try:
        finder = (
            None if args.no_detect else FaceFinder(lambda: make_detector(config.detector), config.detector)
        )
    except DetectorError as exc:
        classifier.close()
        log.error("model error: %s", exc)
        return EXIT_MODEL
    analyzer = FaceAnalyzer(classifier, config.smoothing.min_readable_px)
    bad = bool(errors)
    mode = _file_mode()
    try:
        for i, path in enumerate(images):
            target = plan[i] if plan else None
            image = None
            try:
                image = read_image(path)
                checked = check_frame(image, config.frames)  # the daemon's frame boundary
                if checked.image is None:
                    raise ImageError(f"{shown_path(path)}: {checked.why}")
                try:
                    faces = classify_image(checked.image, finder, analyzer)
                except ImageError as exc:
                    raise ImageError(f"{shown_path(path)}: {exc}") from None
                # A photo over frames.max_pixels was searched scaled down; its boxes and its
                # annotated copy are in the photo's own pixels all the same.
                faces = in_photo_pixels(faces, checked.image.shape, image.shape)
                for line in face_lines(path, faces, analyzer.classes, target):
                    write_line(stream, json.dumps(line) + "\n")
                if target is not None:
                    write_annotated(target, image, faces, analyzer.classes, mode)
            except ImageError as exc:
                log.error("error: %s", exc)
                bad = True
            except MemoryError:  # the process's memory limit (ulimit -v, a cgroup) is too small
                step = (
                    "read" if image is None else f"classify or annotate ({image.shape[1]}x{image.shape[0]})"
                )
                log.error(
                    "error: %s: not enough memory to %s it; scale it down or allow edge-fer-classify "
                    "more memory",
                    shown_path(path),
                    step,
                )
                bad = True
    except StreamGone as exc:
        if out is None:
            release_stdout()
        if exc.broken_pipe:  # `| head -1` has what it wanted: stop quietly, as Unix tools do
            return EXIT_BROKEN_PIPE
        log.error("error: cannot write the results to stdout (%s); stopped", exc)
        return EXIT_INPUT
    finally:
        classifier.close()
    return EXIT_INPUT if bad else 0


if __name__ == "__main__":
    from edge_fer.core.memory import classify  # the console script's memory rules for `python -m` too

    classify()

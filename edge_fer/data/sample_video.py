"""The demo that ships with edge-fer: photos of faces and a video built from them.

Two sources, both licensed for redistribution (`edge_fer/samples/ATTRIBUTION.md`):

* the Face Research Lab London Set (DeBruine & Jones 2017, CC BY 4.0): real people, each
  photographed with a neutral and a smiling face. Eight of them are shipped, cropped to head
  and shoulders (`prepare_photos`, from the set's originals);
* SFHQ-T2I (Beniaguev 2024, MIT): synthetic, photorealistic faces made by FLUX.1-schnell, each
  showing one expression: happiness, sadness, anger, surprise, fear or none. Twelve are
  shipped (`prepare_expressions`, cut from the dataset's expression figure), and a group
  photo of six of them (`build_group_photo`).

`demo_faces_640x480.mp4` is built from those files alone (`build_sample_video`): two faces side
by side, first the London people turning from neutral to smiling and back (a new pair every
6 s), then the SFHQ faces (a new face every 4 s in each half). It is the daemon's source of
last resort (no camera, no FER2013 demo) and what the README's photo example runs on.
`tools/make_sample_video.py` rebuilds all of it.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import struct
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge_fer.core.paths import SAMPLES_DIR, SHIPPED_YUNET
from edge_fer.core.safe_io import check_replaceable, write_atomic

# Who appears, as (left slot, right slot) pairs in order: the set's face ids.
PAIRS = (("030", "022"), ("008", "025"), ("064", "172"), ("036", "129"))
POSES = ("neutral", "smiling")
ATTRIBUTION = (
    "Face Research Lab London Set (Version 5): DeBruine, L. & Jones, B. (2017), "
    "https://doi.org/10.6084/m9.figshare.5047666.v5, CC BY 4.0 "
    "(https://creativecommons.org/licenses/by/4.0/). Changed by edge-fer: cropped, scaled"
)
ARTIST = "Lisa DeBruine and Benedict Jones (Face Research Lab London Set)"
PHOTO_SIZE = (400, 600)  # w, h of a shipped photo: head and shoulders
CROP_SIDE_W = 900  # of the originals' 1350 x 1350, centred on the face

# SFHQ-T2I's figures/textual_search_1_expression_top_8_matches.jpg (2360 x 2390): an 8 x 8 grid
# of 256 px faces, one row per text query, the best 8 matches of each from left to right.
SFHQ_FIGURE = "textual_search_1_expression_top_8_matches.jpg"
SFHQ_ROWS = ("happy", "sad", "angry", "surprised", "neutral", "disgusted", "fearful")
SFHQ_TILE, SFHQ_PITCH, SFHQ_X0, SFHQ_Y0 = 256, 298, 10, 38


@dataclass(frozen=True)
class Expression:
    """One shipped SFHQ-T2I face: the figure's row query and match rank, the source image's
    name in the dataset, and the emotion it shows (FER2013's label)."""

    query: str
    rank: int
    source: str
    label: str

    @property
    def name(self) -> str:
        return f"sfhq_{self.label}_{self.source.rsplit('_', 1)[-1].removesuffix('.jpg')}"

    def box(self) -> tuple[int, int, int, int]:
        """x, y, w, h of this face's tile in the figure."""
        row, col = SFHQ_ROWS.index(self.query), self.rank - 1
        return SFHQ_X0 + SFHQ_PITCH * col, SFHQ_Y0 + SFHQ_PITCH * row, SFHQ_TILE, SFHQ_TILE


# Only FLUX.1-schnell's images (Apache-2.0 model) are shipped; the source names are as captioned
# in the figure. The labels are the figure's text queries, checked by eye. No disgust: none of
# the figure's "disgusted" faces clearly shows it. One row per half of the video, in order.
EXPRESSIONS = (
    (
        Expression("happy", 1, "FLUX1_schnell_image_0032566.jpg", "happy"),
        Expression("sad", 3, "FLUX1_schnell_image_0036373.jpg", "sad"),
        Expression("angry", 7, "FLUX1_schnell_image_0042723.jpg", "angry"),
        Expression("surprised", 4, "FLUX1_schnell_image_0010821.jpg", "surprise"),
        Expression("fearful", 7, "FLUX1_schnell_image_0055118.jpg", "fear"),
        Expression("neutral", 2, "FLUX1_schnell_image_0016769.jpg", "neutral"),
    ),
    (
        Expression("sad", 6, "FLUX1_schnell_image_0023542.jpg", "sad"),
        Expression("angry", 3, "FLUX1_schnell_image_0053014.jpg", "angry"),
        Expression("happy", 3, "FLUX1_schnell_image_0039945.jpg", "happy"),
        Expression("fearful", 6, "FLUX1_schnell_image_0006890.jpg", "fear"),
        Expression("neutral", 3, "FLUX1_schnell_image_0006468.jpg", "neutral"),
        Expression("happy", 6, "FLUX1_schnell_image_0040400.jpg", "happy"),
    ),
)
GROUP_PHOTO = "sfhq_group_of_six.jpg"
SFHQ_ATTRIBUTION = (
    "SFHQ-T2I (Synthetic Faces High Quality - Text 2 Image), David Beniaguev 2024, "
    "https://github.com/SelfishGene/SFHQ-T2I-dataset, MIT licence; a synthetic face made by "
    "FLUX.1-schnell, not a real person. Cut from the dataset's expression figure by edge-fer"
)
SFHQ_ARTIST = "David Beniaguev (SFHQ-T2I), generated with FLUX.1-schnell"


def photo_path(face_id: str, pose: str, folder: Path = SAMPLES_DIR) -> Path:
    """The shipped photo of one person in one pose."""
    return folder / f"london_{face_id}_{pose}.jpg"


def prepare_photos(originals: Path, out: Path = SAMPLES_DIR) -> list[Path]:
    """Crop and scale the set's originals (`neutral_front/NNN_03.jpg`,
    `smiling_front/NNN_08.jpg`) to the shipped photos, with the attribution in their EXIF.
    Needs Pillow (the dev extra) for the EXIF; only a maintainer runs this."""
    written = []
    detector = cv2.FaceDetectorYN.create(str(SHIPPED_YUNET), "", (320, 240), 0.7, 0.3, 50)
    for pair in PAIRS:
        for face_id in pair:
            for pose, name in (
                ("neutral", f"neutral_front/{face_id}_03.jpg"),
                ("smiling", f"smiling_front/{face_id}_08.jpg"),
            ):
                image = cv2.imread(str(originals / name))
                if image is None:
                    raise OSError(f"cannot read {originals / name}")
                x, w = _crop_x(detector, image), CROP_SIDE_W
                crop = cv2.resize(image[:, x : x + w], PHOTO_SIZE, interpolation=cv2.INTER_AREA)
                target = photo_path(face_id, pose, out)
                rights = "CC BY 4.0, Lisa DeBruine and Benedict Jones"
                _save_with_notice(crop, target, f"Face {face_id}, {pose}. {ATTRIBUTION}", ARTIST, rights, 88)
                written.append(target)
    return written


def _crop_x(detector: cv2.FaceDetectorYN, image: np.ndarray) -> int:
    h, w = image.shape[:2]
    detector.setInputSize((w, h))
    _, faces = detector.detect(image)
    if faces is None:
        raise ValueError("no face found in an original photo")
    x, _, bw, _ = faces[0][:4]
    return int(np.clip(x + bw / 2 - CROP_SIDE_W / 2, 0, w - CROP_SIDE_W))


def _eyes(detector: cv2.FaceDetectorYN, image: np.ndarray) -> np.ndarray:
    """The two eye centres YuNet finds (right eye, left eye), as a 2x2 array."""
    h, w = image.shape[:2]
    detector.setInputSize((w, h))
    _, faces = detector.detect(image)
    if faces is None:
        raise ValueError("no face found in a sample photo")
    return np.array(faces[0][4:8], np.float32).reshape(2, 2)


def _aligned_pair(detector: cv2.FaceDetectorYN, face_id: str, folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """A person's neutral photo and their smiling one moved onto it (eyes on eyes), so the
    turn from one to the other is a change of expression, not a jump of the head."""
    neutral = cv2.imread(str(photo_path(face_id, "neutral", folder)))
    smiling = cv2.imread(str(photo_path(face_id, "smiling", folder)))
    if neutral is None or smiling is None:
        raise OSError(f"cannot read the sample photos of face {face_id} in {folder}")
    src, dst = _eyes(detector, smiling), _eyes(detector, neutral)
    # similarity transform from two point pairs: scale + rotation from the eye vectors
    vs, vd = src[1] - src[0], dst[1] - dst[0]
    scale = float(np.linalg.norm(vd) / np.linalg.norm(vs))
    angle = float(np.arctan2(vd[1], vd[0]) - np.arctan2(vs[1], vs[0]))
    c, s = scale * np.cos(angle), scale * np.sin(angle)
    m = np.array([[c, -s, 0.0], [s, c, 0.0]], np.float32)
    m[:, 2] = dst.mean(0) - m[:, :2] @ src.mean(0)
    h, w = neutral.shape[:2]
    moved = cv2.warpAffine(smiling, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return neutral, moved


@dataclass(frozen=True)
class Timeline:
    """When each slot's person smiles: frames per person, and the pose's ramps."""

    per_person: int = 180  # 6 s at 30 fps
    smile_from: int = 60
    smile_to: int = 140
    ramp: int = 9  # frames of the turn (0.3 s)

    def smile(self, t: int) -> float:
        """How far into the smile (0 neutral .. 1 smiling) frame t of a person's turn is."""
        up = np.clip((t - self.smile_from) / self.ramp, 0, 1)
        down = np.clip((self.smile_to - t) / self.ramp, 0, 1)
        return float(min(up, down))


def find_ffmpeg() -> str:
    """An ffmpeg with libx264: `EDGE_FER_FFMPEG`, imageio-ffmpeg's bundled one, or the PATH's."""
    exe = os.environ.get("EDGE_FER_FFMPEG") or shutil.which("ffmpeg")
    if not exe:
        try:
            import imageio_ffmpeg  # a pip package with a static ffmpeg; only this tool uses it
        except ImportError:
            raise OSError(
                "no ffmpeg found to encode the video; pip install imageio-ffmpeg, apt install ffmpeg, "
                "or set EDGE_FER_FFMPEG"
            ) from None
        exe = imageio_ffmpeg.get_ffmpeg_exe()
    return exe


def expression_path(face: Expression, folder: Path = SAMPLES_DIR) -> Path:
    """The shipped photo of one SFHQ-T2I face."""
    return folder / f"{face.name}.jpg"


def _save_with_notice(
    image: np.ndarray, target: Path, description: str, artist: str, rights: str, quality: int = 90
) -> None:
    from PIL import Image  # the dev extra's; the daemon never needs it

    exif = Image.Exif()
    exif[0x010E] = description  # ImageDescription
    exif[0x013B] = artist  # Artist
    exif[0x8298] = rights  # Copyright
    encoded = io.BytesIO()
    Image.fromarray(image[:, :, ::-1]).save(encoded, format="JPEG", quality=quality, exif=exif)
    write_atomic(target, encoded.getvalue(), 0o644)


def prepare_expressions(figure: Path, out: Path = SAMPLES_DIR) -> list[Path]:
    """Cut the shipped SFHQ-T2I faces out of the dataset's expression figure (`SFHQ_FIGURE`),
    with the attribution in their EXIF. Needs Pillow (the dev extra); only a maintainer runs this."""
    image = cv2.imread(str(figure))
    if image is None:
        raise OSError(f"cannot read {figure}")
    if image.shape[:2] != (2390, 2360):
        raise ValueError(
            f"{figure} is {image.shape[1]}x{image.shape[0]}, not SFHQ-T2I's 2360x2390 {SFHQ_FIGURE}"
        )
    written = []
    for face in (f for row in EXPRESSIONS for f in row):
        x, y, w, h = face.box()
        target = expression_path(face, out)
        description = f"{face.label} ({face.source}). {SFHQ_ATTRIBUTION}"
        _save_with_notice(
            image[y : y + h, x : x + w], target, description, SFHQ_ARTIST, "MIT, David Beniaguev"
        )
        written.append(target)
    return written


def build_group_photo(folder: Path = SAMPLES_DIR) -> Path:
    """Six shipped SFHQ-T2I faces, one per expression, in a 3 x 2 grid: the README's photo
    example with several faces and several emotions."""
    faces = EXPRESSIONS[0]
    gap, side = 16, SFHQ_TILE
    sheet = np.full((2 * side + 3 * gap, 3 * side + 4 * gap, 3), 40, np.uint8)
    for i, face in enumerate(faces):
        tile = cv2.imread(str(expression_path(face, folder)))
        if tile is None:
            raise OSError(f"cannot read {expression_path(face, folder)}")
        r, c = divmod(i, 3)
        y, x = gap + r * (side + gap), gap + c * (side + gap)
        sheet[y : y + side, x : x + side] = cv2.resize(tile, (side, side), interpolation=cv2.INTER_AREA)
    target = folder / GROUP_PHOTO
    order = ", ".join(f.label for f in faces)
    description = f"Six faces, left to right and top to bottom: {order}. {SFHQ_ATTRIBUTION}"
    _save_with_notice(sheet, target, description, SFHQ_ARTIST, "MIT, David Beniaguev")
    return target


def _expression_slot(tile: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """An SFHQ face in one half of the video: the face in the middle, over a blurred, darker
    copy of itself that fills the rest of the half."""
    w, h = size
    cover = max(w, h)
    back = cv2.resize(tile, (cover, cover), interpolation=cv2.INTER_LINEAR)
    x0, y0 = (cover - w) // 2, (cover - h) // 2
    slot = (cv2.GaussianBlur(back[y0 : y0 + h, x0 : x0 + w], (0, 0), 12) * 0.55).astype(np.uint8)
    side = min(w, h) - 20
    face = cv2.resize(tile, (side, side), interpolation=cv2.INTER_AREA)
    x, y = (w - side) // 2, (h - side) // 2
    slot[y : y + side, x : x + side] = face
    return slot


@dataclass(frozen=True)
class SlotView:
    """What one half of one frame shows: the image, who it is and which expression."""

    image: np.ndarray
    who: str
    pose: str
    t: int  # frames into this person's turn (drives the camera sway)


def _london_part(photos: dict[str, tuple[np.ndarray, np.ndarray]], line: Timeline):
    frames = line.per_person * len(PAIRS)
    for i in range(frames):
        views = []
        for slot in range(2):
            # the right slot runs half a turn behind, so the two do not smile together
            j = (i - slot * line.per_person // 2) % frames
            face_id = PAIRS[j // line.per_person][slot]
            t = j % line.per_person
            a = line.smile(t)
            neutral, smiling = photos[face_id]
            image = (
                cv2.addWeighted(neutral, 1 - a, smiling, a, 0) if 0 < a < 1 else (smiling if a else neutral)
            )
            pose = "smiling" if a == 1 else "neutral" if a == 0 else "turning"
            views.append(SlotView(image, face_id, pose, t))
        yield views


def _expressions_part(tiles: list[list[np.ndarray]], per_face: int):
    frames = per_face * len(EXPRESSIONS[0])
    for i in range(frames):
        views = []
        for slot, row in enumerate(EXPRESSIONS):
            j = (i - slot * per_face // 2) % frames
            k, t = divmod(j, per_face)
            views.append(SlotView(tiles[slot][k], row[k].name, row[k].label, t))
        yield views


def build_sample_video(
    out: Path, folder: Path = SAMPLES_DIR, size: tuple[int, int] = (640, 480), fps: float = 30.0
) -> dict:
    """Write the demo video (H.264 through ffmpeg, small enough to ship) with the attribution
    in its metadata, and its `.json` sidecar (who is in each half, and their expression, per
    frame); returns the sidecar."""
    detector = cv2.FaceDetectorYN.create(str(SHIPPED_YUNET), "", (320, 240), 0.7, 0.3, 50)
    line = Timeline()
    per_face = 120  # 4 s at 30 fps for each SFHQ face
    w, h = size
    slot_w = w // 2
    photos = {fid: _aligned_pair(detector, fid, folder) for pair in PAIRS for fid in pair}
    tiles = []
    for row in EXPRESSIONS:
        images = [cv2.imread(str(expression_path(face, folder))) for face in row]
        if any(image is None for image in images):
            raise OSError(f"cannot read the shipped SFHQ-T2I faces in {folder}")
        tiles.append([_expression_slot(image, (slot_w, h)) for image in images])
    frames = line.per_person * len(PAIRS) + per_face * len(EXPRESSIONS[0])
    out.parent.mkdir(parents=True, exist_ok=True)
    tags = {
        "comment": f"{ATTRIBUTION}; then {SFHQ_ATTRIBUTION}. Composited into a video by edge-fer "
        "(tools/make_sample_video.py)",
        "artist": f"{ARTIST}; {SFHQ_ARTIST}",
        "copyright": "CC BY 4.0, Lisa DeBruine and Benedict Jones; MIT, David Beniaguev",
        "title": "edge-fer demo: Face Research Lab London Set and SFHQ-T2I expressions",
    }
    command = [find_ffmpeg(), "-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo"]
    command += ["-pix_fmt", "bgr24", "-s", f"{w}x{h}", "-r", f"{fps:g}", "-i", "-"]
    command += ["-c:v", "libx264", "-preset", "slow", "-crf", "23", "-pix_fmt", "yuv420p"]
    for key, value in tags.items():
        command += ["-metadata", f"{key}={value}"]
    check_replaceable(out)  # before minutes of encoding; ffmpeg writes a private temp file
    people, poses = [], []
    with tempfile.TemporaryDirectory(prefix="edge-fer-sample-") as scratch:
        encoded = Path(scratch) / out.name
        encoder = subprocess.Popen([*command, str(encoded)], stdin=subprocess.PIPE)
        try:
            parts = (_london_part(photos, line), _expressions_part(tiles, per_face))
            for views in (v for part in parts for v in part):
                frame = np.empty((h, w, 3), np.uint8)
                for slot, view in enumerate(views):
                    frame[:, slot * slot_w : (slot + 1) * slot_w] = _camera_view(
                        view.image, (slot_w, h), view.t, slot
                    )
                encoder.stdin.write(frame.tobytes())
                people.append([v.who for v in views])
                poses.append([v.pose for v in views])
        finally:
            encoder.stdin.close()
            code = encoder.wait()
        if code:
            raise OSError(f"ffmpeg could not write {out} (exit {code})")
        write_atomic(out, encoded.read_bytes(), 0o644)
    meta = {
        "frames": frames,
        "fps": fps,
        "size": [w, h],
        "source": f"{ATTRIBUTION}; {SFHQ_ATTRIBUTION}",
        "parts": [
            {"from": 0, "material": "Face Research Lab London Set", "poses": list(POSES)},
            {
                "from": line.per_person * len(PAIRS),
                "material": "SFHQ-T2I",
                "poses": sorted({f.label for row in EXPRESSIONS for f in row}),
            },
        ],
        "people": people,
        "poses": poses,
    }
    write_atomic(out.with_suffix(".json"), (json.dumps(meta, separators=(",", ":")) + "\n").encode(), 0o644)
    return meta


def _camera_view(image: np.ndarray, size: tuple[int, int], t: int, slot: int) -> np.ndarray:
    """The photo as a slowly drifting camera would frame it: a gentle zoom and sway."""
    w, h = size
    ih, iw = image.shape[:2]
    phase = 2 * np.pi * t / 180 + slot * 1.3
    zoom = 1.04 + 0.03 * np.sin(phase)
    scale = w / iw * zoom
    dx = (iw * scale - w) / 2 + 6 * np.sin(phase * 0.5)
    dy = (ih * scale - h) / 2 + 4 * np.cos(phase)
    m = np.array([[scale, 0, -dx], [0, scale, -dy]], np.float32)
    return cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)


def read_mp4_metadata(path: Path) -> dict[str, str]:
    """The text tags of an MP4's `moov/udta/meta/ilst` (ffmpeg's `-metadata comment=...` is
    `\xa9cmt`), read without ffprobe."""
    data = path.read_bytes()

    def children(start: int, end: int):
        while start + 8 <= end:
            size, kind = struct.unpack(">I4s", data[start : start + 8])
            if size < 8:
                return
            yield kind, start + 8, start + size
            start += size

    tags: dict[str, str] = {}
    for kind, s, e in children(0, len(data)):
        if kind != b"moov":
            continue
        for k2, s2, e2 in children(s, e):
            if k2 != b"udta":
                continue
            for k3, s3, e3 in children(s2, e2):
                if k3 != b"meta":
                    continue
                for k4, s4, e4 in children(s3 + 4, e3):
                    if k4 != b"ilst":
                        continue
                    for key, s5, e5 in children(s4, e4):
                        for k6, s6, e6 in children(s5, e5):
                            if k6 == b"data":
                                tags[key.decode("latin-1")] = data[s6 + 8 : e6].decode()
    return tags

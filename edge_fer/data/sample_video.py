"""The demo that ships with edge-fer: photos of real people and a video built from them.

The material is the Face Research Lab London Set (DeBruine & Jones 2017, CC BY 4.0): each
person photographed with a neutral and a smiling face. `edge_fer/samples/` holds eight of
them, cropped to head and shoulders (`prepare_photos`, from the set's originals), and
`london_faces_640x480.mp4`, built from those photos alone (`build_sample_video`): two people
side by side, each turning from neutral to smiling and back, a new pair every 6 s. It is the
daemon's source of last resort (no camera, no FER2013 demo) and what the README's photo
example runs on. `tools/make_sample_video.py` rebuilds both.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge_fer.core.paths import SAMPLES_DIR, SHIPPED_YUNET

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


def photo_path(face_id: str, pose: str, folder: Path = SAMPLES_DIR) -> Path:
    """The shipped photo of one person in one pose."""
    return folder / f"london_{face_id}_{pose}.jpg"


def prepare_photos(originals: Path, out: Path = SAMPLES_DIR) -> list[Path]:
    """Crop and scale the set's originals (`neutral_front/NNN_03.jpg`,
    `smiling_front/NNN_08.jpg`) to the shipped photos, with the attribution in their EXIF.
    Needs Pillow (the dev extra) for the EXIF; only a maintainer runs this."""
    from PIL import Image  # the dev extra's; the daemon never needs it

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
                exif = Image.Exif()
                exif[0x010E] = f"Face {face_id}, {pose}. {ATTRIBUTION}"  # ImageDescription
                exif[0x013B] = ARTIST  # Artist
                exif[0x8298] = "CC BY 4.0, Lisa DeBruine and Benedict Jones"  # Copyright
                Image.fromarray(crop[:, :, ::-1]).save(target, quality=88, exif=exif)
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


def build_sample_video(
    out: Path, folder: Path = SAMPLES_DIR, size: tuple[int, int] = (640, 480), fps: float = 30.0
) -> dict:
    """Write the demo video (H.264 through ffmpeg, small enough to ship) with the attribution
    in its metadata, and its `.json` sidecar (who is in each slot, and their pose, per frame);
    returns the sidecar."""
    detector = cv2.FaceDetectorYN.create(str(SHIPPED_YUNET), "", (320, 240), 0.7, 0.3, 50)
    line = Timeline()
    w, h = size
    slot_w = w // 2
    photos = {fid: _aligned_pair(detector, fid, folder) for pair in PAIRS for fid in pair}
    frames = line.per_person * len(PAIRS)
    out.parent.mkdir(parents=True, exist_ok=True)
    tags = {
        "comment": ATTRIBUTION + ", composited into a video by edge-fer (tools/make_sample_video.py)",
        "artist": ARTIST,
        "copyright": "CC BY 4.0, Lisa DeBruine and Benedict Jones",
        "title": "edge-fer demo: Face Research Lab London Set, neutral and smiling",
    }
    command = [find_ffmpeg(), "-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo"]
    command += ["-pix_fmt", "bgr24", "-s", f"{w}x{h}", "-r", f"{fps:g}", "-i", "-"]
    command += ["-c:v", "libx264", "-preset", "slow", "-crf", "23", "-pix_fmt", "yuv420p"]
    for key, value in tags.items():
        command += ["-metadata", f"{key}={value}"]
    encoder = subprocess.Popen([*command, str(out)], stdin=subprocess.PIPE)
    people, poses = [], []
    try:
        for i in range(frames):
            frame = np.empty((h, w, 3), np.uint8)
            who, pose = [], []
            for slot in range(2):
                # the right slot runs half a turn behind, so the two do not smile together
                j = (i - slot * line.per_person // 2) % frames
                face_id = PAIRS[j // line.per_person][slot]
                t = j % line.per_person
                a = line.smile(t)
                neutral, smiling = photos[face_id]
                image = (
                    cv2.addWeighted(neutral, 1 - a, smiling, a, 0)
                    if 0 < a < 1
                    else (smiling if a else neutral)
                )
                frame[:, slot * slot_w : (slot + 1) * slot_w] = _camera_view(image, (slot_w, h), t, slot)
                who.append(face_id)
                pose.append("smiling" if a == 1 else "neutral" if a == 0 else "turning")
            encoder.stdin.write(frame.tobytes())
            people.append(who)
            poses.append(pose)
    finally:
        encoder.stdin.close()
        code = encoder.wait()
    if code:
        raise OSError(f"ffmpeg could not write {out} (exit {code})")
    meta = {
        "frames": frames,
        "fps": fps,
        "size": [w, h],
        "source": ATTRIBUTION,
        "people": people,
        "poses": poses,
    }
    out.with_suffix(".json").write_text(json.dumps(meta, separators=(",", ":")) + "\n")
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

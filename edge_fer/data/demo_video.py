"""Test and demo material built from FER2013: a video of real faces, and face pixelation.

`build_demo_video` composites FER2013 faces into moving 640x480 frames (the daemon's
default source when no camera is found, and the video every end-to-end test and benchmark
runs on). It is built locally from the dataset and never committed; a JSON sidecar lists
the true label of every face per frame. `pixelate_faces` hides faces in screenshots.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from edge_fer.data.fer2013 import load_split
from edge_fer.emotions.labels import EMOTIONS
from edge_fer.emotions.preprocess import PreprocessSpec


def face_patch(face: np.ndarray, size: int) -> np.ndarray:
    """Upscale a 48x48 face and feather it into an oval head on a plain surround.

    FER2013 faces are tight crops with no head outline; detectors look for one. Measured on
    100 PublicTest faces at 201 px: YuNet finds 12% of them pasted as bare tiles with
    replicated borders, 40% inside an oval head; Haar 36% -> 47%. The face's tones are
    mirrored past its crop and the feathering happens there, so every pixel of the FER2013
    crop reaches the video unblended: blending inside it cost the classifier 1.5 points on
    true boxes, a loss of the demo's making that no daemon setting should be tuned to.
    """
    big = cv2.resize(face, (size, size), interpolation=cv2.INTER_CUBIC).astype(np.float32)
    pad = size // 3
    full = size + 2 * pad
    yy, xx = np.mgrid[0:full, 0:full]
    centre = full / 2
    oval = ((xx - centre) / (size * 0.62)) ** 2 + ((yy - centre * 1.02) / (size * 0.78)) ** 2 <= 1
    skin = 0.9 * float(np.median(big[-size // 4 :]))  # the chin's tone, a little darker
    head = cv2.GaussianBlur(np.where(oval, skin, 110.0).astype(np.float32), (0, 0), size / 25)
    sigma = size / 20
    reach = int(round(2.5 * sigma))  # the mask is ~1 (> 0.99) up to the crop's edge
    mask = np.zeros((full, full), np.float32)
    mask[pad - reach : pad + size + reach, pad - reach : pad + size + reach] = 1.0
    mask = cv2.GaussianBlur(mask, (0, 0), sigma)
    mask[pad : pad + size, pad : pad + size] = 1.0
    # Outside the crop, the face's mirrored tones, blurred so no mirrored eye makes a face.
    around = cv2.GaussianBlur(
        cv2.copyMakeBorder(big, pad, pad, pad, pad, cv2.BORDER_REFLECT_101), (0, 0), sigma
    )
    around[pad : pad + size, pad : pad + size] = big
    return (mask * around + (1 - mask) * head).clip(0, 255).astype(np.uint8)


def build_demo_video(
    data: Path,
    out: Path,
    frames: int,
    faces: int,
    hold: int,
    seed: int,
    size: tuple[int, int] = (640, 480),
    fps: float = 30.0,
) -> dict:
    """Write the video and its `.json` truth sidecar; returns the sidecar's content."""
    faceset = load_split(data, "public", PreprocessSpec(input_size=48))
    rng = np.random.default_rng(seed)
    w, h = size
    face_px = int(min(w / faces, h) * 0.42)
    out.parent.mkdir(parents=True, exist_ok=True)
    # .mkv/.avi: lossless FFV1, so every machine decodes the very same frames; else MPEG-4.
    codec = "FFV1" if out.suffix.lower() in (".mkv", ".avi") else "mp4v"
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*codec), fps, (w, h))
    if not writer.isOpened():
        raise OSError(f"cannot write video {out}")
    yy, xx = np.mgrid[0:h, 0:w]
    background = (90 + 40 * np.sin(xx / 90.0) + 30 * np.cos(yy / 70.0)).astype(np.uint8)
    truth, boxes, sources = [], [], []
    picks = rng.integers(0, len(faceset), size=(frames // hold + 2, faces))
    for i in range(frames):
        frame = cv2.cvtColor(background, cv2.COLOR_GRAY2BGR)
        labels, frame_boxes, frame_sources = [], [], []
        for slot in range(faces):
            idx = picks[i // hold, slot]
            patch = face_patch(faceset.images[idx], face_px)
            ph, pw = patch.shape
            slot_w = w // faces
            phase = 2 * np.pi * (i / 240.0 + slot * 0.37)
            cx = slot * slot_w + slot_w // 2 + int((slot_w - pw) * 0.3 * np.sin(phase))
            cy = h // 2 + int((h - ph) * 0.3 * np.cos(phase * 0.7))
            x0, y0 = int(np.clip(cx - pw // 2, 0, w - pw)), int(np.clip(cy - ph // 2, 0, h - ph))
            frame[y0 : y0 + ph, x0 : x0 + pw] = patch[:, :, None]
            labels.append(EMOTIONS[faceset.labels[idx]])
            pad = (pw - face_px) // 2  # the FER face inside its oval head
            frame_boxes.append([x0 + pad, y0 + pad, face_px, face_px])
            frame_sources.append(faceset.sources[idx])
        noise = rng.normal(0, 3, frame.shape)
        writer.write(np.clip(frame + noise, 0, 255).astype(np.uint8))
        truth.append(labels)
        boxes.append(frame_boxes)
        sources.append(frame_sources)
    writer.release()
    meta = {
        "frames": frames,
        "faces": faces,
        "size": list(size),
        "fps": fps,
        "labels": truth,
        "boxes": boxes,
        "sources": sources,
    }
    out.with_suffix(".json").write_text(json.dumps(meta))
    return meta


def pixelate_faces(image: np.ndarray, boxes: list[list[int]], blocks: int = 6) -> np.ndarray:
    """Pixelate the inside of each box (a 3 px rim is kept, so the drawn box stays sharp)."""
    out = image.copy()
    h, w = out.shape[:2]
    for x, y, bw, bh in boxes:
        x0, y0 = max(0, x + 3), max(0, y + 3)
        x1, y1 = min(w, x + bw - 3), min(h, y + bh - 3)
        if x1 - x0 < blocks or y1 - y0 < blocks:
            continue
        small = cv2.resize(out[y0:y1, x0:x1], (blocks, blocks), interpolation=cv2.INTER_AREA)
        out[y0:y1, x0:x1] = cv2.resize(small, (x1 - x0, y1 - y0), interpolation=cv2.INTER_NEAREST)
    return out

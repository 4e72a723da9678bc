#!/usr/bin/env python3
"""Where each detector's box sits relative to FER2013's own crop, measured on train faces.

    python tools/measure_face_boxes.py [--faces 2000] [--size 134]

The classifier was trained on FER2013's crops, so the daemon should cut the face the way
FER2013 did. Each detector draws its box a little differently (YuNet's runs from the brow to
below the chin). This pastes FER2013 *train* faces into a frame the way the demo video does
(never PublicTest, which is kept for evaluation), runs every detector like the daemon does
(frame scaled to 320 px wide), and prints the median offset of the box centre and its size
relative to the true crop square. With --raw, YuNet's own boxes: the numbers
`YuNetDetector` maps each box back with; without, what is left after that mapping.
"""

from __future__ import annotations

import argparse
import sys

import cv2
import numpy as np

from edge_fer.core.paths import DEFAULT_DATA, DEFAULT_YUNET
from edge_fer.core.user_input import FlagParser, path_arg
from edge_fer.data.demo_video import face_patch


def measure(detector, faces: np.ndarray, size: int, frame_size=(640, 480), detect_width=320) -> dict:
    """Median box geometry of `detector` against the known crop squares of `faces`."""
    w, h = frame_size
    scale = detect_width / w
    rows = []
    for face in faces:
        frame = np.full((h, w), 110, np.uint8)
        patch = face_patch(face, size)
        ph, pw = patch.shape
        x0, y0 = (w - pw) // 2, (h - ph) // 2
        frame[y0 : y0 + ph, x0 : x0 + pw] = patch
        pad = (pw - size) // 2
        tx, ty = x0 + pad, y0 + pad  # the FER crop, size x size
        small = cv2.resize(frame, (detect_width, int(round(h * scale))), interpolation=cv2.INTER_AREA)
        found = detector.detect(cv2.cvtColor(small, cv2.COLOR_GRAY2BGR))
        boxes = [tuple(v / scale for v in b) for b in found]
        cx, cy = tx + size / 2, ty + size / 2
        hits = [b for b in boxes if b[0] <= cx <= b[0] + b[2] and b[1] <= cy <= b[1] + b[3]]
        if not hits:
            continue
        bx, by, bw, bh = hits[0]
        side = max(bw, bh)
        rows.append(((bx + bw / 2 - cx) / size, (by + bh / 2 - cy) / size, side / size))
    if not rows:
        return {"found": 0, "faces": len(faces)}
    arr = np.array(rows)
    q1, med, q3 = np.percentile(arr, [25, 50, 75], axis=0)
    return {
        "faces": len(faces),
        "found": len(rows),
        "centre_dx": float(med[0]),
        "centre_dy": float(med[1]),
        "side": float(med[2]),
        "iqr": {"dx": float(q3[0] - q1[0]), "dy": float(q3[1] - q1[1]), "side": float(q3[2] - q1[2])},
    }


def main(argv: list[str] | None = None) -> int:
    from edge_fer.data.fer2013 import DatasetError, load_split
    from edge_fer.emotions.preprocess import PreprocessSpec
    from edge_fer.faces.detect import DetectorError, HaarDetector, YuNetDetector

    p = FlagParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", type=path_arg, default=DEFAULT_DATA)
    p.add_argument("--yunet-model", type=path_arg, default=DEFAULT_YUNET)
    p.add_argument("--faces", type=int, default=2000, help="train faces to measure on")
    p.add_argument("--size", type=int, default=134, help="face size in the 640x480 frame (the demo's)")
    p.add_argument("--raw", action="store_true", help="YuNet's own boxes, before the FER2013 mapping")
    args = p.parse_args(argv)
    if args.faces < 1 or not 24 <= args.size <= 400:
        p.error("--faces must be >= 1 and --size within 24..400")
    try:
        train = load_split(args.data, "train", PreprocessSpec(input_size=48))
        detectors = {"haar": HaarDetector(min_face=24), "yunet": YuNetDetector(args.yunet_model, 0.6, 24)}
        if args.raw:
            detectors["yunet"].FER_SIDE, detectors["yunet"].FER_CENTRE_DY = 1.0, 0.0
    except (DatasetError, DetectorError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    idx = np.random.default_rng(0).choice(len(train), size=min(args.faces, len(train)), replace=False)
    print("| detector | found | centre dx | centre dy | side | IQR dx / dy / side |")
    print("|---|---:|---:|---:|---:|---|")
    for name, detector in detectors.items():
        r = measure(detector, train.images[idx], args.size)
        if not r["found"]:
            print(f"| {name} | 0/{r['faces']} | | | | |")
            continue
        iqr = r["iqr"]
        print(
            f"| {name} | {r['found']}/{r['faces']} | {r['centre_dx']:+.3f} | {r['centre_dy']:+.3f} | "
            f"{r['side']:.3f} | {iqr['dx']:.3f} / {iqr['dy']:.3f} / {iqr['side']:.3f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

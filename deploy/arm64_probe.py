#!/usr/bin/env python3
"""Where two machines' daemons part ways: the same model on the same faces, the same video's
decoded frames, the same detector on them. Run once per machine, then compare.

    python deploy/arm64_probe.py probe --data FER2013 --video demo.mp4 --out probe-arm64.json
    python deploy/arm64_probe.py compare probe-x86.json probe-arm64.json

`probe` classifies every PublicTest face (identical 48x48 inputs) with the native runtime and
records each decoded video frame's digest and the Haar boxes on it. `compare` prints one line:
model agreement and accuracy on both sides, identical frames, identical boxes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path


def probe(data: Path, video: Path, out: Path, threads: int) -> int:
    import cv2
    import numpy as np

    from edge_fer.config import DEFAULT_MODEL
    from edge_fer.data.fer2013 import load_split
    from edge_fer.emotions.classifier import PteClassifier
    from edge_fer.faces.detect import HaarDetector

    classifier = PteClassifier(DEFAULT_MODEL, threads=threads, runtime="native")
    faces = load_split(data, "public", classifier.spec)
    predictions = np.concatenate(
        [classifier.classify_batch(faces.images[i : i + 15]).argmax(1) for i in range(0, len(faces), 15)]
    )
    detector = HaarDetector()
    digests, boxes = [], []
    cap = cv2.VideoCapture(str(video))
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        digests.append(hashlib.sha256(frame.tobytes()).hexdigest()[:16])
        boxes.append(sorted(list(b) for b in detector.detect(frame)))
    cap.release()
    result = {
        "opencv": cv2.__version__,
        "numpy": np.__version__,
        "predictions": predictions.tolist(),
        "accuracy": float((predictions == faces.labels).mean()),
        "frame_digests": digests,
        "haar_boxes": boxes,
    }
    out.write_text(json.dumps(result) + "\n")
    accuracy = result["accuracy"]
    print(f"opencv {cv2.__version__}: {len(faces)} faces, accuracy {accuracy:.4f}; {len(digests)} frames")
    return 0


def compare(reference: Path, other: Path) -> dict:
    """Agreement of `other` with `reference`, part by part."""
    a, b = (json.loads(Path(p).read_text()) for p in (reference, other))
    pairs = list(zip(a["predictions"], b["predictions"], strict=True))
    frames = list(zip(a["frame_digests"], b["frame_digests"], strict=False))
    same_frames = [i for i, (x, y) in enumerate(frames) if x == y]
    boxes_same = sum(a["haar_boxes"][i] == b["haar_boxes"][i] for i in same_frames)
    return {
        "faces": len(pairs),
        "model_agreement": sum(x == y for x, y in pairs) / len(pairs),
        "accuracy": [a["accuracy"], b["accuracy"]],
        "opencv": [a["opencv"], b["opencv"]],
        "frames": len(frames),
        "identical_frames": len(same_frames),
        "identical_haar_boxes_on_identical_frames": boxes_same,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("probe")
    run.add_argument("--data", type=Path, required=True)
    run.add_argument("--video", type=Path, required=True)
    run.add_argument("--out", type=Path, required=True)
    run.add_argument("--threads", type=int, default=2)
    cmp = sub.add_parser("compare")
    cmp.add_argument("reference", type=Path)
    cmp.add_argument("other", type=Path)
    cmp.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    if args.command == "probe":
        from edge_fer.data.fer2013 import DatasetError
        from edge_fer.emotions.classifier import ModelError

        if not args.video.is_file():
            print(f"arm64_probe: video {args.video} does not exist", file=sys.stderr)
            return 2
        try:
            return probe(args.data, args.video, args.out, args.threads)
        except (ModelError, DatasetError, OSError) as exc:
            print(f"arm64_probe: {exc}", file=sys.stderr)
            return 2
    for path in (args.reference, args.other):
        if not path.is_file():
            print(f"arm64_probe: {path} does not exist", file=sys.stderr)
            return 2
    try:
        r = compare(args.reference, args.other)
    except (ValueError, KeyError, TypeError) as exc:
        print(f"arm64_probe: {args.reference} and {args.other} are not two probes of the same data ({exc})",
              file=sys.stderr)  # fmt: skip
        return 2
    if args.json:
        args.json.write_text(json.dumps(r, indent=2) + "\n")
    print(
        f"model on {r['faces']} identical faces: agreement {r['model_agreement']:.2%}, accuracy "
        f"{r['accuracy'][0]:.4f} vs {r['accuracy'][1]:.4f}; frames identical {r['identical_frames']}/"
        f"{r['frames']}, Haar boxes identical on {r['identical_haar_boxes_on_identical_frames']} of them "
        f"(opencv {r['opencv'][0]} vs {r['opencv'][1]})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Compare two daemons' `--events-jsonl` on the same video: same faces, same labels?

    python3 deploy/compare_events.py events-x86.jsonl events-arm64.jsonl [--json out.json]

Faces are paired per frame by box overlap (IoU >= 0.5). Prints one line: frames compared,
faces paired, and the share of paired faces whose raw and smoothed labels agree. Standard
library only, so any python3 can run it. Exit 1 when the files share no frame or no face.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def read_events(path: Path) -> dict[int, list[dict]]:
    """Frame number -> faces, from one daemon's events file."""
    frames: dict[int, list[dict]] = {}
    with path.open() as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                event = json.loads(line)
                frames[int(event["frame"])] = list(event["faces"])
            except (ValueError, KeyError, TypeError) as exc:
                raise SystemExit(f"compare_events: {path}:{n} is not a daemon event ({exc})") from None
    return frames


def iou(a: list[int], b: list[int]) -> float:
    """Overlap of two (x, y, w, h) boxes."""
    ix = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def compare(reference: dict[int, list[dict]], other: dict[int, list[dict]]) -> dict:
    """Agreement of `other` with `reference` over the frames both have."""
    frames = sorted(set(reference) & set(other))
    paired = raw_same = smoothed_same = unpaired = 0
    flips: list[dict] = []
    for frame in frames:
        left = list(other[frame])
        for face in reference[frame]:
            match = max(left, key=lambda f: iou(face["box"], f["box"]), default=None)
            if match is None or iou(face["box"], match["box"]) < 0.5:
                unpaired += 1
                continue
            left.remove(match)
            paired += 1
            raw_same += face["label"] == match["label"]
            smoothed_same += face["smoothed"] == match["smoothed"]
            if face["label"] != match["label"] and len(flips) < 20:
                flips.append(
                    {
                        "frame": frame,
                        "reference": [face["label"], face["score"]],
                        "other": [match["label"], match["score"]],
                    }
                )
        unpaired += len(left)
    return {
        "frames": len(frames),
        "faces_paired": paired,
        "faces_unpaired": unpaired,
        "label_agreement": raw_same / paired if paired else 0.0,
        "smoothed_agreement": smoothed_same / paired if paired else 0.0,
        "label_flips": flips,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("reference", type=Path)
    p.add_argument("other", type=Path)
    p.add_argument("--json", type=Path, help="also write the result here")
    args = p.parse_args(argv)
    for path in (args.reference, args.other):
        if not path.is_file():
            print(f"compare_events: {path} does not exist", file=sys.stderr)
            return 2
    result = compare(read_events(args.reference), read_events(args.other))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    line = (
        f"{result['frames']} frames, {result['faces_paired']} faces paired "
        f"({result['faces_unpaired']} unpaired): labels agree {result['label_agreement']:.1%}, "
        f"smoothed {result['smoothed_agreement']:.1%}"
    )
    print(line)
    if not result["frames"] or not result["faces_paired"]:
        print("compare_events: no common frame or face to compare", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""A picture of what the daemon draws: the real `edge-fer` run on a video of real faces.

    python tools/overlay_screenshot.py [--out benchmarks/results/overlay.png] [--frames 150]

Builds a 640x480 video of FER2013 PublicTest faces, runs the daemon on it headless with
`record:` on (so the frames are exactly what the screen shows) and its events, and saves the
last recorded frame that has faces. The inside of each face box is pixelated, so no dataset
face ends up in the repository; boxes, labels, confidence bars and HUD stay as drawn.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import yaml

from edge_fer.demo import build_demo_video, pixelate_faces
from edge_fer.paths import DEFAULT_DATA, PROJECT_ROOT


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--out", type=Path, default=PROJECT_ROOT / "benchmarks" / "results" / "overlay.png")
    p.add_argument("--frames", type=int, default=150)
    args = p.parse_args(argv)
    if not (args.data / "test").is_dir():
        print(f"error: FER2013 not found at {args.data}; pass --data", file=sys.stderr)
        return 2
    if args.frames < 10:
        print("error: --frames must be at least 10 (smoothing and fps need a few)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        tmp_dir = Path(tmp)
        video, recording = tmp_dir / "faces.mp4", tmp_dir / "overlay.mp4"
        events = tmp_dir / "events.jsonl"
        build_demo_video(args.data, video, frames=args.frames, faces=2, hold=45, seed=11)
        config = tmp_dir / "config.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "source": f"file:{video}",
                    "loop_video": False,
                    "record": str(recording),
                    "display": {"mode": "none", "top3": True},
                    "stats": {"path": None},
                }
            )
        )
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "edge_fer.cli",
                "--config",
                str(config),
                "--max-frames",
                str(args.frames),
                "--events-jsonl",
                str(events),
                "--log-level",
                "WARNING",
            ],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            print(f"error: the daemon failed: {done.stderr.strip().splitlines()[-1]}", file=sys.stderr)
            return 1
        lines = [json.loads(line) for line in events.read_text().splitlines()]
        with_faces = [e for e in lines if e["faces"]]
        if not with_faces:
            print("error: no face was found in the video; try more --frames", file=sys.stderr)
            return 1
        best = max(with_faces, key=lambda e: (len(e["faces"]), e["frame"]))
        capture = cv2.VideoCapture(str(recording))
        capture.set(cv2.CAP_PROP_POS_FRAMES, best["frame"])
        ok, frame = capture.read()
        capture.release()
        if not ok:
            print(f"error: cannot read frame {best['frame']} of the recording", file=sys.stderr)
            return 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out), pixelate_faces(frame, [f["box"] for f in best["faces"]]))
    labels = ", ".join(f"{f['smoothed']} ({f['score']:.2f})" for f in best["faces"])
    print(f"wrote {args.out}: frame {best['frame']}, {labels}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Build a 640x480 test video of real faces: FER2013 faces composited into moving frames.

    python tools/make_demo_video.py                       # runs/demo/faces_640x480.mp4
    python tools/make_demo_video.py --faces 2 --frames 300 --out /tmp/two.mp4

Each face slot shows one FER2013 face (upscaled, feathered into an oval head so detectors
see a head, not a tile) drifting across the frame, swapped every --hold frames.
The video is built locally from the dataset and never committed. A JSON sidecar lists the
true label of every face per frame. An .mkv or .avi name gets lossless FFV1 (the same frames
on every machine, e.g. to compare two daemons); otherwise MPEG-4.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edge_fer.core.paths import DEFAULT_DATA
from edge_fer.core.user_input import FlagParser, path_arg
from edge_fer.data.demo_video import build_demo_video
from edge_fer.data.fer2013 import DatasetError

# The checkout this tool is in (also /opt/edge-fer after deploy/install.sh, where the package
# itself lives in the venv): the daemon's default fallback video in an editable install.
CHECKOUT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    p = FlagParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", type=path_arg, default=DEFAULT_DATA)
    p.add_argument("--out", type=path_arg, default=CHECKOUT / "runs/demo/faces_640x480.mp4")
    p.add_argument("--frames", type=int, default=600)
    p.add_argument("--faces", type=int, default=1, help="faces per frame")
    p.add_argument("--hold", type=int, default=45, help="frames before a face is swapped")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.frames <= 0 or args.faces <= 0 or args.hold <= 0:
        p.error("--frames, --faces and --hold must be positive")
    try:
        build_demo_video(args.data, args.out, args.frames, args.faces, args.hold, args.seed)
    except (DatasetError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.out} ({args.frames} frames, {args.faces} face(s) per frame)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

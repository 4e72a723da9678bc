#!/usr/bin/env python3
"""Rebuild the demo that ships in edge_fer/samples/ (Face Research Lab London Set, CC BY 4.0).

    python tools/make_sample_video.py                          # the video, from the shipped photos
    python tools/make_sample_video.py --originals DIR          # the photos too, from the set's originals

DIR holds the set's `neutral_front/NNN_03.jpg` and `smiling_front/NNN_08.jpg` (as in the
set's release, or the webmorphR.stim package's inst/ folder). The video is MPEG-4, 640x480 at
30 fps, with the attribution in its metadata and a `.json` sidecar of who is shown in which
pose per frame. edge_fer/samples/ATTRIBUTION.md says what the material is and how it may be used.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edge_fer.core.paths import SAMPLES_DIR, SHIPPED_DEMO_VIDEO
from edge_fer.data.sample_video import build_sample_video, prepare_photos


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--originals", type=Path, help="the set's originals: re-make the shipped photos first")
    p.add_argument("--photos", type=Path, default=SAMPLES_DIR, help="folder of the shipped photos")
    p.add_argument("--out", type=Path, default=SHIPPED_DEMO_VIDEO)
    args = p.parse_args(argv)
    try:
        if args.originals:
            print(f"wrote {len(prepare_photos(args.originals, args.photos))} photos to {args.photos}")
        meta = build_sample_video(args.out, args.photos)
    except (OSError, ValueError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.out} ({meta['frames']} frames at {meta['fps']:g} fps)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

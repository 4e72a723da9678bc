#!/usr/bin/env python3
"""Rebuild the demo that ships in edge_fer/samples/ (Face Research Lab London Set, CC BY 4.0,
and SFHQ-T2I, MIT).

    python tools/make_sample_video.py                      # the group photo and video, from shipped photos
    python tools/make_sample_video.py --originals DIR      # the London photos too, from the set's originals
    python tools/make_sample_video.py --sfhq-figure FILE   # the SFHQ-T2I faces too, from the dataset's figure

DIR holds the London set's `neutral_front/NNN_03.jpg` and `smiling_front/NNN_08.jpg` (as in
the set's release, or the webmorphR.stim package's inst/ folder). FILE is SFHQ-T2I's
`figures/textual_search_1_expression_top_8_matches.jpg` (github.com/SelfishGene/SFHQ-T2I-dataset).
The video is MPEG-4, 640x480 at 30 fps, with the attribution in its metadata and a `.json`
sidecar of who is shown with which expression per frame. edge_fer/samples/ATTRIBUTION.md says
what the material is and how it may be used.
"""

from __future__ import annotations

import argparse
import sys

from edge_fer.core.paths import SAMPLES_DIR, SHIPPED_DEMO_VIDEO
from edge_fer.core.user_input import FlagParser, file_arg, path_arg
from edge_fer.data.sample_video import (
    build_group_photo,
    build_sample_video,
    prepare_expressions,
    prepare_photos,
)


def main(argv: list[str] | None = None) -> int:
    p = FlagParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--originals", type=path_arg, help="the set's originals: re-make the shipped photos first")
    p.add_argument(
        "--sfhq-figure", type=file_arg, help="SFHQ-T2I's expression figure: re-cut the SFHQ faces first"
    )
    p.add_argument("--photos", type=path_arg, default=SAMPLES_DIR, help="folder of the shipped photos")
    p.add_argument("--out", type=path_arg, default=SHIPPED_DEMO_VIDEO)
    args = p.parse_args(argv)
    try:
        if args.originals:
            print(f"wrote {len(prepare_photos(args.originals, args.photos))} photos to {args.photos}")
        if args.sfhq_figure:
            print(f"wrote {len(prepare_expressions(args.sfhq_figure, args.photos))} faces to {args.photos}")
        print(f"wrote {build_group_photo(args.photos)}")
        meta = build_sample_video(args.out, args.photos)
    except (OSError, ValueError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.out} ({meta['frames']} frames at {meta['fps']:g} fps)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Draw docs/architecture.png, the picture in ARCHITECTURE.md: the folders of edge_fer/ and
the one way data flows through them (matplotlib, the dev extra's).

    python tools/draw_architecture.py [--out docs/architecture.png]
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

from edge_fer.core.paths import PROJECT_ROOT
from edge_fer.core.safe_io import PathRefused, write_atomic
from edge_fer.core.user_input import FlagParser, path_arg

# (x, y, width, height, title, body, colour): the boxes, in axes units (0..16 x 0..9)
RUNTIME, OFFLINE, SHARED, APP = "#dbe9f6", "#fde7c8", "#e4e4e4", "#d9f0d3"
BOXES = [
    (
        0.1,
        6.3,
        2.5,
        1.6,
        "sources/",
        "picamera2, webcam,\nvideo file, RTSP/HTTP;\nframes: the frame check",
        RUNTIME,
    ),
    (3.4, 6.3, 2.6, 1.6, "faces/", "finder: coarse pass,\nzoom windows, tiles;\ndetect; track", RUNTIME),
    (
        6.8,
        6.3,
        2.6,
        1.6,
        "emotions/",
        "preprocess, classifier\n(int8 .pte, models/),\ncalibration; smooth",
        RUNTIME,
    ),
    (10.2, 6.3, 2.4, 1.6, "runtime/", "pipeline, analyzer,\nresults, stats,\nsummary, daemon", RUNTIME),
    (13.4, 6.3, 2.5, 1.6, "outputs/", "display/ (screen,\noverlay), web, MQTT,\nPrometheus, events", RUNTIME),
    (
        0.1,
        3.4,
        2.9,
        1.7,
        "config/",
        "typed sections, one\nschema: YAML, flags,\nexample config, checks",
        SHARED,
    ),
    (
        3.4,
        3.4,
        2.9,
        1.7,
        "core/",
        "paths, safe_io, user_input,\nexit codes, memory,\nsecrets, HTTP server",
        SHARED,
    ),
    (6.8, 3.4, 2.6, 1.7, "apps/", "edge-fer\nedge-fer-classify\nedge-fer-monitor\nedge-fer-train", APP),
    (10.2, 3.4, 2.4, 1.7, "contracts/", "model card,\nlive stats: typed,\nversioned", SHARED),
    (13.4, 3.4, 2.5, 1.7, "monitor/", "SoC power, thermals,\nCPU, memory, the\ndaemon's live stats", RUNTIME),
    (0.1, 0.4, 2.9, 1.7, "data/", "FER2013 loaders,\nthe demo videos", OFFLINE),
    (
        3.4,
        0.4,
        3.4,
        1.7,
        "training/ + nets/",
        "teacher -> distil -> prune\n-> int8 -> export;\nstudent and teacher nets",
        OFFLINE,
    ),
    (7.4, 0.4, 2.6, 1.7, "models/", "the shipped .pte,\nits model card,\nYuNet", OFFLINE),
    (10.6, 0.4, 2.6, 1.7, "evaluation/", "accuracy, macro-F1,\nconfusion, calibration", OFFLINE),
]
# arrows: (from box title, to box title, label)
ARROWS = [
    ("sources/", "faces/", "frame"),
    ("faces/", "emotions/", "faces"),
    ("emotions/", "runtime/", "labels"),
    ("runtime/", "outputs/", "result"),
    ("outputs/", "monitor/", "stats file"),
    ("data/", "training/ + nets/", ""),
    ("training/ + nets/", "models/", ""),
]


def draw(out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    fig, ax = plt.subplots(figsize=(16, 9), dpi=100)
    ax.set_xlim(0, 16)
    ax.set_ylim(0, 9)
    ax.axis("off")
    centres = {}
    for x, y, w, h, title, body, colour in BOXES:
        ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.05", fc=colour, ec="#555555"))
        ax.text(x + w / 2, y + h - 0.25, f"edge_fer/{title}", ha="center", va="top", weight="bold", size=11)
        ax.text(x + w / 2, y + h - 0.6, body, ha="center", va="top", size=9.5, linespacing=1.3)
        centres[title] = (x, y, w, h)
    for src, dst, label in ARROWS:
        (x0, y0, w0, h0), (x1, y1, w1, h1) = centres[src], centres[dst]
        if abs(y0 - y1) < 0.1:  # same row: side to side
            a, b = (x0 + w0 + 0.05, y0 + h0 / 2), (x1 - 0.05, y1 + h1 / 2)
        elif y0 > y1:
            a, b = (x0 + w0 / 2, y0 - 0.05), (x1 + w1 / 2, y1 + h1 + 0.05)
        else:
            a, b = (x0 + w0 / 2, y0 + h0 + 0.05), (x1 + w1 / 2, y1 - 0.05)
        ax.add_patch(FancyArrowPatch(a, b, arrowstyle="-|>", mutation_scale=16, lw=1.6, color="#333333"))
        if label:
            align = "left" if a[0] == b[0] else "center"  # beside a vertical arrow, above a flat one
            x, y = (a[0] + b[0]) / 2 + 0.08, (a[1] + b[1]) / 2 + 0.12
            ax.text(x, y, label, ha=align, size=9, style="italic")
    ax.text(
        0.2, 8.55, "runtime (no torch): frame -> faces -> labels -> outputs, one way", size=13, weight="bold"
    )
    ax.text(0.2, 5.45, "shared by every program", size=12, weight="bold", color="#444444")
    ax.text(
        0.2,
        2.45,
        "offline (torch): data -> training -> the shipped model",
        size=12,
        weight="bold",
        color="#8a5a00",
    )
    picture = io.BytesIO()
    fig.savefig(picture, format="png", bbox_inches="tight")
    plt.close(fig)
    write_atomic(out, picture.getvalue(), 0o644)


def main(argv: list[str] | None = None) -> int:
    p = FlagParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", type=path_arg, default=PROJECT_ROOT / "docs" / "architecture.png")
    args = p.parse_args(argv)
    try:
        draw(args.out)
    except (OSError, PathRefused, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

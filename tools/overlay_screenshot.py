#!/usr/bin/env python3
"""A picture of what the daemon shows: the real `edge-fer` on a video of real faces, on a
fullscreen window of a private Xvfb screen (1920x1080 by default), grabbed from the screen.

    python tools/overlay_screenshot.py [--out benchmarks/results/overlay.png] [--frames 150]
                                       [--screen 1920x1080]
    python tools/overlay_screenshot.py --shipped-demo [--frames 130]   # .../overlay_demo.jpg

Builds a 640x480 video of FER2013 PublicTest faces (two at a time), starts Xvfb, runs the
daemon in this process on it with `display.mode: window` (fullscreen, top-3 bars, at the
video's own pace) and keeps the screen as shown near the end with both faces found. The
inside of each face box is pixelated, so no dataset face ends up in the repository; boxes,
labels, bars and HUD stay as drawn. With --shipped-demo it runs on the demo video that ships
in edge_fer/samples/ instead (people of the Face Research Lab London Set, CC BY 4.0, who
consented to illustrating research, then synthetic SFHQ-T2I faces, MIT; past frame 720 the
second part), and nothing is pixelated. Needs Xvfb (apt install xvfb)
and pygame.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import yaml

from edge_fer.core.paths import DEFAULT_DATA, PROJECT_ROOT, SHIPPED_DEMO_VIDEO
from edge_fer.core.user_input import FlagParser, path_arg


class ScreenGrab:
    """An output after the display: keeps the screen of the first frame of the last 20 that
    shows every face of the video (else the last frame with a face), the true boxes of the
    faces in it, and a mask of what the overlay drew on it."""

    name = "screen-grab"

    def __init__(self, truth: list[list[list[int]]], frames: int) -> None:
        self.truth = truth  # the demo video's face boxes per frame (frame pixels)
        # One grab, near the end: grabbing is slow, and the HUD it shows is of the second before.
        self.after = max(0, frames - 20)
        self.last = frames - 1
        self.classes: tuple[str, ...] = ()
        self.best: tuple[int, int] = (-1, -1)
        self.screen: np.ndarray | None = None
        self.drawn: np.ndarray | None = None
        self.boxes: list[list[int]] = []

    def on_frame(self, result, stats) -> None:  # noqa: ANN001 - the Output protocol
        import pygame

        from edge_fer.display.overlay import draw_faces, draw_hud, fit_rect
        from edge_fer.display.screen import hud_for

        surface = pygame.display.get_surface()
        key = (len(result.faces), result.seq)
        everyone = len(result.faces) == len(self.truth[result.seq % len(self.truth)])
        wanted = result.seq >= self.after and (everyone or (result.seq == self.last and result.faces))
        if surface is None or not wanted or self.best[0] >= len(result.faces):
            return
        self.best = key
        self.screen = pygame.surfarray.array3d(surface).transpose(1, 0, 2)[:, :, ::-1].copy()
        # The overlay's own pixels, drawn again by the same code at the same place and size.
        sh, sw = self.screen.shape[:2]
        h, w = result.image.shape[:2]
        x0, y0, fw, fh = fit_rect((w, h), (sw, sh))
        picture = np.zeros((fh, fw, 4), np.uint8)
        draw_hud(picture, hud_for(result, stats))  # at the picture's top-left, as shown
        draw_faces(picture, result.faces, self.classes, True, fw / w)
        drawn = np.zeros((sh, sw, 4), np.uint8)
        drawn[y0 : y0 + fh, x0 : x0 + fw] = picture
        self.drawn = drawn[:, :, 3]
        scale = fw / w
        self.boxes = []
        for x, y, bw, bh in self.truth[result.seq % len(self.truth)]:
            m = 0.4 * bw  # the whole oval head around the FER face, not just the face
            self.boxes.append(
                [x0 + round((x - m) * scale), y0 + round((y - m) * scale),
                 round((bw + 2 * m) * scale), round((bh + 2 * m) * scale)]
            )  # fmt: skip

    def close(self) -> None:
        pass


def anonymize(screen: np.ndarray, drawn: np.ndarray, boxes: list[list[int]], blocks: int = 8) -> np.ndarray:
    """Pixelate each face's head on the screenshot into blocks x blocks cells: the picture
    pixels of a cell become their mean, and so do its pixels under the bars' shade (what the
    overlay drew opaquely is left out, so no colour smears, and stays as shown)."""
    out = screen.astype(np.float32)
    picture = drawn == 0
    h, w = screen.shape[:2]
    for x, y, bw, bh in boxes:
        xs = np.linspace(max(0, x), min(w, x + bw), blocks + 1).astype(int)
        ys = np.linspace(max(0, y), min(h, y + bh), blocks + 1).astype(int)
        for y0, y1 in zip(ys[:-1], ys[1:], strict=True):
            for x0, x1 in zip(xs[:-1], xs[1:], strict=True):
                cell, keep = out[y0:y1, x0:x1], picture[y0:y1, x0:x1]
                shade = (~keep) & (drawn[y0:y1, x0:x1] < 255)
                for part in (keep, shade):  # each averaged apart: no detail left in either
                    if part.any():
                        cell[part] = cell[part].mean(axis=0)
    return out.astype(np.uint8)


def main(argv: list[str] | None = None) -> int:
    p = FlagParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", type=path_arg, default=DEFAULT_DATA)
    p.add_argument("--out", type=path_arg, help="default: benchmarks/results/overlay.png (overlay_demo.jpg)")
    p.add_argument("--frames", type=int, default=150)
    p.add_argument("--shipped-demo", action="store_true", help="the shipped demo video, not FER2013's")
    p.add_argument("--screen", default="1920x1080", help="the Xvfb screen's size, WxH")
    args = p.parse_args(argv)
    name = "overlay_demo.jpg" if args.shipped_demo else "overlay.png"
    args.out = args.out or PROJECT_ROOT / "benchmarks" / "results" / name
    if not args.shipped_demo and not (args.data / "test").is_dir():
        print(f"error: FER2013 not found at {args.data}; pass --data or --shipped-demo", file=sys.stderr)
        return 2
    if args.frames < 10:
        print("error: --frames must be at least 10 (smoothing and fps need a few)", file=sys.stderr)
        return 2
    try:
        screen = tuple(int(v) for v in args.screen.lower().split("x"))
        assert len(screen) == 2 and all(64 <= v <= 8192 for v in screen)
    except (ValueError, AssertionError):
        print(f"error: --screen {args.screen!r}: expected WxH, e.g. 1920x1080", file=sys.stderr)
        return 2
    try:
        from testkit.xvfb import XvfbMissing, start_xvfb  # the dev kit's (scripts/setup.sh test)
    except ImportError:
        print("error: testkit not installed; run scripts/setup.sh test", file=sys.stderr)
        return 2

    from edge_fer.apps import daemon as cli
    from edge_fer.data.demo_video import build_demo_video
    from edge_fer.outputs.base import OutputContext
    from edge_fer.outputs.registry import output_override

    with tempfile.TemporaryDirectory() as tmp:
        tmp_dir = Path(tmp)
        if args.shipped_demo:  # two people in every frame; their faces stay as they are
            video = SHIPPED_DEMO_VIDEO
            people = json.loads(video.with_suffix(".json").read_text())["people"]
            truth = [[[0, 0, 0, 0] for _ in frame] for frame in people]
        else:
            video = tmp_dir / "faces.mp4"
            truth = build_demo_video(args.data, video, frames=args.frames, faces=2, hold=45, seed=11)["boxes"]
        grab = ScreenGrab(truth, args.frames)
        config = tmp_dir / "config.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "source": f"file:{video}",
                    "loop_video": False,
                    "display": {"mode": "window", "fullscreen": True, "top3": True},
                    "stats": {"path": None},
                }
            )
        )
        try:
            xvfb, display = start_xvfb(screen)
        except (XvfbMissing, RuntimeError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        os.environ["DISPLAY"] = display
        os.environ.pop("WAYLAND_DISPLAY", None)
        os.environ.pop("SDL_VIDEODRIVER", None)

        def screen_grab(ctx: OutputContext, earlier: object) -> ScreenGrab:
            grab.classes = ctx.classes
            return grab

        try:
            # Right after the display (order 10): the screen as just shown.
            with output_override("screen_grab", screen_grab, section="display", order=11):
                code = cli.main(
                    ["--config", str(config), "--max-frames", str(args.frames), "--log-level", "WARNING"]
                )
        finally:
            xvfb.terminate()
            xvfb.wait(5)
    if code != 0:
        print(f"error: the daemon stopped with exit code {code} (see above)", file=sys.stderr)
        return 1
    if grab.screen is None or grab.best[0] <= 0:
        print("error: no face was found in the video; try more --frames", file=sys.stderr)
        return 1
    import cv2

    args.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(
        str(args.out), grab.screen if args.shipped_demo else anonymize(grab.screen, grab.drawn, grab.boxes)
    )
    print(
        f"wrote {args.out}: {grab.screen.shape[1]}x{grab.screen.shape[0]}, "
        f"frame {grab.best[1]}, {grab.best[0]} face(s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

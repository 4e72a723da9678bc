#!/usr/bin/env python3
"""A picture of the web page: the real `edge-fer` with `web:` on, on a video of real faces,
opened in headless Chromium and captured as a PNG.

    python tools/web_screenshot.py [--out docs/web.png] [--size 1280x900] [--seconds 40]

Builds a 640x480 video of FER2013 PublicTest faces (two at a time), runs the daemon in this
process on it at the video's own pace with the page on 127.0.0.1, opens the page in Debian's
Chromium (through chromedriver and selenium) and keeps it open `--seconds` so the label mix
has a few bars, then saves the window once both faces are listed. No dataset face ends up in
the repository: the picture the page is sent has each face's head pixelated (a subclass of the
page pixelates the video's true face boxes before drawing the overlay on top; boxes, labels,
bars and HUD stay as drawn). Needs chromium and chromium-driver (apt) and selenium (pip).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

from edge_fer.core.paths import DEFAULT_DATA, PROJECT_ROOT
from edge_fer.core.user_input import FlagParser, path_arg


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def browse(port: int, out: Path, size: tuple[int, int], seconds: float, workdir: Path, box: dict) -> None:
    """Open the page, wait, save the window as PNG into `out`; then stop the daemon (SIGTERM)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    driver = None
    try:
        end = time.monotonic() + 120
        while True:  # the daemon's start-up: model, detector, video
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > end:
                    raise RuntimeError("the page did not come up in 120 s") from None
                time.sleep(0.5)
        options = webdriver.ChromeOptions()
        options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
        for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--hide-scrollbars", f"--user-data-dir={workdir / 'chromium'}",
                     f"--window-size={size[0]},{size[1]}"):  # fmt: skip
            options.add_argument(flag)
        driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
        driver.get(f"http://127.0.0.1:{port}/")
        time.sleep(seconds)
        end = time.monotonic() + 60
        while len(driver.find_elements("css selector", "#faces li[data-label]")) < 2:
            if time.monotonic() > end:
                raise RuntimeError("the page never listed both faces")
            time.sleep(0.2)
        out.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(out))
        box["ok"] = True
    except Exception as exc:  # noqa: BLE001 - reported by main
        box["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        if driver is not None:
            driver.quit()
        os.kill(os.getpid(), signal.SIGTERM)  # the daemon in the main thread stops cleanly


def main(argv: list[str] | None = None) -> int:
    p = FlagParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", type=path_arg, default=DEFAULT_DATA)
    p.add_argument("--out", type=path_arg, default=PROJECT_ROOT / "docs" / "web.png")
    p.add_argument("--size", default="1280x900", help="the browser window, WxH")
    p.add_argument("--seconds", type=float, default=40.0, help="how long the page is watched first")
    args = p.parse_args(argv)
    if not (args.data / "test").is_dir():
        print(f"error: FER2013 not found at {args.data}; pass --data", file=sys.stderr)
        return 2
    try:
        size = tuple(int(v) for v in args.size.lower().split("x"))
        assert len(size) == 2 and all(200 <= v <= 4096 for v in size)
    except (ValueError, AssertionError):
        print(f"error: --size {args.size!r}: expected WxH, e.g. 1280x900", file=sys.stderr)
        return 2
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        print(
            "error: chromium and chromedriver not found; apt install chromium chromium-driver",
            file=sys.stderr,
        )
        return 2

    from edge_fer.apps import daemon as cli
    from edge_fer.data.demo_video import build_demo_video, pixelate_faces
    from edge_fer.emotions.labels import published_labels
    from edge_fer.outputs.base import OutputContext
    from edge_fer.outputs.registry import output_override
    from edge_fer.outputs.web import WebPage

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        video = workdir / "faces.mp4"
        truth = build_demo_video(args.data, video, frames=300, faces=2, hold=60, seed=11)["boxes"]

        class PixelatedPage(WebPage):
            """The page, with each dataset face's head pixelated under the overlay."""

            def draw(self, seq, image, faces, hud):  # noqa: ANN001, ANN201 - WebPage.draw
                heads = []
                for x, y, bw, bh in truth[seq % len(truth)]:
                    m = round(0.4 * bw)  # the whole oval head around the FER face
                    heads.append([x - m, y - m, bw + 2 * m, bh + 2 * m])
                return super().draw(seq, pixelate_faces(image, heads, blocks=8), faces, hud)

        port = free_port()
        config = workdir / "config.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "source": f"file:{video}",
                    "display": {"mode": "none"},
                    "stats": {"path": None},
                    "console": "off",
                    "web": {"enabled": True, "port": port},
                }
            )
        )

        def pixelated(ctx: OutputContext, earlier: object) -> WebPage:
            c = ctx.config
            labels = published_labels(c.smoothing.groups)
            return PixelatedPage(c.web, ctx.classes, labels, ctx.model_info, ctx.source_name,
                                 c.display.top3, ctx.listeners)  # fmt: skip

        box: dict = {}
        browser = threading.Thread(
            target=browse, args=(port, args.out, size, args.seconds, workdir, box), daemon=True
        )
        browser.start()
        with output_override("web", pixelated):
            code = cli.main(["--config", str(config), "--log-level", "WARNING"])
        browser.join(30)
    if code != 0 or not box.get("ok"):
        print(f"error: {box.get('error', f'the daemon stopped with exit code {code}')}", file=sys.stderr)
        return 1
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

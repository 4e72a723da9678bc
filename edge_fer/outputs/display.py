"""Where the overlay goes: picamera2's DRM preview, an SDL window, or nowhere.

The SDL window (pygame) works on a desktop session and, through SDL's kmsdrm driver, on
the Pi's HDMI console with no desktop at all. The DRM display asks the source for its own
preview (`PreviewHost`) and only sends the overlay layer: camera frames never pass through
Python for display.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from edge_fer.config import DisplayConfig
from edge_fer.outputs.base import OutputClosed, PreviewHost
from edge_fer.overlay import Hud, render, render_overlay_rgba
from edge_fer.results import FaceResult, FrameResult

if TYPE_CHECKING:
    from edge_fer.stats import RunStats

log = logging.getLogger(__name__)


class DisplayError(RuntimeError):
    """A display that cannot be opened; the message names the fix."""


def hud_for(result: FrameResult, stats: RunStats) -> Hud:
    """The HUD figures of a frame: its times and the live fps."""
    t = result.timing_ms
    return Hud(t["total"], t["detect"], t["classify"], stats.latency.fps())


class WindowDisplay:
    """A pygame (SDL 2) window; fullscreen on the HDMI console, a normal window on a desktop."""

    name = "window"

    def __init__(
        self, classes: tuple[str, ...], fullscreen: bool, top3: bool = False, title: str = "edge-fer"
    ) -> None:
        os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
        try:
            import pygame
        except ImportError:
            raise DisplayError(
                "display window needs pygame; pip install 'edge-fer[display]' or set display.mode: none"
            ) from None
        if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            os.environ.setdefault("SDL_VIDEODRIVER", "kmsdrm")  # console without a desktop
        try:
            pygame.display.init()
        except pygame.error as exc:
            raise DisplayError(
                f"cannot open an SDL display ({exc}); run on the Pi's console or "
                "a desktop session, or set display.mode: none"
            ) from None
        self.pygame, self.classes, self.fullscreen, self.top3 = pygame, classes, fullscreen, top3
        self.title = title
        self.surface: Any = None

    def show(self, frame: np.ndarray, faces: list[FaceResult], hud: Hud) -> bool:
        """Draw a frame with its overlay. Returns False when the user closed the window."""
        pg = self.pygame
        h, w = frame.shape[:2]
        if self.surface is None or self.surface.get_size() != (w, h) and not self.fullscreen:
            flags = pg.FULLSCREEN if self.fullscreen else 0
            self.surface = pg.display.set_mode((0, 0) if self.fullscreen else (w, h), flags)
            pg.display.set_caption(self.title)
            pg.mouse.set_visible(False)
        drawn = render(frame, faces, hud, self.classes, self.top3)
        rgb = cv2.cvtColor(drawn, cv2.COLOR_BGR2RGB)
        sw, sh = self.surface.get_size()
        if (sw, sh) != (w, h):  # fit the screen, keeping the aspect ratio
            scale = min(sw / w, sh / h)
            rgb = cv2.resize(rgb, (int(w * scale), int(h * scale)))
        image = pg.image.frombuffer(rgb.tobytes(), (rgb.shape[1], rgb.shape[0]), "RGB")
        self.surface.fill((0, 0, 0))
        self.surface.blit(image, ((sw - rgb.shape[1]) // 2, (sh - rgb.shape[0]) // 2))
        pg.display.flip()
        for event in pg.event.get():
            if event.type == pg.QUIT or (event.type == pg.KEYDOWN and event.key in (pg.K_ESCAPE, pg.K_q)):
                return False
        return True

    def on_frame(self, result: FrameResult, stats: RunStats) -> None:
        if not self.show(result.image, result.faces, hud_for(result, stats)):
            raise OutputClosed("window closed")

    def save_screenshot(self, path: Path) -> None:
        self.pygame.image.save(self.surface, str(path))

    def close(self) -> None:
        self.pygame.display.quit()


class DrmPreviewDisplay:
    """picamera2's own DRM/KMS preview with the overlay as an RGBA layer on top."""

    name = "drm"

    def __init__(self, preview: PreviewHost, classes: tuple[str, ...], top3: bool = False) -> None:
        preview.enable_drm_preview()
        self.preview, self.classes, self.top3 = preview, classes, top3

    def on_frame(self, result: FrameResult, stats: RunStats) -> None:
        h, w = result.image.shape[:2]
        layer = render_overlay_rgba((w, h), result.faces, hud_for(result, stats), self.classes, self.top3)
        self.preview.set_overlay(layer)

    def close(self) -> None:
        pass


Display = WindowDisplay | DrmPreviewDisplay


def make_display(
    config: DisplayConfig, preview: PreviewHost | None, classes: tuple[str, ...]
) -> Display | None:
    """Pick the display (None: headless). `auto` prefers the DRM preview when the source has
    one and no desktop runs, then a window where one can open, else none."""
    has_desktop = bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    fullscreen = config.fullscreen and not has_desktop
    if config.mode == "drm":
        if preview is None:
            raise DisplayError("display drm needs source picamera2; use display window or none")
        return DrmPreviewDisplay(preview, classes, config.top3)
    if config.mode == "window":
        return WindowDisplay(classes, fullscreen, config.top3)
    if config.mode == "none":
        return None
    if preview is not None and not has_desktop:
        return DrmPreviewDisplay(preview, classes, config.top3)
    if has_desktop or any(Path("/dev/dri").glob("card*")):
        try:
            return WindowDisplay(classes, fullscreen, config.top3)
        except DisplayError as exc:
            log.warning("display auto: %s; running without a display", exc)
    else:
        log.info("display auto: no screen found, running headless")
    return None

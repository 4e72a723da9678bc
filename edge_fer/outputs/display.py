"""Where the overlay goes: picamera2's DRM preview, an SDL window, or nowhere.

The SDL window (pygame) works on a desktop session and, through SDL's kmsdrm driver, on
the Pi's HDMI console with no desktop at all. The DRM display asks the source for its own
preview (`PreviewHost`) and only sends the overlay layer: camera frames never pass through
Python for display.
"""

from __future__ import annotations

import inspect
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edge_fer.capture import DRM_DEFAULT_WINDOW, Window, drm_picture_rect, drm_screen_size, drm_window
from edge_fer.config import DisplayConfig
from edge_fer.outputs.base import OutputClosed, PreviewHost
from edge_fer.overlay import Hud, fit_rect, render, render_overlay_rgba
from edge_fer.results import FaceResult, FrameResult
from edge_fer.stats import detection_rate

if TYPE_CHECKING:
    from edge_fer.stats import RunStats

log = logging.getLogger(__name__)


class DisplayError(RuntimeError):
    """A display that cannot be opened; the message names the fix."""


HUD_WINDOW_S = 1.0  # the HUD's figures are over the last second


def hud_for(result: FrameResult, stats: RunStats) -> Hud:
    """The HUD figures over the last second (see `Hud`), from the run's own latency window:
    the same definitions as the stats file, MQTT and the report, over a shorter span."""
    latency = stats.latency
    seconds = min(HUD_WINDOW_S, latency.window_s)
    p = latency.window_percentiles(seconds)
    detections, frames = latency.window_detection_frames(seconds)
    return Hud(
        fps=latency.rate(seconds),
        frame_ms=p["total"]["mean"],
        capture_ms=p["capture"]["p50"],
        detect_ms=p["detect"]["p50"],
        detect_rate=detection_rate(detections, frames),
        classify_ms=p["classify"]["p50"],
        outputs_ms=latency.window_outputs(seconds)["mean"],
    )


def _usable_screen(screen: object) -> bool:
    """A screen size (w, h) of positive integers a DRM preview can fill."""
    try:
        return drm_window((0, 0, *screen)) is not None  # type: ignore[misc]
    except TypeError:
        return False


class WindowDisplay:
    """A pygame (SDL 2) window: fullscreen (the frame scaled to the screen, aspect kept) or a
    resizable window; on a desktop session or, through SDL's kmsdrm driver, on the Pi's HDMI
    console with no desktop at all."""

    name = "window"

    def __init__(
        self, classes: tuple[str, ...], fullscreen: bool, top3: bool = True, title: str = "edge-fer"
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
        self._size = (0, 0)

    def _open(self, frame_size: tuple[int, int]) -> None:
        pg = self.pygame
        if self.fullscreen:  # (0, 0): the screen's own resolution
            self.surface = pg.display.set_mode((0, 0), pg.FULLSCREEN)
        else:
            self.surface = pg.display.set_mode(frame_size, pg.RESIZABLE)
        pg.display.set_caption(self.title)
        pg.mouse.set_visible(not self.fullscreen)

    def show(self, frame: np.ndarray, faces: list[FaceResult], hud: Hud) -> bool:
        """Draw a frame with its overlay, scaled to the window. Returns False when the user
        closed the window (or pressed Esc or q)."""
        pg = self.pygame
        h, w = frame.shape[:2]
        if self.surface is None:
            self._open((w, h))
        surface = pg.display.get_surface()  # a resized window has a new surface
        if surface is not self.surface or surface.get_size() != self._size:
            self.surface, self._size = surface, surface.get_size()
            self.surface.fill((0, 0, 0))  # the bars beside or above the picture
            pg.display.flip()
        # Only the picture is drawn and sent each frame (HUD at its top-left, as on the DRM
        # preview): the black bars stay as they are.
        x, y, fw, fh = fit_rect((w, h), self._size)
        rgb = render(frame, faces, hud, self.classes, self.top3, (fw, fh), rgb=True)
        self.surface.blit(pg.image.frombuffer(rgb.data, (fw, fh), "RGB"), (x, y))
        pg.display.update(pg.Rect(x, y, fw, fh))
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
    """picamera2's own DRM/KMS preview with the overlay as an RGBA layer on top. Fullscreen:
    the preview's window is the whole screen (picamera2 letterboxes the picture in it, aspect
    kept) and the overlay is drawn at the size the picture is shown at, so text is sized for
    the screen."""

    name = "drm"

    def __init__(
        self,
        preview: PreviewHost,
        classes: tuple[str, ...],
        top3: bool = True,
        fullscreen: bool = True,
        screen: tuple[int, int] | None = None,
    ) -> None:
        self.screen = (screen or drm_screen_size()) if fullscreen else None
        if self.screen is not None and not _usable_screen(self.screen):
            log.warning("display drm: screen size %r is unusable; not fullscreen", self.screen)
            self.screen = None
        requested: Window | None = None
        if self.screen is not None and "window" in inspect.signature(preview.enable_drm_preview).parameters:
            requested = (0, 0, *self.screen)
            preview.enable_drm_preview(window=requested)
        else:
            if self.screen is not None:
                log.warning("display drm: this camera source cannot size its preview; not fullscreen")
                self.screen = None
            preview.enable_drm_preview()
        # The window the source really used (it may clip or refuse one), else the one asked for.
        self.window: Window = getattr(preview, "preview_window", None) or requested or DRM_DEFAULT_WINDOW
        self.preview, self.classes, self.top3 = preview, classes, top3

    def overlay_size(self, frame_size: tuple[int, int]) -> tuple[int, int]:
        """The overlay's pixels: the picture's size on the screen, where the preview shows it."""
        return drm_picture_rect(frame_size, self.window)[2:]

    def on_frame(self, result: FrameResult, stats: RunStats) -> None:
        h, w = result.image.shape[:2]
        layer = render_overlay_rgba(
            (w, h), result.faces, hud_for(result, stats), self.classes, self.top3, self.overlay_size((w, h))
        )
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
    fullscreen = config.fullscreen
    if config.mode == "drm":
        if preview is None:
            raise DisplayError("display drm needs source picamera2; use display window or none")
        return DrmPreviewDisplay(preview, classes, config.top3, fullscreen)
    if config.mode == "window":
        return WindowDisplay(classes, fullscreen, config.top3)
    if config.mode == "none":
        return None
    if preview is not None and not has_desktop:
        return DrmPreviewDisplay(preview, classes, config.top3, fullscreen)
    if has_desktop or any(Path("/dev/dri").glob("card*")):
        try:
            return WindowDisplay(classes, fullscreen, config.top3)
        except DisplayError as exc:
            log.warning("display auto: %s; running without a display", exc)
    else:
        log.info("display auto: no screen found, running headless")
    return None

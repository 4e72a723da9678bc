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

from edge_fer.config import DisplayConfig
from edge_fer.display.overlay import Hud, fit_rect, render, render_overlay_rgba
from edge_fer.outputs.base import OutputClosed, OutputError, PreviewHost
from edge_fer.outputs.registration import register_output
from edge_fer.runtime.results import FaceResult, FrameResult
from edge_fer.runtime.stats import detection_rate
from edge_fer.sources.picamera import (
    DRM_DEFAULT_WINDOW,
    Window,
    drm_picture_rect,
    drm_screen_size,
    drm_window,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from edge_fer.outputs.base import Output, OutputContext
    from edge_fer.runtime.stats import RunStats

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


class XConnectionWatch:
    """Turns the X server going away under SDL's window into a flag instead of the end of the
    process.

    Xlib's answer to a broken X connection (the server stopped, the session ended) is exit(1)
    from inside whatever call noticed it. libX11 1.7 and later let a per-display "exit
    handler" return instead: `install` sets one on SDL's display, and a quiet global I/O error
    handler (the default prints "XIO: fatal IO error"). The window checks `lost` after its SDL
    calls and, once set, never calls SDL again: SDL's own clean-up waits for X events that can
    no longer come (it would spin for ever) and closing a dead display still exits, so the
    broken window is left as it is until the process ends. The handlers are process-wide in
    Xlib, so there is one watch per process (`X_WATCH`)."""

    def __init__(self) -> None:
        self.lost = False
        self.display_name = ""
        self._keep: list[object] = []  # the ctypes callbacks Xlib calls: alive as long as the process

    def install(self, pygame: Any) -> bool:
        """Watch SDL's X display (a no-op off X11). False where libX11 is too old to allow it."""
        import ctypes
        import ctypes.util

        if pygame.display.get_driver() != "x11":
            return False
        try:
            info = pygame.display.get_wm_info()
            handle = info["display"]
            if not isinstance(handle, int):
                get = ctypes.pythonapi.PyCapsule_GetPointer
                get.restype, get.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]
                handle = get(handle, b"display")
            x11 = ctypes.CDLL(ctypes.util.find_library("X11") or "libX11.so.6")
            set_exit = x11.XSetIOErrorExitHandler  # libX11 >= 1.7 (Debian 12, Pi OS Bookworm)
        except (AttributeError, KeyError, OSError, TypeError, ValueError) as exc:
            log.debug("display window: cannot watch the X connection (%s)", exc)
            return False
        if not handle:
            return False
        io_handler_t = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p)
        exit_handler_t = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p)

        def on_io_error(_display: int) -> int:
            self.lost = True
            return 0

        def on_exit(_display: int, _data: int) -> None:
            self.lost = True  # returning instead of exiting: Xlib marks the display dead

        if not self._keep:  # made once: Xlib may call them until the process ends
            self._keep = [io_handler_t(on_io_error), exit_handler_t(on_exit)]
        io_handler, exit_handler = self._keep
        x11.XSetIOErrorHandler.argtypes = [io_handler_t]
        x11.XSetIOErrorHandler.restype = ctypes.c_void_p
        x11.XSetIOErrorHandler(io_handler)
        set_exit.argtypes = [ctypes.c_void_p, exit_handler_t, ctypes.c_void_p]
        set_exit(handle, exit_handler, None)
        self.display_name = os.environ.get("DISPLAY", "")
        return True

    def abandon(self, pygame: Any) -> None:
        """After a loss: keep SDL's clean-up from running at exit (see the class doc)."""
        import atexit

        atexit.unregister(pygame.quit)


X_WATCH = XConnectionWatch()


def window_size(frame_size: tuple[int, int], desktop: tuple[int, int] | None) -> tuple[int, int]:
    """A window for frames of `frame_size`: their own size, or scaled down (aspect kept) to fit
    in 90% of the desktop (a 2304x1296 camera frame on a 1080p screen)."""
    if desktop is None or desktop[0] <= 0 or desktop[1] <= 0:
        return frame_size
    room = (int(desktop[0] * 0.9), int(desktop[1] * 0.9))
    if frame_size[0] <= room[0] and frame_size[1] <= room[1]:
        return frame_size
    _, _, w, h = fit_rect(frame_size, room)
    return w, h


def _desktop(pg: Any) -> tuple[int, int] | None:
    """The first desktop's size, where SDL knows it."""
    try:
        sizes = pg.display.get_desktop_sizes()
    except (AttributeError, pg.error):
        return None
    return tuple(sizes[0]) if sizes else None


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
        self.watch = X_WATCH
        self.surface: Any = None
        self._size = (0, 0)

    def _open(self, frame_size: tuple[int, int]) -> None:
        pg = self.pygame
        if self.fullscreen:  # (0, 0): the screen's own resolution
            self.surface = pg.display.set_mode((0, 0), pg.FULLSCREEN)
        else:
            self.surface = pg.display.set_mode(window_size(frame_size, _desktop(pg)), pg.RESIZABLE)
        pg.display.set_caption(self.title)
        pg.mouse.set_visible(not self.fullscreen)
        self.watch.install(pg)

    def _check_display(self) -> None:
        """OutputError once the X server has gone (the frame loop then drops the window)."""
        if self.watch.lost:
            self.watch.abandon(self.pygame)
            where = f" {self.watch.display_name}" if self.watch.display_name else ""
            raise OutputError(
                f"window: the X display{where} went away; carrying on without a display "
                "(restart edge-fer to show the window again)"
            )

    def show(self, frame: np.ndarray, faces: list[FaceResult], hud: Hud) -> bool:
        """Draw a frame with its overlay, scaled to the window. Returns False when the user
        closed the window (or pressed Esc or q)."""
        try:
            return self._show(frame, faces, hud)
        except self.pygame.error as exc:
            self._check_display()
            raise OutputError(f"window: SDL failed ({exc}); carrying on without a display") from None

    def _show(self, frame: np.ndarray, faces: list[FaceResult], hud: Hud) -> bool:
        pg = self.pygame
        self._check_display()
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
        events = pg.event.get()
        self._check_display()  # a dead server is not the user closing the window
        for event in events:
            if event.type == pg.QUIT or (event.type == pg.KEYDOWN and event.key in (pg.K_ESCAPE, pg.K_q)):
                return False
        return True

    def on_frame(self, result: FrameResult, stats: RunStats) -> None:
        if not self.show(result.image, result.faces, hud_for(result, stats)):
            raise OutputClosed("window closed")

    def save_screenshot(self, path: Path) -> None:
        self.pygame.image.save(self.surface, str(path))

    def close(self) -> None:
        if not self.watch.lost:  # SDL's clean-up of a dead X display never returns
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
        try:
            self.preview.set_overlay(layer)
        except Exception as exc:  # noqa: BLE001 - the screen's driver failing (HDMI gone, DRM lost)
            raise OutputError(
                f"drm: the preview cannot show the overlay ({type(exc).__name__}: {exc}); carrying on "
                "without a display"
            ) from None

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
    if X_WATCH.lost and config.mode in ("window", "auto"):
        log.warning(
            "display %s: the X display went away earlier in this run; running without a display "
            "(restart edge-fer to show the window again)",
            config.mode,
        )
        return None
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


@register_output("display", section="display", order=10)
def display_output(ctx: OutputContext, earlier: Sequence[Output]) -> Display | None:
    """The screen `display.mode` names (`auto`: see `make_display`)."""
    return make_display(ctx.config.display, ctx.preview, ctx.classes)

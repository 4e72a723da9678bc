"""The DRM preview through the fake picamera2: fullscreen window, aspect kept, overlay sized
to the picture the preview shows, bad windows and screens handled."""

import logging
import time

import numpy as np
import pytest

from edge_fer.display.overlay import render_overlay_rgba
from edge_fer.display.screen import DrmPreviewDisplay, hud_for
from edge_fer.emotions.labels import EMOTIONS
from edge_fer.runtime.results import FaceResult, FrameResult
from edge_fer.runtime.stats import RunStats
from edge_fer.sources.picamera import DRM_DEFAULT_WINDOW, Picamera2Source, drm_picture_rect

pytestmark = pytest.mark.fast


def _face() -> FaceResult:
    probs = np.array([0.05, 0.02, 0.03, 0.7, 0.1, 0.05, 0.05])
    return FaceResult(3, (200, 120, 180, 180), "happy", 0.7, "happy", probs, smoothed_score=0.7)


def _hud_bottom(layer: np.ndarray) -> int:
    """The lowest row the HUD (top left, no faces drawn) paints."""
    return int((layer[:, : layer.shape[1] // 4, 3] > 0).any(axis=1).nonzero()[0].max())


@pytest.mark.parametrize(
    "main, lores, screen, picture",
    [
        ((640, 480), (320, 240), (1920, 1080), (240, 0, 1440, 1080)),  # pillarboxed
        ((640, 480), (320, 240), (1280, 800), (107, 0, 1066, 800)),  # picamera2 rounds down
        ((1280, 720), (320, 180), (1280, 1024), (0, 152, 1280, 720)),  # letterboxed
    ],
)
def test_drm_preview_fills_the_screen_with_the_aspect_kept(fake_picamera2, main, lores, screen, picture):
    source = Picamera2Source(0, main, lores, 30, screen=lambda: screen)
    source.open()  # the daemon opens the camera before it builds the display
    assert fake_picamera2.STATE["preview"] is fake_picamera2.Preview.NULL
    display = DrmPreviewDisplay(source, EMOTIONS, screen=screen)
    # The open camera was restarted with a DRM preview whose window is the whole screen.
    assert fake_picamera2.STATE["preview"] is fake_picamera2.Preview.DRM
    assert fake_picamera2.STATE["preview_window"] == (0, 0, *screen) == source.preview_window
    assert source.camera.started
    # picamera2 letterboxes the frame in that window; the overlay is drawn at that size.
    assert drm_picture_rect(main, source.preview_window) == picture
    assert display.overlay_size(main) == picture[2:]
    frame = source.read()
    assert frame.image.shape[:2] == main[::-1]
    result, stats = FrameResult(1, time.time(), frame.image, [], {}, "", EMOTIONS), RunStats()
    display.on_frame(result, stats)
    layer = source.camera.overlay
    assert layer.shape == (picture[3], picture[2], 4)
    # The HUD text is sized to the screen: as many times taller as the picture is shown.
    at_frame_size = render_overlay_rgba(main, [], hud_for(result, stats), EMOTIONS)
    shown = picture[3] / max(main[1], 240)
    ratio = _hud_bottom(layer) / _hud_bottom(at_frame_size)
    assert 0.8 * shown < ratio < 1.25 * shown
    source.close()
    assert fake_picamera2.STATE["preview"] is fake_picamera2.Preview.DRM  # the last one started


def test_face_boxes_land_on_the_picture_and_a_reopen_keeps_the_window(fake_picamera2):
    source = Picamera2Source(0, (640, 480), (320, 240), 30, screen=lambda: (1920, 1080))
    source.open()
    display = DrmPreviewDisplay(source, EMOTIONS, screen=(1920, 1080))
    frame = source.read()
    display.on_frame(FrameResult(1, time.time(), frame.image, [_face()], {}, "", EMOTIONS), RunStats())
    alpha = source.camera.overlay[..., 3]
    # The box (200, 120, 180, 180) at 1440/640 = 2.25x: its top edge at y=270, x 450..855.
    assert (alpha[266:275, 500:800] > 0).any(axis=0).all()  # the top edge runs across
    assert not (alpha[300:560, 520:780] > 0).any()  # inside the box: transparent
    # A reconnect closes and reopens the camera: the DRM preview comes back in the same window.
    source.close()
    fake_picamera2.STATE.update(preview=None, preview_window=None)
    source.open()
    assert fake_picamera2.STATE["preview"] is fake_picamera2.Preview.DRM
    assert fake_picamera2.STATE["preview_window"] == (0, 0, 1920, 1080)
    source.close()


@pytest.mark.parametrize(
    "window, screen, used",
    [
        ((0, 0, 3840, 2160), (1920, 1080), (0, 0, 1920, 1080)),  # larger than the screen: clipped
        ((100, 50, 1920, 1080), (1920, 1080), (100, 50, 1820, 1030)),  # partly off it: clipped
        ((0, 0, 0, 0), (1920, 1080), DRM_DEFAULT_WINDOW),  # zero size
        ((0, 0, 1920, -1080), (1920, 1080), DRM_DEFAULT_WINDOW),
        ((-10, 0, 640, 480), (1920, 1080), DRM_DEFAULT_WINDOW),
        ((1920, 0, 640, 480), (1920, 1080), DRM_DEFAULT_WINDOW),  # wholly off the screen
        ((0, 0, 1920.5, 1080), (1920, 1080), DRM_DEFAULT_WINDOW),  # not whole pixels
        (("0", 0, 1920, 1080), (1920, 1080), DRM_DEFAULT_WINDOW),
        ((0, 0, 1920), (1920, 1080), DRM_DEFAULT_WINDOW),  # not four numbers
        (1920, (1920, 1080), DRM_DEFAULT_WINDOW),
        ((0, 0, 100_000, 100_000), None, DRM_DEFAULT_WINDOW),  # no screen known, absurd size
        ((0, 0, 3840, 2160), None, (0, 0, 3840, 2160)),  # no screen known: taken as given
        ((np.int64(0), 0, np.int64(1280), 720), (1920, 1080), (0, 0, 1280, 720)),
    ],
)
def test_bad_preview_windows_are_clipped_or_refused(fake_picamera2, caplog, window, screen, used):
    source = Picamera2Source(0, (640, 480), (320, 240), 30, screen=lambda: screen)
    source.open()
    with caplog.at_level(logging.WARNING, logger="edge_fer.sources.picamera"):
        source.enable_drm_preview(window)
        source.enable_drm_preview(window)  # again: the running DRM preview is replaced
    assert fake_picamera2.STATE["preview_window"] == used == source.preview_window
    assert fake_picamera2.STATE["preview"] is fake_picamera2.Preview.DRM and source.camera.started
    assert ("DRM preview window" in caplog.text) == (used != tuple(np.atleast_1d(window).tolist()))
    assert source.read() is not None
    source.close()


def test_the_overlay_follows_the_window_the_source_really_used(fake_picamera2, caplog):
    # /sys/class/drm says 1920x1080 but the source knows its screen is 1280x720: it clips the
    # window, and the overlay is drawn for what is shown (960x720), not for the asked-for screen.
    source = Picamera2Source(0, (640, 480), (320, 240), 30, screen=lambda: (1280, 720))
    source.open()
    display = DrmPreviewDisplay(source, EMOTIONS, screen=(1920, 1080))
    assert display.window == (0, 0, 1280, 720) == fake_picamera2.STATE["preview_window"]
    assert display.overlay_size((640, 480)) == (960, 720)
    source.close()


@pytest.mark.parametrize("screen", [(0, 1080), (1920, 0), (-1920, 1080), ("1920", "1080"), (1920,)])
def test_an_unusable_screen_size_means_the_default_window(fake_picamera2, caplog, screen):
    source = Picamera2Source(0, (640, 480), (320, 240), 30, screen=lambda: None)
    source.open()
    with caplog.at_level(logging.WARNING):
        display = DrmPreviewDisplay(source, EMOTIONS, screen=screen)
    assert "not fullscreen" in caplog.text and display.screen is None
    assert fake_picamera2.STATE["preview_window"] == DRM_DEFAULT_WINDOW == display.window
    assert display.overlay_size((640, 480)) == (640, 480)
    frame = source.read()
    display.on_frame(FrameResult(1, time.time(), frame.image, [], {}, "", EMOTIONS), RunStats())
    assert source.camera.overlay.shape == (480, 640, 4)
    source.close()

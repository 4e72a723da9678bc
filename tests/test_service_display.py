import os
import socket
from pathlib import Path

import numpy as np
import pytest

from edge_fer.display.overlay import Hud, render, render_overlay_rgba
from edge_fer.emotions.labels import EMOTIONS
from edge_fer.runtime.results import FaceResult
from edge_fer.runtime.service import Notifier
from testkit.xvfb import XvfbMissing, start_xvfb

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.fast
@pytest.mark.parametrize("use_library", [True, False])
def test_notifier_speaks_sd_notify_over_a_real_socket(tmp_path, monkeypatch, use_library):
    if use_library:
        pytest.importorskip("systemd.daemon", reason="systemd-python not installed")
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(1)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    monkeypatch.setenv("WATCHDOG_USEC", "2000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    notifier = Notifier(use_library=use_library)
    assert notifier.watchdog_interval_s == 1.0
    notifier.ready("up")
    assert sock.recv(1024).decode() == f"READY=1\nSTATUS=up\nMAINPID={os.getpid()}"
    notifier.frame_done(10.0)
    notifier.frame_done(10.5)  # within the interval: no second ping
    notifier.frame_done(11.1)
    assert [sock.recv(64).decode() for _ in range(2)] == ["WATCHDOG=1", "WATCHDOG=1"]
    notifier.reloading()
    assert sock.recv(128).decode().startswith("RELOADING=1\nMONOTONIC_USEC=")
    sock.close()


@pytest.mark.fast
def test_no_notify_socket_means_silent(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    monkeypatch.setenv("WATCHDOG_USEC", "1000000")
    monkeypatch.setenv("WATCHDOG_PID", "1")  # another process's watchdog
    notifier = Notifier()
    assert not notifier.send("READY=1") and notifier.watchdog_interval_s is None


def _faces() -> list[FaceResult]:
    probs = np.array([0.05, 0.02, 0.03, 0.7, 0.1, 0.05, 0.05])
    return [FaceResult(3, (200, 120, 180, 180), "happy", 0.7, "happy", probs, smoothed_score=0.7)]


HUD = Hud(fps=46.0, frame_ms=9.1, capture_ms=1.8, detect_ms=14.2, detect_rate="1/2 frames", classify_ms=0.31)


@pytest.mark.fast
def test_overlay_draws_boxes_labels_and_hud(rng):
    frame = np.full((480, 640, 3), 60, np.uint8)
    out = render(frame, _faces(), HUD, EMOTIONS, top3=True)
    assert out.shape == frame.shape and not np.array_equal(out, frame)
    assert (out[120, 200:380] != 60).any()  # the box's top edge
    assert (out[306:380, 200:380] != 60).any() and (out[306:380, 400:] == 60).all()  # the top-3 bars
    plain = render(frame, _faces(), HUD, EMOTIONS, top3=False)
    assert (plain[306:380, 200:380] == 60).all()  # no bars without top3
    layer = render_overlay_rgba((640, 480), _faces(), HUD, EMOTIONS)
    assert layer.shape == (480, 640, 4) and layer[..., 3].max() == 255
    assert layer[240, 320, 3] == 0  # transparent where nothing is drawn


@pytest.mark.fast
def test_hud_says_what_its_numbers_are():
    assert HUD.lines() == [
        "46.0 fps",
        "detect 14.2 ms (1/2 frames)",
        "classify 0.31 ms",
        "capture 1.8 ms",
        "frame 9.1 ms avg",
        "outputs 0.0 ms avg",
    ]


@pytest.mark.fast
def test_frames_are_scaled_to_the_screen_with_their_aspect_kept():
    from edge_fer.display.overlay import fit_rect

    assert fit_rect((640, 480), (1920, 1080)) == (240, 0, 1440, 1080)  # pillarboxed
    assert fit_rect((640, 480), (1280, 800)) == (106, 0, 1067, 800)
    assert fit_rect((640, 360), (1280, 1024)) == (0, 152, 1280, 720)  # letterboxed
    frame = np.full((480, 640, 3), 60, np.uint8)
    out = render(frame, _faces(), HUD, EMOTIONS, size=(1920, 1080))
    assert out.shape == (1080, 1920, 3)
    assert (out[500:, :240] == 0).all() and (out[500:, 1680:] == 0).all()  # black bars
    # the face box (200, 120, 180, 180) at 2.25x: its top edge at y=270 from x=240+450
    assert (out[268:274, 700:1000] != 60).any() and (out[300:500, 700:1000] == 60).all()
    # the text is sized for the screen: the HUD's first line is ~2.25x as tall
    small = render(frame, [], HUD, EMOTIONS)
    big = render(frame, [], HUD, EMOTIONS, size=(1440, 1080))

    def hud_rows(img: np.ndarray) -> int:
        return int((img[:, :100] != 60).any(axis=(1, 2)).nonzero()[0].max())

    assert 1.9 < hud_rows(big) / hud_rows(small) < 2.6


@pytest.mark.fast
def test_a_label_that_is_not_a_class_is_drawn_as_given():
    face = FaceResult(
        3, (200, 120, 180, 180), "sad", 0.3, "uncertain", _faces()[0].probs, smoothed_score=0.41
    )
    out = render(np.full((480, 640, 3), 60, np.uint8), [face], HUD, EMOTIONS)
    assert (out[120, 200:380] != 60).any()


@pytest.mark.fast
def test_drm_display_fills_the_screen_and_draws_at_its_resolution(tmp_path):
    from edge_fer.display.screen import DrmPreviewDisplay, drm_screen_size

    for name, status, modes in [
        ("card1-HDMI-A-1", "disconnected", ""),
        ("card1-HDMI-A-2", "connected", "1280x800\n1024x768\n"),
    ]:
        (tmp_path / name).mkdir()
        (tmp_path / name / "status").write_text(status + "\n")
        (tmp_path / name / "modes").write_text(modes)
    assert drm_screen_size(tmp_path) == (1280, 800)
    assert drm_screen_size(tmp_path / "none") is None

    class Preview:
        def __init__(self) -> None:
            self.window, self.layers = None, []

        def enable_drm_preview(self, window=None) -> None:
            self.window = window

        def set_overlay(self, rgba) -> None:
            self.layers.append(rgba)

    preview = Preview()
    display = DrmPreviewDisplay(preview, EMOTIONS, screen=(1920, 1080))
    assert preview.window == (0, 0, 1920, 1080)
    assert display.overlay_size((640, 480)) == (1440, 1080)  # the picture's size on the screen
    windowed = DrmPreviewDisplay(Preview(), EMOTIONS, fullscreen=False)
    assert windowed.preview.window is None and windowed.overlay_size((640, 480)) == (640, 480)


@pytest.fixture()
def xvfb(monkeypatch):
    try:
        proc, display = start_xvfb()
    except XvfbMissing as exc:
        pytest.skip(str(exc))
    monkeypatch.setenv("DISPLAY", display)
    monkeypatch.delenv("SDL_VIDEODRIVER", raising=False)
    yield display
    proc.terminate()
    proc.wait(5)


def test_window_display_under_xvfb(xvfb, tmp_path):
    pygame = pytest.importorskip("pygame")
    from edge_fer.display.screen import WindowDisplay

    display = WindowDisplay(EMOTIONS, fullscreen=False, top3=True)
    frame = np.full((480, 640, 3), 90, np.uint8)
    assert display.show(frame, _faces(), HUD)
    shot = tmp_path / "window.png"
    display.save_screenshot(shot)
    assert pygame.display.get_driver() == "x11"
    image = pygame.surfarray.array3d(pygame.image.load(str(shot)))
    assert image.shape == (640, 480, 3)
    assert (image[200:380, 120] != 90).any()  # the face box made it to the window
    display.close()


def test_fullscreen_window_fills_the_screen(xvfb, tmp_path):
    """Xvfb's screen is 800x600: a 640x480 frame is scaled by 1.25 to fill it."""
    pygame = pytest.importorskip("pygame")
    from edge_fer.display.screen import WindowDisplay

    display = WindowDisplay(EMOTIONS, fullscreen=True, top3=True)
    frame = np.full((480, 640, 3), 90, np.uint8)
    assert display.show(frame, _faces(), HUD)
    shot = tmp_path / "full.png"
    display.save_screenshot(shot)
    image = pygame.surfarray.array3d(pygame.image.load(str(shot)))  # (x, y, rgb)
    assert image.shape == (800, 600, 3)
    assert (image[400, 300] == 90).all()  # the frame fills the screen, scaled up
    assert (image[260:465, 150] != 90).all() and (image[260:465, 200] == 90).all()  # box top at y=150
    display.close()


@pytest.mark.fast
def test_screenshot_tool_pixelates_inside_face_boxes_only():
    from edge_fer.data.demo_video import pixelate_faces

    image = np.random.default_rng(1).integers(0, 256, (100, 120, 3), dtype=np.uint8)
    out = pixelate_faces(image, [[10, 20, 60, 50]])
    inside = out[23:67, 13:67]
    assert len(np.unique(inside.reshape(-1, 3), axis=0)) <= 36  # 6x6 blocks, detail gone
    np.testing.assert_array_equal(out[20:23, 10:70], image[20:23, 10:70])  # the rim is kept
    np.testing.assert_array_equal(out[:, 75:], image[:, 75:])  # outside untouched


@pytest.mark.fast
def test_a_window_for_big_camera_frames_fits_on_the_desktop():
    """A 2304x1296 main stream (the Camera Module's default) opens a window that fits in 90% of
    a 1080p desktop, aspect kept; frames that fit open at their own size."""
    from edge_fer.display.screen import window_size

    assert window_size((2304, 1296), (1920, 1080)) == (1728, 972)
    assert window_size((640, 480), (1920, 1080)) == (640, 480)
    assert window_size((1920, 1080), (1280, 720)) == (1152, 648)
    assert window_size((2304, 1296), None) == (2304, 1296)
    assert window_size((2304, 1296), (0, 0)) == (2304, 1296)

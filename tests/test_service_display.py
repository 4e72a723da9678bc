import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from edge_fer.labels import EMOTIONS
from edge_fer.overlay import Hud, render, render_overlay_rgba
from edge_fer.results import FaceResult
from edge_fer.service import Notifier

ROOT = Path(__file__).resolve().parents[1]


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


def test_no_notify_socket_means_silent(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    monkeypatch.setenv("WATCHDOG_USEC", "1000000")
    monkeypatch.setenv("WATCHDOG_PID", "1")  # another process's watchdog
    notifier = Notifier()
    assert not notifier.send("READY=1") and notifier.watchdog_interval_s is None


def _faces() -> list[FaceResult]:
    probs = np.array([0.05, 0.02, 0.03, 0.7, 0.1, 0.05, 0.05])
    return [FaceResult(3, (200, 120, 180, 180), "happy", 0.7, "happy", probs)]


def test_overlay_draws_boxes_labels_and_hud(rng):
    frame = np.full((480, 640, 3), 60, np.uint8)
    out = render(frame, _faces(), Hud(12.0, 7.0, 0.3, 58.0), EMOTIONS, top3=True)
    assert out.shape == frame.shape and not np.array_equal(out, frame)
    assert (out[120, 200:380] != 60).any()  # the box's top edge
    layer = render_overlay_rgba((640, 480), _faces(), Hud(1, 1, 1, 1), EMOTIONS)
    assert layer.shape == (480, 640, 4) and layer[..., 3].max() == 255
    assert layer[240, 320, 3] == 0  # transparent where nothing is drawn


@pytest.fixture()
def xvfb(monkeypatch):
    exe = shutil.which("Xvfb")
    if exe is None:
        pytest.skip("Xvfb not installed (apt install xvfb)")
    display = ":97"
    proc = subprocess.Popen(
        [exe, display, "-screen", "0", "800x600x24", "-nolisten", "tcp"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(50):
        if Path(f"/tmp/.X11-unix/X{display[1:]}").exists():
            break
        time.sleep(0.1)
    monkeypatch.setenv("DISPLAY", display)
    monkeypatch.delenv("SDL_VIDEODRIVER", raising=False)
    yield display
    proc.terminate()
    proc.wait(5)


def test_window_display_under_xvfb(xvfb, tmp_path):
    pygame = pytest.importorskip("pygame")
    from edge_fer.outputs.display import WindowDisplay

    display = WindowDisplay(EMOTIONS, fullscreen=False, top3=True)
    frame = np.full((480, 640, 3), 90, np.uint8)
    assert display.show(frame, _faces(), Hud(14.2, 7.1, 0.31, 59.8))
    shot = tmp_path / "window.png"
    display.save_screenshot(shot)
    assert pygame.display.get_driver() == "x11"
    image = pygame.surfarray.array3d(pygame.image.load(str(shot)))
    assert image.shape == (640, 480, 3)
    assert (image[200:380, 120] != 90).any()  # the face box made it to the window
    display.close()


def test_screenshot_tool_pixelates_inside_face_boxes_only():
    from edge_fer.demo import pixelate_faces

    image = np.random.default_rng(1).integers(0, 256, (100, 120, 3), dtype=np.uint8)
    out = pixelate_faces(image, [[10, 20, 60, 50]])
    inside = out[23:67, 13:67]
    assert len(np.unique(inside.reshape(-1, 3), axis=0)) <= 36  # 6x6 blocks, detail gone
    np.testing.assert_array_equal(out[20:23, 10:70], image[20:23, 10:70])  # the rim is kept
    np.testing.assert_array_equal(out[:, 75:], image[:, 75:])  # outside untouched

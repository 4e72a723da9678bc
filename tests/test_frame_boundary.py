"""Frames checked where they enter, and bounded decoders, against real sources: video files of
degenerate shapes, an HTTP camera that misbehaves in every way (testkit/streams.py's
HostileMjpegServer), the GStreamer RTSP server, and frames too large for the decode budget."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import psutil
import pytest

from edge_fer.config import CameraConfig, FramesConfig, StreamConfig
from edge_fer.sources.base import CaptureError
from edge_fer.sources.frames import FrameCheck, check_frame, decode_jpeg, decode_size_refusal, jpeg_size
from edge_fer.sources.network import NetworkSource
from edge_fer.sources.registry import make_source
from edge_fer.sources.video import OpenCVSource
from testkit.streams import HostileMjpegServer, RtspServer, jpeg_frames, rtsp_server_missing, write_frames

ROOT = Path(__file__).resolve().parents[1]
LIMITS = FramesConfig()


@pytest.fixture(scope="module")
def face_frames(tmp_path_factory: pytest.TempPathFactory, demo_video: Path) -> str:
    return write_frames(demo_video, tmp_path_factory.mktemp("frames"), count=20, step=3)


def write_video(path: Path, width: int, height: int, frames: int = 15) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (width, height))
    assert writer.isOpened()
    for i in range(frames):
        writer.write(np.full((height, width, 3), 10 * i, np.uint8))
    writer.release()
    return path


def daemon(args: list[str], timeout: float = 90) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "edge_fer.apps.daemon", "--display", "none", "--console", "off", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# --- the frame check itself ----------------------------------------------------------------


@pytest.mark.fast
@pytest.mark.parametrize(
    ("shape", "dtype", "kept"),
    [
        ((480, 640, 3), np.uint8, (480, 640, 3)),
        ((480, 640), np.uint8, (480, 640, 3)),  # gray
        ((480, 640, 1), np.uint8, (480, 640, 3)),
        ((480, 640, 4), np.uint8, (480, 640, 3)),  # BGRA
        ((480, 640, 3), np.uint16, (480, 640, 3)),
        ((2, 2000, 3), np.uint8, None),
        ((2000, 2, 3), np.uint8, None),
        ((100, 1000, 3), np.uint8, None),  # 10:1, past max_aspect 8
        ((0, 640, 3), np.uint8, None),
        ((480, 640, 2), np.uint8, None),
        ((480, 640, 3), np.float32, None),
        ((480, 640, 3), np.int8, None),
        ((4, 480, 640, 3), np.uint8, None),
    ],
)
def test_frames_are_used_converted_or_dropped(shape, dtype, kept):
    checked = check_frame(np.zeros(shape, dtype), LIMITS)
    if kept is None:
        assert checked.image is None and checked.why
    else:
        assert checked.image is not None and checked.image.shape == kept and checked.image.dtype == np.uint8


@pytest.mark.fast
def test_frames_past_the_pixel_budget_are_scaled_with_one_warning(caplog):
    check = FrameCheck(FramesConfig(max_pixels=100_000), "test")
    for _ in range(5):
        image = check(np.zeros((1080, 1920, 3), np.uint8))
        assert image is not None and image.shape[0] * image.shape[1] <= 100_000
        assert abs(image.shape[1] / image.shape[0] - 1920 / 1080) < 0.02
    assert sum("max_pixels" in r.getMessage() for r in caplog.records) == 1


def test_a_jpeg_is_measured_from_its_header_and_a_bomb_never_decoded(face_frames):
    from testkit.streams import bomb_jpeg

    jpeg = jpeg_frames(face_frames)[0]
    real = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert jpeg_size(jpeg) == (real.shape[1], real.shape[0])
    image, why = decode_jpeg(bomb_jpeg(jpeg), LIMITS)
    assert image is None and "60000x60000" in why
    assert decode_jpeg(b"\xff\xd8garbage", LIMITS)[0] is None
    assert decode_jpeg(b"", LIMITS)[0] is None


@pytest.mark.fast
def test_decode_budget_names_the_size_and_the_fix():
    why = decode_size_refusal(7680, 4320, LIMITS, "video file x.mp4")
    assert why is not None and "7680x4320" in why and "ffmpeg" in why
    assert decode_size_refusal(1920, 1080, LIMITS, "x") is None
    assert decode_size_refusal(0, 0, LIMITS, "x") is None  # unknown: the frame check decides


# --- video files ---------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(2000, 2), (2, 2000), (1600, 16)])
def test_a_degenerate_video_is_one_line_and_exit_4_not_an_internal_error(tmp_path, shipped_model, size):
    video = write_video(tmp_path / "thin.avi", *size)
    proc = daemon(["--model", str(shipped_model), "--stats-path", str(tmp_path / "s.json"),
                   "--source", f"file:{video}", "--max-frames", "5"])  # fmt: skip
    assert proc.returncode == 4, proc.stderr
    assert "gives no usable frames" in proc.stderr and f"{size[0]}x{size[1]}" in proc.stderr
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr


def test_a_video_past_the_decode_budget_is_refused_before_it_is_decoded(tmp_path, shipped_model, demo_video):
    config = tmp_path / "config.yaml"
    config.write_text("frames:\n  max_decode_pixels: 76800\n")
    stats = str(tmp_path / "s.json")
    proc = daemon(["--config", str(config), "--model", str(shipped_model), "--stats-path", stats,
                   "--source", f"file:{demo_video}", "--max-frames", "5"])  # fmt: skip
    assert proc.returncode == 4, proc.stderr
    assert "640x480, more than frames.max_decode_pixels=76800" in proc.stderr


@pytest.mark.fast
def test_a_big_video_frame_is_scaled_to_the_pixel_budget(tmp_path):
    video = write_video(tmp_path / "big.avi", 1280, 720)
    source = make_source(f"file:{video}", CameraConfig(), frames=FramesConfig(max_pixels=230_400))
    source.open()
    try:
        frame = source.read()
        assert frame is not None and frame.image.shape == (360, 640, 3)
    finally:
        source.close()


@pytest.mark.fast
def test_a_video_whose_frames_turn_degenerate_mid_run_only_drops_them(tmp_path):
    source = OpenCVSource(write_video(tmp_path / "ok.avi", 320, 240))
    source.open()
    source.check = FrameCheck(FramesConfig(min_side=300), "test")  # from now on every frame is too small
    try:
        assert source.read() is None and source.check.dropped == {"small": 1}
    finally:
        source.close()


# --- HTTP cameras --------------------------------------------------------------------------


def stream(read_timeout_s: float = 3.0) -> StreamConfig:
    return StreamConfig(open_timeout_s=3.0, read_timeout_s=read_timeout_s)


def read_frames(source: NetworkSource, count: int, timeout: float = 20.0) -> int:
    got, deadline = 0, time.monotonic() + timeout
    while got < count and time.monotonic() < deadline:
        try:
            got += source.read() is not None
        except CaptureError:
            source.open()
    return got


@pytest.mark.parametrize("mode", ["endless", "junk", "huge-length"])
def test_an_endless_http_part_is_dropped_in_bounded_memory_and_frames_resume(face_frames, mode, caplog):
    server = HostileMjpegServer(jpeg_frames(face_frames), fps=20, rate=16 << 20)
    source = make_source(
        server.url, CameraConfig(), stream=stream(), frames=FramesConfig(max_part_bytes=1 << 20)
    )
    rss = psutil.Process().memory_info
    try:
        source.open()
        assert read_frames(source, 5) == 5
        before = rss().rss
        server.mode = mode
        deadline = time.monotonic() + 6
        peak = before
        while time.monotonic() < deadline:
            try:
                source.read()
            except CaptureError:
                source.open() if server.mode == "good" else None
            peak = max(peak, rss().rss)
        sent = server.sent_bytes
        server.mode = "good"
        assert read_frames(source, 5) == 5  # back to frames (a new connection for huge-length)
    finally:
        source.close()
        server.close()
    assert sent > 40 << 20  # the server did send a lot
    assert peak - before < 40 << 20, f"RSS grew {(peak - before) / 2**20:.0f} MB"


BAD_PARTS = [
    ("garbage", "not a JPEG"),
    ("bomb", "60000x60000"),
    ("degenerate", "2000x2"),
    ("headers", "header lines"),
]


@pytest.mark.parametrize(("mode", "said"), BAD_PARTS)
def test_bad_http_parts_are_dropped_with_one_warning_and_frames_resume(face_frames, mode, said, caplog):
    server = HostileMjpegServer(jpeg_frames(face_frames), fps=30)
    source = make_source(server.url, CameraConfig(), stream=stream())
    try:
        source.open()
        assert read_frames(source, 3) == 3
        server.mode = mode
        time.sleep(1.5)
        server.mode = "good"
        assert read_frames(source, 5) == 5
    finally:
        source.close()
        server.close()
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and said in r.getMessage()]
    assert len(warnings) == 1, [r.getMessage() for r in caplog.records]


def test_a_camera_that_only_sends_bad_parts_is_a_stall_that_says_why(face_frames):
    server = HostileMjpegServer(jpeg_frames(face_frames), fps=30)
    server.mode = "degenerate"
    source = make_source(server.url, CameraConfig(), stream=stream(read_timeout_s=1.0))
    try:
        with pytest.raises(CaptureError, match="no frame within"):
            source.open()
    finally:
        source.close()
        server.close()


def test_the_daemon_on_a_degenerate_http_camera_exits_4_with_the_reason(tmp_path, shipped_model, face_frames):
    server = HostileMjpegServer(jpeg_frames(face_frames), fps=30)
    server.mode = "degenerate"
    config = tmp_path / "config.yaml"
    config.write_text("stream:\n  open_timeout_s: 2\n  read_timeout_s: 2\n")
    try:
        proc = daemon(["--config", str(config), "--model", str(shipped_model), "--stats-path",
                       str(tmp_path / "s.json"), "--source", server.url, "--max-frames", "5"])  # fmt: skip
    finally:
        server.close()
    assert proc.returncode == 4, proc.stderr
    assert "2000x2" in proc.stderr and "Traceback" not in proc.stderr


# --- RTSP ----------------------------------------------------------------------------------


def test_an_rtsp_stream_past_the_decode_budget_is_refused_at_open(tmp_path, shipped_model, face_frames):
    missing = rtsp_server_missing()
    if missing:
        pytest.fail(missing)
    server = RtspServer(face_frames, fps=15)
    config = tmp_path / "config.yaml"
    config.write_text("frames:\n  max_decode_pixels: 76800\n")
    try:
        proc = daemon(["--config", str(config), "--model", str(shipped_model), "--stats-path",
                       str(tmp_path / "s.json"), "--source", server.url, "--max-frames", "5"])  # fmt: skip
    finally:
        server.stop()
    assert proc.returncode == 4, proc.stderr
    assert "more than frames.max_decode_pixels=76800" in proc.stderr and "Traceback" not in proc.stderr


class SnapshotServer:
    """A camera's snapshot URL: one JPEG per GET (`endless`: a body that never ends)."""

    def __init__(self, jpeg: bytes) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.jpeg, self.endless, self.requests = jpeg, False, 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                outer.requests += 1
                self.send_response(200)
                self.send_header("Content-Type", "image/jpeg")
                if not outer.endless:
                    self.send_header("Content-Length", str(len(outer.jpeg)))
                self.end_headers()
                try:
                    if not outer.endless:
                        self.wfile.write(outer.jpeg)
                        return
                    self.wfile.write(b"\xff\xd8")
                    for _ in range(2000):  # 128 MB, far past any part limit
                        self.wfile.write(b"\0" * 65536)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/snapshot.jpg"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_a_snapshot_url_is_polled_and_an_endless_snapshot_dropped(face_frames, caplog):
    server = SnapshotServer(jpeg_frames(face_frames)[0])
    source = make_source(
        server.url, CameraConfig(), stream=stream(), frames=FramesConfig(max_part_bytes=1 << 20)
    )
    try:
        source.open()
        assert read_frames(source, 5) == 5 and server.requests >= 5
        server.endless = True
        before = psutil.Process().memory_info().rss
        with pytest.raises(CaptureError, match="over frames.max_part_bytes"):
            for _ in range(100):
                source.read()
        assert psutil.Process().memory_info().rss - before < 40 << 20
        server.endless = False
        source.open()
        assert read_frames(source, 3) == 3
    finally:
        source.close()
        server.close()

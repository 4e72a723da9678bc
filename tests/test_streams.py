"""Network cameras, video pacing and quiet probing, against real servers on 127.0.0.1: the
GStreamer RTSP server going away and coming back mid-run, an HTTP MJPEG stream, one that
stalls, and bad URLs and credential files."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from edge_fer.config import Config, ConfigError, StreamConfig, apply_overrides, load_config
from edge_fer.sources.base import CaptureError
from edge_fer.sources.network import NetworkSource, mask_url
from edge_fer.sources.reconnect import ReconnectingSource
from edge_fer.sources.video import OpenCVSource
from edge_fer.sources.webcam import _webcam_works
from testkit.programs import start_daemon
from testkit.streams import MjpegServer, RtspServer, free_port, jpeg_frames, rtsp_server_missing, write_frames

ROOT = Path(__file__).resolve().parents[1]


def daemon(args: list[str]) -> subprocess.Popen:
    return start_daemon(args, stdout=subprocess.DEVNULL)


@pytest.fixture()
def stream_args(tmp_path: Path, shipped_model: Path) -> list[str]:
    return ["--display", "none", "--model", str(shipped_model), "--console", "off",
            "--stats-path", str(tmp_path / "stats.json")]  # fmt: skip


@pytest.fixture(scope="module")
def face_frames(tmp_path_factory: pytest.TempPathFactory, demo_video: Path) -> str:
    return write_frames(demo_video, tmp_path_factory.mktemp("frames"), count=45, step=2)


def read_stats(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def wait_until(fn, timeout: float, step: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(step)
    return None


def test_rtsp_camera_survives_the_server_going_away_and_coming_back(tmp_path, stream_args, face_frames):
    missing = rtsp_server_missing()
    if missing:
        pytest.fail(missing)  # .ci/run installs it: a missing server is a broken setup, not a skip
    server = RtspServer(face_frames, fps=15)
    stats = tmp_path / "stats.json"
    events = tmp_path / "events.jsonl"
    proc = daemon([*stream_args, "--source", server.url, "--events-jsonl", str(events)])
    try:
        assert wait_until(lambda: read_stats(stats).get("frames", 0) > 20, 60), proc.stderr
        server.stop()
        stopped_at = time.monotonic()
        # The read timeout (5 s) ends the wait on the dead stream; meanwhile no frames.
        time.sleep(7)
        frames_during = read_stats(stats)["frames"]
        time.sleep(1)
        assert read_stats(stats)["frames"] == frames_during  # nothing made up while it is gone
        assert proc.poll() is None, "the daemon must keep retrying, not exit"
        server.start()
        restarted = time.monotonic()
        back = wait_until(
            lambda: (
                read_stats(stats).get("reconnects", 0) >= 1
                and read_stats(stats).get("frames", 0) > frames_during + 10
            ),
            40,
        )
        assert back, f"no frames after the server came back: {read_stats(stats)}"
        reconnect_s = time.monotonic() - restarted
        print(f"\nRTSP: frames again {reconnect_s:.1f} s after the server restarted "
              f"({time.monotonic() - stopped_at:.1f} s outage in all)")  # fmt: skip
        assert reconnect_s < 20  # back-off <= 10 s, plus FFmpeg's connect
        t = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
        assert time.monotonic() - t < 3 and proc.returncode == 0, err
    finally:
        proc.kill()
        server.stop()
    assert "Traceback" not in err
    assert err.count("dropped out") == 1, err  # one warning per outage, not per retry
    lines = [json.loads(line) for line in events.read_text().splitlines()]
    assert sum(1 for e in lines if e["faces"]) > len(lines) // 2  # real faces came through


def test_http_mjpeg_stream_feeds_the_daemon(tmp_path, stream_args, face_frames):
    server = MjpegServer(jpeg_frames(face_frames), fps=30)
    events = tmp_path / "events.jsonl"
    try:
        args = ["--source", server.url, "--max-frames", "40", "--events-jsonl", str(events)]
        proc = daemon([*stream_args, *args])
        _, err = proc.communicate(timeout=90)
    finally:
        server.close()
    assert proc.returncode == 0, err
    lines = [json.loads(line) for line in events.read_text().splitlines()]
    assert len(lines) == 40 and sum(1 for e in lines if e["faces"]) >= 20
    assert f"source {server.url}" in err


def test_a_stalled_stream_is_reopened_not_waited_on(face_frames):
    server = MjpegServer(jpeg_frames(face_frames), fps=30, stall_after=10)
    source = ReconnectingSource(
        NetworkSource(server.url, StreamConfig(open_timeout_s=2, read_timeout_s=1)), max_backoff_s=0.5
    )
    try:
        source.open()
        got, t0 = 0, time.monotonic()
        while source.reconnects < 1 and time.monotonic() - t0 < 15:
            if source.read() is not None:
                got += 1
        elapsed = time.monotonic() - t0
    finally:
        source.close()
        server.close()
    assert source.reconnects == 1 and got >= 10
    assert server.connections >= 2  # it really connected again
    assert elapsed < 6, elapsed  # 1 s read timeout + 0.5 s back-off + connect, never a hang


def test_a_stop_request_cuts_a_stream_wait_short(face_frames):
    server = MjpegServer(jpeg_frames(face_frames), fps=30, stall_after=3)
    stop = {"now": False}
    source = ReconnectingSource(
        NetworkSource(server.url, StreamConfig(read_timeout_s=30)), should_stop=lambda: stop["now"]
    )
    try:
        source.open()
        for _ in range(3):
            source.read()
        stop["now"] = True
        t = time.monotonic()
        assert source.read() is None
        assert time.monotonic() - t < 0.5
    finally:
        source.close()
        server.close()


def test_unreachable_stream_is_a_one_line_error(tmp_path, stream_args):
    port = free_port()  # nothing listens there
    t = time.monotonic()
    proc = daemon([*stream_args, "--source", f"rtsp://127.0.0.1:{port}/cam"])
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 4, err
    assert time.monotonic() - t < 30
    line = [x for x in err.splitlines() if "camera error" in x]
    assert len(line) == 1 and "cannot connect" in line[0] and "check the URL" in line[0]
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "source, message",
    [
        ("rtsp://admin:hunter2@127.0.0.1/cam", "must not hold a password"),
        ("rtsp:///nohost", "not a valid stream URL"),
        ("http://127.0.0.1:99999/x", "not a valid stream URL"),
        ("ftp://127.0.0.1/x", "is not valid; expected auto"),
    ],
)
def test_bad_stream_urls_are_refused_at_config_time(tmp_path, stream_args, source, message):
    proc = daemon([*stream_args, "--source", source])
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and message in err, err
    assert "hunter2" not in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_camera_password_comes_from_an_owner_only_file_and_is_never_logged(
    tmp_path, stream_args, face_frames
):
    server = MjpegServer(jpeg_frames(face_frames), fps=30)
    secret = tmp_path / "cam.pass"
    secret.write_text("s3cr3t-pw\n")
    secret.chmod(0o644)
    config = tmp_path / "config.yaml"
    config.write_text(f"source: {server.url}\nstream:\n  username: viewer\n  password_file: {secret}\n")
    try:
        proc = daemon([*stream_args, "--config", str(config), "--max-frames", "10", "--log-level", "DEBUG"])
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 2 and f"chmod 600 {secret}" in err and "Traceback" not in err, err
        secret.chmod(0o600)
        proc = daemon([*stream_args, "--config", str(config), "--max-frames", "10", "--log-level", "DEBUG"])
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
    finally:
        server.close()
    assert "s3cr3t-pw" not in err and "viewer" not in err
    # A password file with no user is refused at config time.
    config.write_text(f"source: {server.url}\nstream:\n  password_file: {secret}\n")
    with pytest.raises(ConfigError, match="needs stream.username"):
        load_config(config)


def test_mask_url_hides_only_the_password():
    assert mask_url("rtsp://u:p%40ss@cam.local:554/s1?x=1") == "rtsp://u:***@cam.local:554/s1?x=1"
    assert mask_url("rtsp://cam.local/s1") == "rtsp://cam.local/s1"
    assert mask_url("http://u:pw@[::1]:8080/v") == "http://u:***@[::1]:8080/v"


def test_video_files_play_at_their_own_frame_rate_unless_fast(demo_video):
    def seconds_for(frames: int, realtime: bool) -> float:
        source = OpenCVSource(demo_video, realtime=realtime)
        source.open()
        t = time.monotonic()
        for _ in range(frames):
            assert source.read() is not None
        source.close()
        return time.monotonic() - t

    paced = seconds_for(45, realtime=True)  # the demo video is 30 fps
    fast = seconds_for(45, realtime=False)
    assert 1.3 < paced < 2.5, paced
    assert fast < paced / 2, (fast, paced)
    config = apply_overrides(Config(), {"pace": "fast"})
    assert config.pace == "fast" and Config().pace == "realtime"
    with pytest.raises(ConfigError, match="one of realtime, fast"):
        apply_overrides(Config(), {"pace": "slow"})


def test_webcam_probe_prints_no_opencv_warnings(capfd):
    assert _webcam_works(0, devices="/nonexistent/video*") is False
    assert _webcam_works(57, devices="/dev/null") is False  # a device exists: OpenCV really tries
    err = capfd.readouterr().err
    assert "camera" not in err.lower() and "WARN" not in err, err


def test_a_photo_as_daemon_source_points_at_edge_fer_classify(tmp_path, stream_args):
    import cv2
    import numpy as np

    photo = tmp_path / "me.jpg"
    cv2.imwrite(str(photo), np.zeros((64, 64, 3), np.uint8))
    proc = daemon([*stream_args, "--source", f"file:{photo}"])
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 4 and f"edge-fer-classify {photo}" in err and "Traceback" not in err


def test_network_source_error_names_the_masked_url_only(monkeypatch):
    cfg = StreamConfig(open_timeout_s=0.5, read_timeout_s=0.5)
    src = NetworkSource(f"http://127.0.0.1:{free_port()}/v.mjpg", cfg)
    with pytest.raises(CaptureError, match="cannot connect"):
        src.open()


def test_a_user_in_both_the_url_and_stream_username_is_refused(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("source: rtsp://bob@127.0.0.1/cam\nstream:\n  username: bob\n")
    with pytest.raises(ConfigError, match="keep only stream.username"):
        load_config(config)
    config.write_text("source: rtsp://bob@127.0.0.1/cam\n")
    assert load_config(config).source == "rtsp://bob@127.0.0.1/cam"


def test_the_pacing_sleep_is_reported_so_it_is_not_counted_as_capture_time(demo_video):
    paced = ReconnectingSource(OpenCVSource(demo_video, realtime=True))
    paced.open()
    waits = []
    for _ in range(10):
        paced.read()
        waits.append(paced.paced_wait_s)
    paced.close()
    assert 0.2 < sum(waits) < 0.4, waits  # ~9 frame periods of 1/30 s
    fast = ReconnectingSource(OpenCVSource(demo_video, realtime=False))
    fast.open()
    fast.read()
    assert fast.paced_wait_s == 0.0
    fast.close()

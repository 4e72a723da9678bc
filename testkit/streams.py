"""Real stream servers for the tests: Debian's GStreamer RTSP server (run with the system
python, which has python3-gi) serving a looping set of JPEG frames, a tiny HTTP MJPEG
server, and a silent TCP server that accepts and never answers. All listen on 127.0.0.1 only."""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

SYSTEM_PYTHON = "/usr/bin/python3"

RTSP_SERVER = r"""
import sys
import gi
gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer
Gst.init(None)
port, pattern, fps = sys.argv[1], sys.argv[2], sys.argv[3]
server = GstRtspServer.RTSPServer()
server.set_address("127.0.0.1")
server.set_service(port)
factory = GstRtspServer.RTSPMediaFactory()
factory.set_launch(
    f'( multifilesrc location="{pattern}" loop=true caps="image/jpeg,framerate={fps}/1" ! jpegdec '
    "! videoconvert ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=15 "
    "! rtph264pay name=pay0 pt=96 )"
)
factory.set_shared(True)
server.get_mount_points().add_factory("/cam", factory)
if server.attach(None) == 0:
    sys.exit("cannot listen on " + port)
print("ready", flush=True)
GLib.MainLoop().run()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rtsp_server_missing() -> str | None:
    """Why the RTSP server cannot run here, or None."""
    if not Path(SYSTEM_PYTHON).exists():
        return f"{SYSTEM_PYTHON} not found"
    probe = subprocess.run(
        [SYSTEM_PYTHON, "-c", "import gi; gi.require_version('GstRtspServer', '1.0');"
         "from gi.repository import Gst, GstRtspServer; Gst.init(None);"
         "import sys; sys.exit(0 if Gst.ElementFactory.find('x264enc') else 3)"],
        capture_output=True,
    )  # fmt: skip
    if probe.returncode != 0:
        return (
            "GStreamer RTSP server not installed (apt install gir1.2-gst-rtsp-server-1.0 "
            "gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly python3-gi)"
        )
    return None


def write_frames(video: Path, folder: Path, count: int = 60, step: int = 1) -> str:
    """JPEG frames of a video (real faces) as folder/f%03d.jpg; returns the pattern."""
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    cap = cv2.VideoCapture(str(video))
    written = 0
    index = 0
    while written < count:
        ok, frame = cap.read()
        if not ok:
            break
        if index % step == 0:
            cv2.imwrite(str(folder / f"f{written:03d}.jpg"), frame, [cv2.IMWRITE_JPEG_QUALITY, 90])
            written += 1
        index += 1
    cap.release()
    assert written > 0, f"no frames in {video}"
    return str(folder / "f%03d.jpg")


class RtspServer:
    """The GStreamer RTSP server as a subprocess; stop() and start() keep its port."""

    def __init__(self, pattern: str, fps: int = 15) -> None:
        self.port = free_port()
        self.pattern, self.fps = pattern, fps
        self.proc: subprocess.Popen | None = None
        self.url = f"rtsp://127.0.0.1:{self.port}/cam"
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [SYSTEM_PYTHON, "-c", RTSP_SERVER, str(self.port), self.pattern, str(self.fps)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line.strip() == "ready", f"RTSP server did not start: {line!r}"

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=5)
            self.proc = None


def jpeg_frames(pattern: str) -> list[bytes]:
    folder = Path(pattern).parent
    return [p.read_bytes() for p in sorted(folder.glob("f*.jpg"))]


class _LocalHttpCamera:
    """What the local HTTP cameras share: a threaded server on 127.0.0.1 serving `Handler` from
    a background thread, its `/video.mjpg` URL, and a close that stops the handlers too."""

    _stop: threading.Event

    def _serve(self, handler: type) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/video.mjpg"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()


class MjpegServer(_LocalHttpCamera):
    """multipart/x-mixed-replace JPEG frames at `fps` on /video.mjpg (as IP cameras and phone
    apps serve them). `stall_after` frames, a connection stops sending but stays open."""

    def __init__(self, frames: list[bytes], fps: float = 15.0, stall_after: int | None = None) -> None:
        self.frames, self.fps, self.stall_after = frames, fps, stall_after
        self.connections = 0
        self._stop = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                if self.path != "/video.mjpg":
                    self.send_error(404)
                    return
                outer.connections += 1
                _begin_mjpeg(self)
                sent = 0
                try:
                    while not outer._stop.is_set():
                        if outer.stall_after is not None and sent >= outer.stall_after:
                            outer._stop.wait(0.2)  # stalled: connected, nothing sent
                            continue
                        jpg = outer.frames[sent % len(outer.frames)]
                        self.wfile.write(
                            b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                            + str(len(jpg)).encode()
                            + b"\r\n\r\n"
                            + jpg
                            + b"\r\n"
                        )
                        sent += 1
                        time.sleep(1.0 / outer.fps)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self._serve(Handler)


def _begin_mjpeg(handler: BaseHTTPRequestHandler) -> None:
    """The 200 and headers of an MJPEG answer whose parts are separated by `--frame`."""
    handler.send_response(200)
    handler.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
    handler.end_headers()


def have_mosquitto() -> str | None:
    fallback = "/usr/sbin/mosquitto"
    return shutil.which("mosquitto") or (fallback if Path(fallback).exists() else None)


class SilentServer:
    """Accepts TCP connections on loopback and never sends a byte: a hung camera, or an MQTT
    broker that never answers CONNECT (also used by benchmarks/bench_faults.py)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                self.held.append(self.sock.accept()[0])
            except OSError:
                return

    def close(self) -> None:
        for conn in self.held:
            conn.close()
        self.sock.close()


def degenerate_jpeg(width: int = 2000, height: int = 2) -> bytes:
    """A real JPEG of a degenerate shape (a 2000x2 strip)."""
    import cv2
    import numpy as np

    ok, data = cv2.imencode(".jpg", np.full((height, width, 3), 128, np.uint8))
    assert ok
    return data.tobytes()


def bomb_jpeg(jpeg: bytes, width: int = 60000, height: int = 60000) -> bytes:
    """`jpeg` with its frame header claiming `width` x `height`: a few KB that would decode
    to gigabytes."""
    data = bytearray(jpeg)
    i = 2
    while i + 9 <= len(data):
        marker, length = data[i + 1], (data[i + 2] << 8) | data[i + 3]
        if marker in (0xC0, 0xC1, 0xC2):
            data[i + 5 : i + 7] = height.to_bytes(2, "big")
            data[i + 7 : i + 9] = width.to_bytes(2, "big")
            return bytes(data)
        i += 2 + length
    raise AssertionError("no frame header in the JPEG")


class HostileMjpegServer(_LocalHttpCamera):
    """An MJPEG camera on 127.0.0.1 whose behaviour can be switched while clients read it
    (`mode`), for the tests and benchmarks/bench_faults.py:

      good         JPEG parts of real faces at `fps`
      endless      one part with no Content-Length that never ends (random bytes at
                   `rate` bytes/s) until the mode changes
      huge-length  a part announcing 10 GB, then random bytes until the mode changes (then
                   the connection is closed: the part can never be finished)
      garbage      well-framed parts of random bytes
      degenerate   well-framed JPEGs of 2000x2 pixels
      bomb         well-framed JPEGs whose header claims 60000x60000 pixels
      junk         bytes with no boundary at all until the mode changes
      headers      parts with thousands of header lines
    """

    MODES = ("good", "endless", "huge-length", "garbage", "degenerate", "bomb", "junk", "headers")

    def __init__(self, frames: list[bytes], fps: float = 15.0, rate: int = 8 << 20) -> None:
        import os as _os

        self.frames, self.fps, self.rate = frames, fps, rate
        self.mode = "good"
        self.connections = 0
        self.sent_bytes = 0
        self._stop = threading.Event()
        self._random = _os.urandom
        self._degenerate = degenerate_jpeg()
        self._bomb = bomb_jpeg(frames[0])
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _part(self, body: bytes, length: int | None = None) -> None:
                size = len(body) if length is None else length
                self.wfile.write(
                    b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                    + str(size).encode()
                    + b"\r\n\r\n"
                    + body
                    + b"\r\n"
                )
                outer.sent_bytes += len(body)

            def _stream_random(self, mode: str) -> None:
                chunk = 64 << 10
                while outer.mode == mode and not outer._stop.is_set():
                    self.wfile.write(outer._random(chunk))
                    outer.sent_bytes += chunk
                    time.sleep(chunk / outer.rate)

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                outer.connections += 1
                _begin_mjpeg(self)
                sent = 0
                try:
                    while not outer._stop.is_set():
                        mode = outer.mode
                        if mode == "good":
                            self._part(outer.frames[sent % len(outer.frames)])
                        elif mode == "endless":
                            self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\n\r\n\xff\xd8")
                            self._stream_random(mode)
                            self.wfile.write(b"\r\n")
                        elif mode == "huge-length":
                            self.wfile.write(
                                b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: 10000000000\r\n\r\n"
                            )
                            self._stream_random(mode)
                            return
                        elif mode == "garbage":
                            self._part(outer._random(20_000 + sent % 5000))
                        elif mode == "degenerate":
                            self._part(outer._degenerate)
                        elif mode == "bomb":
                            self._part(outer._bomb)
                        elif mode == "junk":
                            self._stream_random(mode)
                        elif mode == "headers":
                            self.wfile.write(b"--frame\r\n" + b"X-Pad: 1\r\n" * 5000 + b"\r\n")
                        sent += 1
                        time.sleep(1.0 / outer.fps)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self._serve(Handler)

"""A small, bounded HTTP server for Prometheus' `/metrics` (the daemon's and the monitor's).

prometheus_client's own server starts a thread per connection and never times a client out:
300 half-sent requests held open grew the daemon from 7 to 307 threads, and a flood of
scrapes took a third of the frame rate. This one:

* serves at most `max_handlers` connections at once, so threads stay bounded; when all are
  busy, a new connection takes the place of the one open longest if that one has been open
  over `EVICT_AFTER_S` (a scrape takes milliseconds: slow clients are pushed out by new ones,
  so a scraper still gets through 300 half-open connections), else it is closed at once;
* gives each connection `timeout_s` in total to send its request head (at most
  `MAX_REQUEST_BYTES`) and take the answer, however slowly it trickles bytes;
* renders the registry at most once per `min_render_interval_s` and serves that copy to
  everyone asking meanwhile, so a flood costs the frame loop little.
"""

from __future__ import annotations

import gzip
import logging
import socket
import socketserver
import threading
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

log = logging.getLogger(__name__)

MAX_REQUEST_BYTES = 16 * 1024
REQUEST_TIMEOUT_S = 5.0
MAX_HANDLERS = 8
MIN_RENDER_INTERVAL_S = 0.5
EVICT_AFTER_S = 0.5


class _Handler(socketserver.BaseRequestHandler):
    server: MetricsHTTPServer

    def _send(
        self, sock: socket.socket, status: str, body: bytes, headers: dict[str, str], head_only: bool
    ) -> None:
        lines = [f"HTTP/1.1 {status}", f"Content-Length: {len(body)}", "Connection: close"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        payload = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (b"" if head_only else body)
        sock.sendall(payload)

    def handle(self) -> None:
        sock: socket.socket = self.request
        deadline = time.monotonic() + self.server.timeout_s
        data = b""
        try:
            while b"\r\n\r\n" not in data and b"\n\n" not in data:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return  # too slow: close without an answer
                sock.settimeout(remaining)
                chunk = sock.recv(4096)
                if not chunk:
                    return
                data += chunk
                if len(data) > MAX_REQUEST_BYTES:
                    self._send(sock, "431 Request Header Fields Too Large", b"", {}, False)
                    return
            sock.settimeout(max(deadline - time.monotonic(), 0.1))
            head = data.split(b"\n\n", 1)[0].split(b"\r\n\r\n", 1)[0].decode("latin-1")
            request, *header_lines = head.replace("\r\n", "\n").split("\n")
            parts = request.split()
            if len(parts) != 3 or not parts[2].startswith("HTTP/"):
                self._send(sock, "400 Bad Request", b"bad request\n", {"Content-Type": "text/plain"}, False)
                return
            method, target = parts[0], parts[1]
            if method not in ("GET", "HEAD"):
                self._send(sock, "405 Method Not Allowed", b"", {"Allow": "GET, HEAD"}, False)
                return
            if target.split("?", 1)[0] == "/favicon.ico":
                self._send(sock, "404 Not Found", b"", {}, method == "HEAD")
                return
            headers = {}
            for line in header_lines:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            body, content_type = self.server.render(headers.get("accept", ""))
            extra = {"Content-Type": content_type}
            if "gzip" in headers.get("accept-encoding", ""):
                body = gzip.compress(body, compresslevel=1)
                extra["Content-Encoding"] = "gzip"
            self._send(sock, "200 OK", body, extra, method == "HEAD")
        except (OSError, ValueError):
            return  # the client went away or timed out; nothing to tell anyone


class MetricsHTTPServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    """`/metrics` for one registry, with bounded handler threads and per-client deadlines."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(
        self,
        registry: CollectorRegistry,
        port: int,
        bind: str,
        max_handlers: int = MAX_HANDLERS,
        timeout_s: float = REQUEST_TIMEOUT_S,
        min_render_interval_s: float = MIN_RENDER_INTERVAL_S,
    ) -> None:
        family, _, _, _, address = socket.getaddrinfo(
            bind, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        self.address_family = family
        self.registry = registry
        self.timeout_s = timeout_s
        self.min_render_interval_s = min_render_interval_s
        self.refused = 0
        self._slots = threading.BoundedSemaphore(max_handlers)
        self._active: dict[socket.socket, float] = {}
        self._active_lock = threading.Lock()
        self._render_lock = threading.Lock()
        self._cache: dict[str, tuple[float, bytes]] = {}
        super().__init__(address[:2] if family == socket.AF_INET else address, _Handler)
        self._thread = threading.Thread(target=self.serve_forever, name="metrics-http", daemon=True)
        self._thread.start()

    def render(self, accept: str) -> tuple[bytes, str]:
        """The registry in the format `accept` asks for, rendered at most once per interval."""
        from prometheus_client.exposition import choose_encoder

        encoder, content_type = choose_encoder(accept)
        with self._render_lock:
            now = time.monotonic()
            cached = self._cache.get(content_type)
            if cached is None or now - cached[0] >= self.min_render_interval_s:
                cached = (now, encoder(self.registry))
                self._cache[content_type] = cached
        return cached[1], content_type

    def _evict_oldest(self) -> bool:
        """Cut off the connection open longest, if it is slower than any scrape would be."""
        with self._active_lock:
            if not self._active:
                return False
            oldest, since = min(self._active.items(), key=lambda item: item[1])
            if time.monotonic() - since < EVICT_AFTER_S:
                return False
            self._active.pop(oldest)
        try:
            oldest.shutdown(socket.SHUT_RDWR)  # its handler's recv returns at once
        except OSError:
            pass
        return True

    def process_request(self, request: socket.socket, client_address: object) -> None:
        if not self._slots.acquire(blocking=False):
            if not (self._evict_oldest() and self._slots.acquire(timeout=0.2)):
                self.refused += 1  # every handler is busy with a fresh client: drop this one
                self.shutdown_request(request)
                return
        with self._active_lock:
            self._active[request] = time.monotonic()
        try:
            super().process_request(request, client_address)
        except BaseException:
            with self._active_lock:
                self._active.pop(request, None)
            self._slots.release()
            raise

    def process_request_thread(self, request: socket.socket, client_address: object) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._active_lock:
                self._active.pop(request, None)
            self._slots.release()

    def handle_error(self, request: object, client_address: object) -> None:
        log.debug("metrics request from %s failed", client_address, exc_info=True)

    def close(self) -> None:
        """Stop serving and free the port."""
        self.shutdown()
        self.server_close()

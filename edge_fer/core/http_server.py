"""One small, bounded HTTP server, shared by the daemon and the monitor: Prometheus' `/metrics`
(the daemon's and the monitor's) and the daemon's local web page are routes on it, with one set
of limits.

Python's own servers start a thread per connection and never time a client out: 300
half-sent requests held open grew the daemon from 7 to 307 threads, and a flood of scrapes
took a third of the frame rate. This one:

* serves at most `max_handlers` connections at once, so threads stay bounded; when all are
  busy, a new connection takes the place of the one open longest if that one has been open
  over `EVICT_AFTER_S` (every answer takes milliseconds: slow clients are pushed out by new
  ones, so a scraper or a viewer still gets through 300 half-open connections), else it is
  closed at once;
* gives each connection `timeout_s` in total to send its request head (at most
  `MAX_REQUEST_BYTES`) and take the answer, however slowly it trickles bytes;
* answers GET and HEAD only, one request per connection, from routes that map an exact
  path to a function: there is no file system behind it, so no directory listing and no
  path traversal.

`listen` makes one, or raises `ListenError` with a one-line message naming the flag or setting
(`edge_fer.outputs.listeners` shares one between the daemon's outputs on the same port).
"""

from __future__ import annotations

import logging
import socket
import socketserver
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote

log = logging.getLogger(__name__)

MAX_REQUEST_BYTES = 16 * 1024
REQUEST_TIMEOUT_S = 5.0
MAX_HANDLERS = 8
EVICT_AFTER_S = 0.5


@dataclass
class Request:
    """One parsed request head: method, the path (percent-decoded), query and headers (names
    in lower case)."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]

    def param(self, name: str) -> str | None:
        """The first value of a query parameter, or None."""
        values = self.query.get(name)
        return values[0] if values else None


@dataclass
class Response:
    """An answer: status line text (e.g. '200 OK'), body and headers."""

    status: str
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


Route = Callable[[Request], Response]


def parse_head(data: bytes) -> Request | None:
    """The request in a complete head (up to the blank line), or None when it is malformed."""
    head = data.split(b"\n\n", 1)[0].split(b"\r\n\r\n", 1)[0].decode("latin-1")
    request, *header_lines = head.replace("\r\n", "\n").split("\n")
    parts = request.split()
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        return None
    method, target = parts[0], parts[1]
    raw_path, _, raw_query = target.partition("?")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    try:
        query = parse_qs(raw_query, keep_blank_values=True, max_num_fields=32)
    except ValueError:
        query = {}  # too many fields: no route here reads that many, and /metrics reads none
    return Request(method, unquote(raw_path.split("#", 1)[0]), query, headers)


class _Handler(socketserver.BaseRequestHandler):
    server: BoundedHTTPServer

    def _send(self, sock: socket.socket, response: Response, head_only: bool) -> None:
        body = response.body
        lines = [f"HTTP/1.1 {response.status}", f"Content-Length: {len(body)}", "Connection: close"]
        lines += [f"{k}: {v}" for k, v in response.headers.items()]
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
                    self._send(sock, Response("431 Request Header Fields Too Large"), False)
                    return
            # The answer gets what is left of the deadline: a client that reads slowly is cut
            # off then (sendall raises), never kept waiting on by a handler thread.
            sock.settimeout(max(deadline - time.monotonic(), 0.1))
            request = parse_head(data)
            if request is None:
                bad = Response("400 Bad Request", b"bad request\n", {"Content-Type": "text/plain"})
                self._send(sock, bad, False)
                return
            if request.method not in ("GET", "HEAD"):
                self._send(sock, Response("405 Method Not Allowed", b"", {"Allow": "GET, HEAD"}), False)
                return
            response = self.server.answer(request)
            self._send(sock, response, request.method == "HEAD")
        except (OSError, ValueError):
            return  # the client went away or timed out; nothing to tell anyone


def not_found(request: Request) -> Response:
    """The default answer to a path no route names."""
    return Response("404 Not Found")


class BoundedHTTPServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    """GET/HEAD routes by exact path, with bounded handler threads and per-client deadlines.
    A path no route names goes to `fallback` (default: 404)."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(
        self,
        port: int,
        bind: str,
        max_handlers: int = MAX_HANDLERS,
        timeout_s: float = REQUEST_TIMEOUT_S,
        name: str = "http",
        routes: dict[str, Route] | None = None,
        fallback: Route | None = None,
    ) -> None:
        family, _, _, _, address = socket.getaddrinfo(
            bind, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        self.address_family = family
        self.bind = bind
        self.timeout_s = timeout_s
        self.refused = 0
        self.routes: dict[str, Route] = dict(routes or {})
        self.fallback: Route = fallback or not_found
        self._slots = threading.BoundedSemaphore(max_handlers)
        self._active: dict[socket.socket, float] = {}
        self._active_lock = threading.Lock()
        super().__init__(address[:2] if family == socket.AF_INET else address, _Handler)
        self._thread = threading.Thread(target=self.serve_forever, name=f"{name}-http", daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def answer(self, request: Request) -> Response:
        """The route's answer for this request; a route that fails answers 500 (logged)."""
        route = self.routes.get(request.path, self.fallback)
        try:
            return route(request)
        except Exception:  # noqa: BLE001 - one bad request must not stop the server
            log.warning("http: answering %s failed", request.path[:100], exc_info=True)
            return Response("500 Internal Server Error", b"internal error\n", {"Content-Type": "text/plain"})

    def _evict_oldest(self) -> bool:
        """Cut off the connection open longest, if it is slower than any answer would be."""
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
        log.debug("http request from %s failed", client_address, exc_info=True)

    def close(self) -> None:
        """Stop serving and free the port."""
        self.shutdown()
        self.server_close()


class ListenError(Exception):
    """A server that cannot listen: the message names what asked for it, the reason and the fix."""


def listen(port: int, bind: str, what: str) -> BoundedHTTPServer:
    """A bounded server on bind:port for `what` (a flag or setting name)."""
    return bound(lambda: BoundedHTTPServer(port, bind, name=what.strip("-")), port, bind, what)


def bound(make: Callable[[], BoundedHTTPServer], port: int, bind: str, what: str) -> BoundedHTTPServer:
    """`make()`, with the failures of listening on bind:port as one ListenError naming `what`."""
    try:
        return make()
    except (OSError, socket.gaierror, OverflowError, UnicodeError) as exc:
        raise ListenError(
            f"{what}: cannot listen on {bind}:{port} ({getattr(exc, 'strerror', None) or exc}); "
            "choose another port or bind address"
        ) from None

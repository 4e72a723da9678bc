"""The HTTP camera reader: MJPEG (multipart/x-mixed-replace) streams and JPEG snapshot URLs
read with bounded memory, instead of FFmpeg's demuxer, which keeps growing a part that never
ends (one endless JPEG part took a daemon past 1 GB).

* Every part is at most `max_part_bytes`: a larger one (by its Content-Length, or read
  without one) is skipped without being kept, and the next part is read.
* Header lines and boundaries are read with a length limit; junk between parts is skipped.
* A JPEG is decoded only when its header says it is within frames.max_decode_pixels
  (`frames.decode_jpeg`); the caller passes every frame through its FrameCheck.
* Basic and Digest authentication; the socket times out after the stream's read timeout.

Other HTTP streams (HLS, MPEG-TS, MP4) are left to FFmpeg: `open_http` returns None for them.
"""

from __future__ import annotations

import http.client
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

MAX_LINE = 65_536  # a header line, or a slice of a part read without Content-Length
MAX_HEADERS = 64
SNAPSHOT_INTERVAL_S = 0.1  # a snapshot URL is fetched at most 10 times a second


class HttpStreamError(Exception):
    """The HTTP camera cannot be read (refused, not found, unauthorised, timed out)."""


@dataclass
class Part:
    """One part of the stream: its bytes, or None with why it was dropped."""

    body: bytes | None
    dropped: str = ""


def _split_credentials(url: str) -> tuple[str, str | None, str | None]:
    """The URL without user info, and the user name and password it held (%-decoded)."""
    parts = urlsplit(url)
    if parts.username is None:
        return url, None, None
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port else "")
    bare = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    password = unquote(parts.password) if parts.password is not None else ""
    return bare, unquote(parts.username), password


def _opener(url: str, user: str | None, password: str | None) -> urllib.request.OpenerDirector:
    handlers: list[Any] = []
    if user is not None:
        manager = urllib.request.HTTPPasswordMgrWithDefaultRealm()
        manager.add_password(None, url, user, password or "")
        handlers += [
            urllib.request.HTTPBasicAuthHandler(manager),
            urllib.request.HTTPDigestAuthHandler(manager),
        ]
    if urlsplit(url).scheme.lower() == "https":
        # Cameras serve self-signed certificates; FFmpeg, which read these URLs before, does
        # not verify them either by default. (No CA store is loaded: it is not used.)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        handlers.append(urllib.request.HTTPSHandler(context=context))
    return urllib.request.build_opener(*handlers)


def _set_read_timeout(response: Any, seconds: float) -> None:
    sock = getattr(getattr(getattr(response, "fp", None), "raw", None), "_sock", None)
    if sock is not None:
        try:
            sock.settimeout(seconds)
        except OSError:
            pass


def _boundary(content_type: str) -> bytes | None:
    for param in content_type.split(";")[1:]:
        key, _, value = param.strip().partition("=")
        if key.strip().lower() == "boundary" and value.strip():
            token = value.strip().strip('"').lstrip("-")
            return token.encode("latin-1", "replace")[:200] or None
    return None


class HttpCamera:
    """An open MJPEG or snapshot HTTP camera; `parts()` yields its parts until it ends."""

    def __init__(
        self,
        url: str,
        max_part_bytes: int,
        open_timeout_s: float,
        read_timeout_s: float,
    ) -> None:
        self.url, self.user, self.password = _split_credentials(url)
        self.max_part_bytes = max_part_bytes
        self.open_timeout_s, self.read_timeout_s = open_timeout_s, read_timeout_s
        self._opener = _opener(self.url, self.user, self.password)
        self.response: Any = None
        self.kind = ""
        self.boundary: bytes | None = None
        self._closed = False

    def _get(self) -> Any:
        try:
            response = self._opener.open(self.url, timeout=self.open_timeout_s)
        except urllib.error.HTTPError as exc:
            exc.close()
            hint = " (check stream.username / stream.password_file)" if exc.code in (401, 403) else ""
            raise HttpStreamError(f"the camera answered HTTP {exc.code} {exc.reason}{hint}") from None
        except (OSError, http.client.HTTPException, ValueError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise HttpStreamError(f"cannot connect ({reason})") from None
        _set_read_timeout(response, self.read_timeout_s)
        return response

    def open(self) -> bool:
        """Connect; True when this reader takes the stream (MJPEG or a still image), False
        when it is something FFmpeg must read (the connection is then closed)."""
        response = self._get()
        content_type = response.headers.get("Content-Type", "") or ""
        main = content_type.split(";")[0].strip().lower()
        if main.startswith("multipart/"):
            self.kind, self.boundary = "multipart", _boundary(content_type)
        elif main.startswith("image/"):
            self.kind = "snapshot"
        else:
            try:  # no telling type: MJPEG and JPEG start with these bytes
                head = response.peek(2)[:2] if hasattr(response, "peek") else b""
            except (OSError, http.client.HTTPException):
                head = b""
            if head == b"--":
                self.kind = "multipart"
            elif head == b"\xff\xd8":
                self.kind = "snapshot"
            else:
                response.close()
                return False
        self.response = response
        return True

    def close(self) -> None:
        """Close the connection (from any thread: a read blocked in it returns)."""
        self._closed = True
        if self.response is not None:
            try:
                self.response.close()
            except Exception:  # noqa: BLE001 - closing a broken connection must not raise
                pass

    def parts(self) -> Iterator[Part]:
        """The stream's parts (or snapshots) until it ends; HttpStreamError when a read fails."""
        try:
            if self.kind == "snapshot":
                yield from self._snapshots()
            else:
                yield from self._multipart()
        except Exception as exc:  # noqa: BLE001 - whatever the connection does, one typed error
            if self._closed:  # closed by another thread: the end, not a failure
                return
            raise HttpStreamError(f"reading the stream failed ({exc or type(exc).__name__})") from None

    def _read_body(self, length: int | None) -> Part:
        """A body of `length` bytes, or up to EOF: kept when within max_part_bytes, skipped
        in slices otherwise."""
        limit = self.max_part_bytes
        if length is not None and length > limit:
            self._skip(length)
            return Part(None, f"a part of {length} bytes, over frames.max_part_bytes={limit}")
        data = self.response.read(limit + 1 if length is None else length)
        if len(data) > limit:
            while self.response.read(1 << 16):  # a snapshot that goes on: not kept
                pass
            return Part(None, f"a part over frames.max_part_bytes={limit}")
        return Part(data)

    def _skip(self, length: int) -> None:
        left = length
        while left > 0:
            chunk = self.response.read(min(left, 1 << 16))
            if not chunk:
                return
            left -= len(chunk)

    def _snapshots(self) -> Iterator[Part]:
        while not self._closed:
            started = time.monotonic()
            length = self.response.headers.get("Content-Length")
            size = int(length) if length and length.strip().isdigit() else None
            yield self._read_body(size)
            self.response.close()
            wait = SNAPSHOT_INTERVAL_S - (time.monotonic() - started)
            if wait > 0:
                time.sleep(wait)
            if self._closed:
                return
            self.response = self._get()

    def _is_delimiter(self, line: bytes) -> bool:
        stripped = line.strip()
        if not stripped.startswith(b"--"):
            return False
        if self.boundary is None:  # learn it from the first delimiter line
            token = stripped.lstrip(b"-").rstrip(b"-")
            if not token or len(token) > 200:
                return False
            self.boundary = token
            return True
        return stripped.lstrip(b"-").startswith(self.boundary)

    def _multipart(self) -> Iterator[Part]:
        readline = self.response.readline
        at_delimiter = False
        while not self._closed:
            if not at_delimiter:  # skip to the next delimiter (junk between parts is dropped)
                junk = 0
                while True:
                    line = readline(MAX_LINE)
                    if not line:
                        return
                    if self._is_delimiter(line):
                        break
                    junk += len(line)
                    if junk > self.max_part_bytes:
                        junk = 0
                        yield Part(None, f"more than {self.max_part_bytes} bytes of junk between parts")
            length: int | None = None
            for _ in range(MAX_HEADERS):
                line = readline(MAX_LINE)
                if not line:
                    return
                if not line.strip():
                    break
                name, _, value = line.decode("latin-1").partition(":")
                if name.strip().lower() == "content-length":
                    text = value.strip()
                    length = int(text) if text.isdigit() and len(text) < 19 else None
            else:
                yield Part(None, f"a part with more than {MAX_HEADERS} header lines")
                at_delimiter = False
                continue
            if length is not None:
                yield self._read_body(length)
                at_delimiter = False
                continue
            # No Content-Length: the body runs to the next delimiter line.
            chunks: list[bytes] = []
            size, over = 0, False
            while True:
                line = readline(MAX_LINE)
                if not line:
                    return
                if line.endswith(b"\n") and self._is_delimiter(line):
                    break
                size += len(line)
                if size > self.max_part_bytes:
                    over, chunks = True, []
                elif not over:
                    chunks.append(line)
            at_delimiter = True
            if over:
                yield Part(None, f"a part over frames.max_part_bytes={self.max_part_bytes}")
            else:
                yield Part(b"".join(chunks).removesuffix(b"\n").removesuffix(b"\r"))

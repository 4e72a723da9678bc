"""The local web page (`web:`, `--web`): the live overlay, the faces now tracked, the label mix
of the last minutes and the health figures, for a Pi with no screen (docs/web.md).

Privacy and cost by design:

* Frames leave the process only to this page, only while it is on, and are never stored:
  each picture is drawn and JPEG-encoded in memory for the viewer asking and replaced by
  the next.
* With no viewer the frame loop does nothing for the page but count and, every
  `HISTORY_BUCKET_S`, note the label counts (`frames_seen` goes up, `snapshots` and
  `encoded` stay 0). While someone watches, the frame loop leaves a reference to the newest
  frame and its HUD figures at most `web.fps` times a second (newest wins, never queued);
  the viewer's own request thread draws and encodes it, once for every viewer asking.
* Pages are served from memory by exact path (no file system behind them), with a strict
  Content-Security-Policy and no third-party anything. A token (`web.token_file`) is
  needed on every address but loopback: sent as `Authorization: Bearer TOKEN`, or typed
  once into the page's login form (`/login?token=...`), which sets an HttpOnly,
  SameSite=Strict cookie holding an HMAC of the token (never the token itself) and
  redirects away from the URL that held it. Tokens are compared in constant time.
* Without a token (loopback only) the Host header must name this machine's loopback, so a
  web site cannot read the page through DNS rebinding.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import logging
import threading
import time
from collections import Counter, deque
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from edge_fer.config import is_loopback
from edge_fer.core.http_server import BoundedHTTPServer, Request, Response, not_found
from edge_fer.core.safe_io import dumps_json
from edge_fer.core.secrets import SecretError, read_secret
from edge_fer.display.overlay import COLOURS, OTHER, Hud, render
from edge_fer.display.screen import hud_for
from edge_fer.emotions.labels import published_labels
from edge_fer.outputs.base import OutputError
from edge_fer.outputs.listeners import Listeners
from edge_fer.outputs.registration import register_output
from edge_fer.runtime.results import FaceResult, FrameResult

if TYPE_CHECKING:
    from collections.abc import Sequence

    from edge_fer.config import WebConfig
    from edge_fer.outputs.base import Output, OutputContext
    from edge_fer.runtime.stats import RunStats

log = logging.getLogger(__name__)

VIEWER_IDLE_S = 3.0  # a page that asked for nothing this long is gone: frames stop being kept
FIRST_FRAME_WAIT_S = 2.0  # a viewer's first request waits this long for the frame loop
STATE_INTERVAL_S = 0.5  # the faces and figures are refreshed at most this often
HISTORY_BUCKET_S = 10.0
HISTORY_BUCKETS = 30  # the label mix of the last 5 minutes
JPEG_QUALITY = 75
MIN_TOKEN_CHARS = 16
MIN_DISTINCT_CHARS = 6
SESSION_TAG = b"edge-fer web session v1"

CSP = (
    "default-src 'self'; img-src 'self' blob:; script-src 'self'; style-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
    "Cache-Control": "no-store",
}
# The page's files: path -> (asset file, content type). Nothing else is ever read.
ASSETS = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/app.css": ("app.css", "text/css; charset=utf-8"),
}
PUBLIC = ("/app.js", "/app.css")  # hold no data: the login page needs the style sheet


def _hex(bgr: tuple[int, int, int]) -> str:
    b, g, r = bgr
    return f"#{r:02x}{g:02x}{b:02x}"


def load_token(path: Path) -> str:
    """The access token in `path` (owner-only file, as camera and broker passwords); a
    one-line OutputError when it is unusable."""
    try:
        token = read_secret(path, "web.token_file", "token")
    except SecretError as exc:
        raise OutputError(f"web: {exc}") from None
    # At least MIN_TOKEN_CHARS printable ASCII characters, not one or two repeated: a token is
    # typed once per browser, so it can be long and random (there is no lock-out to lean on).
    simple = len(set(token)) < MIN_DISTINCT_CHARS
    if (
        len(token) < MIN_TOKEN_CHARS
        or simple
        or not (token.isascii() and token.isprintable())
        or " " in token
    ):
        raise OutputError(
            f"web: web.token_file {path} holds a token that is too short or too simple, or has spaces "
            f"or non-ASCII characters; write a random one of at least {MIN_TOKEN_CHARS} characters "
            f"(e.g. openssl rand -hex 16 > {path})"
        )
    return token


class TokenCheck:
    """Who may see the page: anyone (no token) or whoever shows the token, by header or by the
    session cookie the login form sets."""

    def __init__(self, token: str | None, port: int) -> None:
        self.token = token
        # Per port: two cameras' pages on one Pi keep their own cookie.
        self.cookie = f"edge_fer_session_{port}"
        self._digest = hashlib.sha256(token.encode()).digest() if token else b""
        self.session = hmac.new(token.encode(), SESSION_TAG, hashlib.sha256).hexdigest() if token else ""

    @property
    def required(self) -> bool:
        return self.token is not None

    def matches(self, given: str) -> bool:
        """Constant time: both sides hashed first, so not even the length leaks."""
        return bool(self.token) and hmac.compare_digest(
            hashlib.sha256(given.encode("utf-8", "replace")).digest(), self._digest
        )

    def allows(self, request: Request) -> bool:
        if not self.required:
            return True
        auth = request.headers.get("authorization", "")
        if auth[:7].lower() == "bearer " and self.matches(auth[7:].strip()):
            return True
        for part in request.headers.get("cookie", "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == self.cookie and hmac.compare_digest(value.encode(), self.session.encode()):
                return True
        return False

    def set_cookie(self) -> str:
        return f"{self.cookie}={self.session}; Path=/; HttpOnly; SameSite=Strict; Max-Age=2592000"

    def clear_cookie(self) -> str:
        return f"{self.cookie}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"


class LabelHistory:
    """The label mix of the last minutes: face-frames per published label in buckets of
    `bucket_s`, read from RunStats' running label counts once per bucket (O(1) a frame)."""

    def __init__(self, bucket_s: float = HISTORY_BUCKET_S, buckets: int = HISTORY_BUCKETS) -> None:
        self.bucket_s = bucket_s
        self.done: deque[dict[str, int]] = deque(maxlen=buckets)
        self._start: float | None = None
        self._base: Counter[str] = Counter()

    def tick(self, now: float, labels: Counter[str]) -> None:
        """Close the buckets that ended by `now` (called by the frame loop)."""
        if self._start is None:
            self._start, self._base = now, Counter(labels)
            return
        if now - self._start < self.bucket_s:
            return
        counts = Counter(labels)
        self.done.append({k: v for k, v in (counts - self._base).items() if v > 0})
        self._base = counts
        self._start += self.bucket_s
        gap = int((now - self._start) // self.bucket_s)  # no frame for a while: empty buckets
        if gap > 0:
            self.done.extend({} for _ in range(min(gap, self.done.maxlen or gap)))
            self._start += gap * self.bucket_s

    def snapshot(self, labels: Counter[str]) -> list[dict[str, int]]:
        """The closed buckets, oldest first, then the one still filling."""
        current = {k: v for k, v in (Counter(labels) - self._base).items() if v > 0}
        return [*self.done, current]


class WebPage:
    """Serves the page on the pipeline's server for `web.bind:web.port` (shared with /metrics
    when that asks for the same port) for as long as the output is open."""

    name = "web"

    def __init__(
        self,
        config: WebConfig,
        classes: tuple[str, ...],
        labels: tuple[str, ...],
        model_info: dict[str, str],
        source_name: str,
        top3: bool = True,
        listeners: Listeners | None = None,
        token: str | None = None,
    ) -> None:
        self.config, self.classes, self.labels, self.top3 = config, classes, labels, top3
        self.model_info, self.source_name = model_info, source_name
        self.assets = {path: (self._asset(name), kind) for path, (name, kind) in ASSETS.items()}
        self.login_page = self._asset("login.html").decode()
        self.auth = TokenCheck(token, config.port)
        # Counters (read by tests and the benchmark): frames the loop handed over, frames it
        # kept for a viewer, pictures encoded, requests refused for want of a token.
        self.frames_seen = self.snapshots = self.encoded = self.refused = 0
        self._last_view = -1e18
        self._changed = threading.Condition()
        self._job: tuple | None = None  # (seq, image, faces, hud): the newest frame to draw
        self._state: bytes | None = None
        self._jpeg: tuple[int, bytes] | None = None
        self._encode_lock = threading.Lock()
        self._next_frame = self._next_state = 0.0
        self._last_refusal_log = -1e18
        self.history = LabelHistory()
        self._closed = False
        self.listeners = listeners or Listeners()
        self.server: BoundedHTTPServer = self.listeners.acquire(config.port, config.bind, "web")
        self.routes = {
            **{path: self._asset_route for path in ASSETS},
            "/frame.jpg": self._frame_route,
            "/api/state": self._state_route,
            "/login": self._login_route,
            "/logout": self._logout_route,
        }
        self.server.routes.update(self.routes)
        self.server.fallback = self._not_found
        log.info(
            "web page on http://%s:%d/ (%s)",
            config.bind,
            self.server.port,
            "token required" if self.auth.required else "this machine only",
        )

    @staticmethod
    def _asset(name: str) -> bytes:
        return resources.files("edge_fer.outputs").joinpath("web_assets", name).read_bytes()

    # -- the frame loop's side: O(1) with no viewer -------------------------------------------

    def on_frame(self, result: FrameResult, stats: RunStats) -> None:
        self.frames_seen += 1
        now = time.monotonic()
        self.history.tick(now, stats.labels)
        if now - self._last_view > VIEWER_IDLE_S:
            if self._job is not None:  # the last viewer just left: keep no picture of theirs
                self._forget_pictures()
            return  # nobody watching: nothing is kept, drawn or encoded
        if now >= self._next_frame:
            self._next_frame = now + 1 / self.config.fps
            job = (result.seq, result.image, result.faces, hud_for(result, stats))
            with self._changed:
                self._job = job  # the newest wins; an older one not yet drawn is dropped
                self.snapshots += 1
                self._changed.notify_all()
        if now >= self._next_state:
            self._next_state = now + STATE_INTERVAL_S
            state = dumps_json(self._state_doc(result, stats)).encode()
            with self._changed:
                self._state = state
                self._changed.notify_all()

    def _forget_pictures(self) -> None:
        with self._changed:
            self._job = self._state = None
        with self._encode_lock:
            self._jpeg = None

    def _state_doc(self, result: FrameResult, stats: RunStats) -> dict:
        p = stats.latency.window_percentiles()
        info = self.model_info
        labels = [*self.labels, *(["uncertain"] if "uncertain" not in self.labels else [])]
        return {
            "frame": result.seq,
            "time": result.t,
            "faces": [
                {
                    "id": f.id,
                    "label": f.smoothed,
                    "score": round(f.smoothed_score, 4),
                    "box": list(f.box),
                }
                for f in result.faces
            ],
            "health": {
                "fps": round(stats.latency.fps(), 2),
                "detect_ms": round(p["detect"]["p50"], 2),
                "classify_ms": round(p["classify"]["p50"], 3),
                "capture_ms": round(p["capture"]["p50"], 2),
                "dropped_frames": stats.bad_frames,
                "reconnects": stats.reconnects,
                "frames": stats.frames,
                "uptime_s": round(time.monotonic() - stats.started_mono, 1),
                "model": str(info.get("name", "")),
                "model_file": Path(str(info.get("file", ""))).name,
                "runtime": str(info.get("runtime", "")),
                "source": stats.source or self.source_name,
            },
            "mix": {
                "bucket_s": self.history.bucket_s,
                "slots": (self.history.done.maxlen or 0) + 1,
                "labels": labels,
                "buckets": self.history.snapshot(stats.labels),
            },
            "colours": {label: _hex(COLOURS.get(label, OTHER)) for label in labels},
            "picture_fps": self.config.fps,
            "token": self.auth.required,
        }

    # -- the viewers' side: request threads ----------------------------------------------------

    def _viewer(self) -> None:
        """A viewer asked: keep frames coming (after an idle spell, only fresh ones)."""
        now = time.monotonic()
        if now - self._last_view > VIEWER_IDLE_S:
            with self._changed:
                self._job = self._state = None  # from before the pause: stale
        self._last_view = now

    def _wait_for(self, attr: str) -> object:
        self._viewer()
        with self._changed:
            self._changed.wait_for(lambda: getattr(self, attr) is not None, FIRST_FRAME_WAIT_S)
            return getattr(self, attr)

    def _respond(self, status: str, body: bytes, kind: str, **extra: str) -> Response:
        return Response(status, body, {"Content-Type": kind, **SECURITY_HEADERS, **extra})

    def _text(self, status: str, text: str, **extra: str) -> Response:
        return self._respond(status, text.encode(), "text/plain; charset=utf-8", **extra)

    def _login(self, status: str, message: str) -> Response:
        body = self.login_page.replace("{{message}}", html.escape(message)).encode()
        return self._respond(status, body, "text/html; charset=utf-8")

    def _refusal(self, request: Request) -> Response | None:
        """Why this request may not see the page, or None when it may."""
        if not self.auth.required:
            host = request.headers.get("host", "").lower()
            name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
            if name and not is_loopback(name):  # no Host at all: not a browser, so no rebinding
                return self._text(
                    "403 Forbidden", f"open this page as http://127.0.0.1:{self.server.port}/\n"
                )
            return None
        if self.auth.allows(request):
            return None
        self._note_refusal()
        if request.path == "/":
            return self._login("401 Unauthorized", "")
        return self._text(
            "401 Unauthorized", "token needed\n", **{"WWW-Authenticate": 'Bearer realm="edge-fer"'}
        )

    def _note_refusal(self) -> None:
        self.refused += 1
        now = time.monotonic()
        if now - self._last_refusal_log > 60:
            self._last_refusal_log = now
            log.warning("web: refused %d request(s) without a valid token so far", self.refused)

    def _asset_route(self, request: Request) -> Response:
        if request.path not in PUBLIC and (refusal := self._refusal(request)) is not None:
            return refusal
        body, kind = self.assets[request.path]
        return self._respond("200 OK", body, kind)

    def _frame_route(self, request: Request) -> Response:
        if (refusal := self._refusal(request)) is not None:
            return refusal
        job = self._wait_for("_job")
        if job is None:
            return self._text("503 Service Unavailable", "no frame yet\n", **{"Retry-After": "1"})
        seq, image, faces, hud = job  # type: ignore[misc]
        with self._encode_lock:  # viewers asking at once share one picture
            if self._jpeg is None or self._jpeg[0] != seq:
                picture = self.draw(seq, image, faces, hud)
                ok, encoded = cv2.imencode(".jpg", picture, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
                if not ok:
                    return self._text("500 Internal Server Error", "could not encode the picture\n")
                self._jpeg = (seq, encoded.tobytes())
                self.encoded += 1
            seq, body = self._jpeg
        return self._respond(
            "200 OK",
            body,
            "image/jpeg",
            **{"X-Frame-Seq": str(seq), "X-Frame-Interval-Ms": str(round(1000 / self.config.fps))},
        )

    def draw(self, seq: int, image: np.ndarray, faces: list[FaceResult], hud: Hud) -> np.ndarray:
        """The picture a viewer gets: the HDMI overlay's drawing at most `web.width` wide."""
        h, w = image.shape[:2]
        width = min(w, self.config.width)
        size = (width, max(1, round(h * width / w)))
        return render(image, faces, hud, self.classes, self.top3, size)

    def _state_route(self, request: Request) -> Response:
        if (refusal := self._refusal(request)) is not None:
            return refusal
        state = self._wait_for("_state")
        if state is None:
            return self._text("503 Service Unavailable", "no frame yet\n", **{"Retry-After": "1"})
        return self._respond("200 OK", state, "application/json")  # type: ignore[arg-type]

    def _login_route(self, request: Request) -> Response:
        if not self.auth.required:
            return self._respond("303 See Other", b"", "text/plain", Location="./")
        given = request.param("token")
        if given is None:
            return self._login("200 OK", "")
        if not self.auth.matches(given):
            self._note_refusal()
            return self._login("403 Forbidden", "That token is not right.")
        # Redirected at once, so the address that held the token is left behind.
        return self._respond(
            "303 See Other", b"", "text/plain", Location="./", **{"Set-Cookie": self.auth.set_cookie()}
        )

    def _logout_route(self, request: Request) -> Response:
        return self._respond(
            "303 See Other", b"", "text/plain", Location="./", **{"Set-Cookie": self.auth.clear_cookie()}
        )

    def _not_found(self, request: Request) -> Response:
        return self._text("404 Not Found", "not found\n")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for path, route in self.routes.items():
            if self.server.routes.get(path) == route:
                del self.server.routes[path]
        if self.server.fallback == self._not_found:
            self.server.fallback = not_found
        self.listeners.release(self.server)
        self._forget_pictures()


@register_output("web", section="web", order=90)
def web_output(ctx: OutputContext, earlier: Sequence[Output]) -> WebPage | None:
    """`web.enabled` turns the live page on (its token from `web.token_file`)."""
    w = ctx.config.web
    if not w.enabled:
        return None
    token = load_token(w.token_file) if w.token_file is not None else None
    labels = published_labels(ctx.config.smoothing.groups)
    return WebPage(
        w, ctx.classes, labels, ctx.model_info, ctx.source_name, ctx.config.display.top3, ctx.listeners, token
    )

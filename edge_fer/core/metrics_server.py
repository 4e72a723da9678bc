"""Prometheus' `/metrics` (the daemon's and the monitor's) as a route on the bounded HTTP
server (`edge_fer.core.http_server`: capped handler threads, a deadline per client).

The registry is rendered at most once per `min_render_interval_s` and that copy is served to
everyone asking meanwhile, so a flood of scrapes costs the frame loop little. On a server of
its own every path but /favicon.ico answers with the metrics (as prometheus_client's server
does); on a server shared with the web page only /metrics does.
"""

from __future__ import annotations

import gzip
import threading
import time
from typing import TYPE_CHECKING

from edge_fer.core.http_server import (
    MAX_HANDLERS,
    REQUEST_TIMEOUT_S,
    BoundedHTTPServer,
    Request,
    Response,
    bound,
    not_found,
)

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

MIN_RENDER_INTERVAL_S = 0.5


class MetricsRoute:
    """Answers a scrape with the registry in the format asked for (Accept), gzipped when the
    client takes it; renders are shared within `min_render_interval_s`."""

    def __init__(
        self, registry: CollectorRegistry, min_render_interval_s: float = MIN_RENDER_INTERVAL_S
    ) -> None:
        self.registry = registry
        self.min_render_interval_s = min_render_interval_s
        self._render_lock = threading.Lock()
        self._cache: dict[str, tuple[float, bytes]] = {}

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

    def __call__(self, request: Request) -> Response:
        if request.path == "/favicon.ico":
            return Response("404 Not Found")
        body, content_type = self.render(request.headers.get("accept", ""))
        headers = {"Content-Type": content_type}
        if "gzip" in request.headers.get("accept-encoding", ""):
            body = gzip.compress(body, compresslevel=1)
            headers["Content-Encoding"] = "gzip"
        return Response("200 OK", body, headers)


def add_metrics(server: BoundedHTTPServer, registry: CollectorRegistry) -> MetricsRoute:
    """Serve `registry` on /metrics of `server` (and on every other path nobody else claims)."""
    route = MetricsRoute(registry)
    server.routes["/metrics"] = route
    if server.fallback is not_found:  # the web page, when it shares, answers the rest
        server.fallback = route
    return route


class MetricsHTTPServer(BoundedHTTPServer):
    """`/metrics` for one registry on a server of its own."""

    def __init__(
        self,
        registry: CollectorRegistry,
        port: int,
        bind: str,
        max_handlers: int = MAX_HANDLERS,
        timeout_s: float = REQUEST_TIMEOUT_S,
        min_render_interval_s: float = MIN_RENDER_INTERVAL_S,
    ) -> None:
        self.registry = registry
        self.metrics = MetricsRoute(registry, min_render_interval_s)
        routes = {"/metrics": self.metrics}
        super().__init__(port, bind, max_handlers, timeout_s, "metrics", routes, self.metrics)

    def render(self, accept: str) -> tuple[bytes, str]:
        return self.metrics.render(accept)


def serve_registry(registry: CollectorRegistry, port: int, bind: str, what: str) -> MetricsHTTPServer:
    """Serve `registry` on /metrics from a server of its own; `ListenError` (one line, naming
    `what`) when it cannot listen."""
    return bound(lambda: MetricsHTTPServer(registry, port, bind), port, bind, what)

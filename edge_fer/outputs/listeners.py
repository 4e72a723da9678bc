"""The daemon's outputs' HTTP servers: outputs that want the same address and port share one
bounded server (`edge_fer.core.http_server`); `metrics.port` and `web.port` set alike: one
listener serves both."""

from __future__ import annotations

from edge_fer.core.http_server import BoundedHTTPServer, ListenError, listen


class Listeners:
    """The servers of one pipeline's outputs, one per (bind, port): outputs that ask for the
    same address share a server, each adding its own routes; the last to let go closes it."""

    def __init__(self) -> None:
        self._servers: dict[int, tuple[BoundedHTTPServer, int]] = {}

    def acquire(self, port: int, bind: str, what: str) -> BoundedHTTPServer:
        """The server on `port` (made on first use). Two outputs on one port must bind alike;
        OutputError (one line) when they do not or it cannot listen."""
        from edge_fer.outputs.base import OutputError  # base names Listeners: imported here

        held = self._servers.get(port) if port else None  # port 0: a new ephemeral port each time
        if held is not None:
            server, users = held
            if server.bind != bind:
                raise OutputError(
                    f"{what}: port {port} is already served on {server.bind}, not {bind}; give both "
                    "the same bind address or use different ports"
                )
            self._servers[port] = (server, users + 1)
            return server
        try:
            server = listen(port, bind, what)
        except ListenError as exc:
            raise OutputError(str(exc)) from None
        self._servers[server.port] = (server, 1)
        return server

    def release(self, server: BoundedHTTPServer) -> None:
        """One user is done with `server`; the last one closes it."""
        for port, (held, users) in list(self._servers.items()):
            if held is server:
                if users > 1:
                    self._servers[port] = (held, users - 1)
                    return
                del self._servers[port]
        server.close()

"""systemd integration: sd_notify readiness/status/watchdog, journald logging, signals.

Uses systemd-python (`systemd.daemon.notify`, `systemd.journal`) when installed; the notify
protocol is one datagram to $NOTIFY_SOCKET, so without the library the same message is sent
with a plain socket (for pip-only setups and machines without libsystemd).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
import time
from types import FrameType

log = logging.getLogger(__name__)


def _send_datagram(message: str) -> bool:
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # abstract namespace socket
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        try:
            sock.sendto(message.encode(), address)
        except OSError as exc:
            log.debug("sd_notify to %s failed: %s", address, exc)
            return False
    return True


class Notifier:
    """Sends READY/STATUS/WATCHDOG/STOPPING/RELOADING to systemd when run under it."""

    def __init__(self, use_library: bool = True) -> None:
        self.enabled = bool(os.environ.get("NOTIFY_SOCKET"))
        self._notify = _send_datagram
        if use_library:
            try:
                from systemd import daemon

                self._notify = lambda msg: bool(daemon.notify(msg))
            except ImportError:
                pass
        self.watchdog_interval_s = self._watchdog_interval()
        self._last_ping = 0.0

    @staticmethod
    def _watchdog_interval() -> float | None:
        usec = os.environ.get("WATCHDOG_USEC")
        pid = os.environ.get("WATCHDOG_PID")
        if not usec or (pid and pid.isdigit() and int(pid) != os.getpid()):
            return None
        try:
            return int(usec) / 1e6 / 2  # ping at twice the rate systemd checks
        except ValueError:
            return None

    def send(self, message: str) -> bool:
        return self.enabled and self._notify(message)

    def ready(self, status: str) -> None:
        self.send(f"READY=1\nSTATUS={status}\nMAINPID={os.getpid()}")

    def status(self, text: str) -> None:
        self.send(f"STATUS={text}")

    def reloading(self) -> None:
        monotonic_usec = int(time.clock_gettime(time.CLOCK_MONOTONIC) * 1e6)
        self.send(f"RELOADING=1\nMONOTONIC_USEC={monotonic_usec}")

    def stopping(self) -> None:
        self.send("STOPPING=1")

    def frame_done(self, now: float) -> None:
        """Call after each good frame: pings the watchdog, so pings stop when frames stop."""
        if self.watchdog_interval_s is not None and now - self._last_ping >= self.watchdog_interval_s:
            self.send("WATCHDOG=1")
            self._last_ping = now


def under_systemd() -> bool:
    return "INVOCATION_ID" in os.environ or "JOURNAL_STREAM" in os.environ


def setup_logging(level: str) -> None:
    """journald when started by systemd (structured, with priorities), plain stderr otherwise."""
    root = logging.getLogger()
    root.handlers.clear()
    root.setLevel(level)
    handler: logging.Handler | None = None
    if under_systemd():
        try:
            from systemd.journal import JournalHandler

            handler = JournalHandler(SYSLOG_IDENTIFIER="edge-fer")
        except ImportError:
            handler = None
    if handler is None:
        handler = logging.StreamHandler(sys.stderr)
        fmt = (
            "%(levelname)s %(name)s: %(message)s"
            if under_systemd()
            else "%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
        handler.setFormatter(logging.Formatter(fmt))
    root.addHandler(handler)


class SignalState:
    """SIGTERM/SIGINT request a stop, SIGHUP a config reload; the main loop polls these."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.reload = threading.Event()

    def install(self) -> None:
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_reload)

    def _on_stop(self, signum: int, _frame: FrameType | None) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        self.stop.set()

    def _on_reload(self, _signum: int, _frame: FrameType | None) -> None:
        log.info("received SIGHUP, reloading config")
        self.reload.set()

    def interrupted(self) -> bool:
        return self.stop.is_set() or self.reload.is_set()

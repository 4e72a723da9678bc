"""systemd integration: sd_notify readiness/status/watchdog, signals (logging, journald
included, is `edge_fer.core.logs`).

Uses systemd-python (`systemd.daemon.notify`, `systemd.journal`) when installed; the notify
protocol is one datagram to $NOTIFY_SOCKET, so without the library the same message is sent
with a plain socket (for pip-only setups and machines without libsystemd).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from types import FrameType

# under_systemd lives in core.logs; outputs/registry.py still imports it from here.
from edge_fer.core.logs import under_systemd  # noqa: F401

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
        """Send one notification; a socket that is missing or refuses is logged once and
        notifications are then off (the daemon itself carries on)."""
        if not self.enabled:
            return False
        try:
            return bool(self._notify(message))
        except (OSError, ValueError) as exc:
            log.warning(
                "cannot notify systemd through NOTIFY_SOCKET=%r (%s); notifications are off",
                os.environ.get("NOTIFY_SOCKET", "")[:200],
                exc,
            )
            self.enabled = False
            return False

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


class SignalState:
    """SIGTERM/SIGINT request a stop, SIGHUP a config reload, SIGUSR1/SIGUSR2 log a status
    line (`describe`); the main loop polls the events. SIGPIPE is ignored: a reader that goes
    away is an OSError where the write happens, not the daemon's death."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.reload = threading.Event()
        self.describe: Callable[[], str] = lambda: "starting"
        # Signals can arrive before logging is set up (the handlers go in first); their lines
        # wait here until `logging_ready`, instead of going to a root logger that drops INFO.
        self._early: list[str] | None = []

    def install(self) -> None:
        """Install every handler; call first thing, before anything slow."""
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_reload)
        signal.signal(signal.SIGUSR1, self._on_status)
        signal.signal(signal.SIGUSR2, self._on_status)
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)

    def _on_status(self, signum: int, _frame: FrameType | None) -> None:
        try:
            text = self.describe()
        except Exception as exc:  # noqa: BLE001 - a status line must never kill the daemon
            text = f"status unavailable ({exc})"
        self._log(f"received {signal.Signals(signum).name}: {text}")

    def _on_stop(self, signum: int, _frame: FrameType | None) -> None:
        self._log(f"received {signal.Signals(signum).name}, stopping")
        self.stop.set()

    def _on_reload(self, _signum: int, _frame: FrameType | None) -> None:
        self._log("received SIGHUP, reloading config")
        self.reload.set()

    def _log(self, line: str) -> None:
        if self._early is not None:
            self._early.append(line)
        else:
            log.info("%s", line)

    def logging_ready(self) -> None:
        """Logging is set up: log the lines of signals that came before, then log directly."""
        early = self._early
        self._early = None  # a signal handled between these lines appended to `early`
        for line in early or []:
            log.info("%s", line)

    def interrupted(self) -> bool:
        return self.stop.is_set() or self.reload.is_set()

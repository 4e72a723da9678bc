"""Reconnecting: a source that drops out is closed and reopened with exponential back-off,
so a loose cable or a rebooting IP camera is never fatal."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from edge_fer.sources.base import CaptureError, EndOfStream, FrameSource, RawFrame

if TYPE_CHECKING:
    from edge_fer.sources.picamera import Picamera2Source

log = logging.getLogger(__name__)


class ReconnectingSource:
    """Wraps a source: after `max_failures` failed grabs or an error it closes and reopens the
    source, waiting 0.5 s, 1 s, 2 s ... up to `max_backoff_s` between attempts. `should_stop`
    ends the waiting at once (SIGTERM during a reconnect); `wait(seconds)` is the sleep."""

    def __init__(
        self,
        source: FrameSource,
        max_backoff_s: float = 10.0,
        max_failures: int = 10,
        wait: Callable[[float], object] = time.sleep,
        should_stop: Callable[[], bool] = lambda: False,
        on_reconnect: Callable[[], None] = lambda: None,
    ) -> None:
        self.source = source
        self.name = source.name
        self.max_backoff_s, self.max_failures = max_backoff_s, max_failures
        self._wait, self._should_stop, self._on_reconnect = wait, should_stop, on_reconnect
        self.failures = 0
        self.reconnects = 0
        if hasattr(source, "interrupted"):  # a network stream
            source.interrupted = should_stop  # a stop request cuts a stream's waits short

    def open(self) -> None:
        self.source.open()

    def preview_host(self) -> Picamera2Source | None:
        return self.source.preview_host()

    @property
    def paced_wait_s(self) -> float:
        """The wrapped source's pacing sleep in the last read (a file played at its own
        frame rate), which the frame loop does not count as capture time."""
        return getattr(self.source, "paced_wait_s", 0.0)

    def _reopen(self) -> None:
        delay = 0.5
        logged = False
        started = time.monotonic()
        while not self._should_stop():
            self.source.close()
            if not logged:  # once per outage, not once per attempt
                log.warning(
                    "source %s dropped out; reopening with back-off up to %.1f s",
                    self.name,
                    self.max_backoff_s,
                )
                logged = True
            self._wait(delay)
            if self._should_stop():
                return
            try:
                self.source.open()
            except CaptureError as exc:
                log.debug("reopen failed (next try in %.1f s): %s", min(delay * 2, self.max_backoff_s), exc)
                delay = min(delay * 2, self.max_backoff_s)
                continue
            self.reconnects += 1
            self.failures = 0
            self._on_reconnect()
            log.info("source %s reopened after %.1f s", self.name, time.monotonic() - started)
            return

    def read(self) -> RawFrame | None:
        try:
            frame = self.source.read()
        except EndOfStream:
            raise
        except Exception as exc:  # a driver error mid-stream: reconnect, never crash
            log.warning("source %s failed: %s", self.name, exc)
            frame = None
            self.failures = self.max_failures
        if frame is None:
            self.failures += 1
            if self.failures >= self.max_failures:
                self._reopen()
            return None
        self.failures = 0
        return frame

    def close(self) -> None:
        self.source.close()

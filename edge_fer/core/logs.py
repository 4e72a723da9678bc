"""Logging and the standard streams, the same for every edge-fer program (the daemon, the
monitor, edge-fer-classify): journald when started by systemd, plain stderr otherwise."""

from __future__ import annotations

import logging
import os
import sys


def ensure_std_streams() -> None:
    """Give a process started with stdin, stdout or stderr closed (`>&-`, as some supervisors
    do) /dev/null in their place: `print`, `isatty` and logging then work, and no file opened
    later can land on fd 1 or 2 and receive stray output."""
    for fd, name in ((0, "stdin"), (1, "stdout"), (2, "stderr")):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
        stream = getattr(sys, name)
        try:
            ok = stream is not None and stream.fileno() == fd
        except (AttributeError, OSError, ValueError):
            ok = False
        if not ok:
            mode = "r" if fd == 0 else "w"
            setattr(sys, name, open(fd, mode, buffering=1, closefd=False, errors="backslashreplace"))  # noqa: SIM115


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

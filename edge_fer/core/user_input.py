"""The one boundary for every path and URL a user gives: config values, command-line flags,
tool arguments, source specs and what a reload re-reads.

OpenCV, FFmpeg and the ExecuTorch runner take C strings: a value they cannot take (a byte
that is not UTF-8, which Python carries as a lone surrogate and OpenCV's bindings crash on;
a NUL; a control character; a value past the OS's limits; a FIFO or device where a regular
file is read) is refused here with one line naming the value, printed escaped, before any
of them sees it.

* `user_path`: a usable path (`~` expanded, UTF-8, no control characters, within PATH_MAX).
* `user_file`: `user_path` naming an existing regular file (optionally at most N bytes).
* `user_url`: a stream URL (scheme, host, port, UTF-8, no whitespace, at most 4 KiB).
* `path_arg` / `file_arg`: the same as argparse types, for every tool's flags.
* `FlagParser`: the argparse parser every program and tool uses: a bad flag is one line.

Refusals raise `InputRefused` (a `safe_io.PathRefused`), whose message is the whole line.
"""

from __future__ import annotations

import argparse
import os
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import NoReturn
from urllib.parse import urlsplit

from edge_fer.core.paths import expand_user
from edge_fer.core.safe_io import PathRefused, check_length, check_text, kind_of

MAX_URL_BYTES = 4096  # far past any camera URL; FFmpeg's own buffers for it are fixed
SHOWN_CHARS = 80
STREAM_SCHEMES = ("rtsp", "rtsps", "http", "https")


class FlagParser(argparse.ArgumentParser):
    """argparse, with a bad command line said in one line (`prog: error: ... (see prog
    --help)`, exit 2) instead of the usage block and then the error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class InputRefused(PathRefused):
    """A path or URL a user gave that cannot be used; the message is the whole line."""


def shown(value: object) -> str:
    """`value` as it may be printed: quoted, every byte that is not UTF-8 as \\xNN, control
    characters escaped, cut to SHOWN_CHARS."""
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if isinstance(value, bytes):
        text = value.decode("utf-8", "backslashreplace")
    elif isinstance(value, str):
        # A lone surrogate U+DC80-U+DCFF stands for an undecodable byte: shown as \xNN.
        text = "".join(
            f"\\x{ord(c) - 0xDC00:02x}"
            if 0xDC80 <= ord(c) <= 0xDCFF
            else c.encode("unicode_escape").decode()
            if 0xD800 <= ord(c) <= 0xDFFF
            else c
            for c in value
        )
    else:
        text = str(value)
    text = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)
    cut = text[:SHOWN_CHARS] + ("..." if len(text) > SHOWN_CHARS else "")
    return f"'{cut}'"


def _refuse(what: str, value: object, why: str, noun: str = "path") -> InputRefused:
    return InputRefused(f"{what} {shown(value)} is not a usable {noun}: {why}")


def user_path(value: str | bytes | os.PathLike, what: str) -> Path:
    """`value` as a Path the libraries below can take (`~` expanded), else InputRefused.
    `what` names where it came from (e.g. "--yunet-model" or "config key 'model.path':")."""
    if value is None or (isinstance(value, str | bytes) and len(value) == 0):
        raise _refuse(what, value, "it is empty")
    try:
        raw = os.fspath(value)
        check_text(raw)
        path = expand_user(os.fsdecode(raw))
        check_length(path)
    except (ValueError, TypeError, OSError) as exc:
        raise _refuse(what, value, str(exc)) from None
    return path


def user_file(value: str | bytes | os.PathLike, what: str, max_bytes: int | None = None) -> Path:
    """`user_path` of an existing regular file (a link to one is fine) of at most `max_bytes`:
    a directory, FIFO, socket or device is refused without being opened."""
    path = user_path(value, what)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise _refuse(what, value, "it does not exist") from None
    except OSError as exc:
        raise _refuse(what, value, f"it cannot be read ({exc.strerror or exc})") from None
    if not stat.S_ISREG(st.st_mode):
        raise _refuse(what, value, f"it is {kind_of(st.st_mode)}, not a regular file")
    if max_bytes is not None and st.st_size > max_bytes:
        raise _refuse(what, value, f"it is {st.st_size} bytes; the limit is {max_bytes}")
    return path


def user_url(value: str, what: str, schemes: Iterable[str] = STREAM_SCHEMES) -> str:
    """A stream URL the FFmpeg backend and this package's HTTP reader can take: a known
    scheme, a host, a valid port, UTF-8 without whitespace or control characters, at most
    MAX_URL_BYTES. Passwords are not this function's business (config refuses them)."""
    allowed = tuple(schemes)
    if not isinstance(value, str) or not value:
        raise _refuse(what, value, "it is empty", "URL")
    try:
        data = check_text(value)
    except PathRefused as exc:
        raise _refuse(what, value, str(exc).replace("the path", "the URL"), "URL") from None
    if len(data) > MAX_URL_BYTES:
        raise _refuse(what, value, f"it is {len(data)} bytes long; the limit is {MAX_URL_BYTES}", "URL")
    if any(c.isspace() for c in value):
        raise _refuse(what, value, "it contains a space (write it as %20)", "URL")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise _refuse(what, value, str(exc), "URL") from None
    if parts.scheme.lower() not in allowed:
        raise _refuse(what, value, f"the scheme must be one of {', '.join(allowed)}", "URL")
    if not parts.hostname:
        raise _refuse(what, value, "it names no host", "URL")
    return value


def path_arg(value: str) -> Path:
    """An argparse `type=` for a path flag: a refusal becomes argparse's one-line error
    naming the flag (exit 2)."""
    try:
        return user_path(value, "")
    except InputRefused as exc:
        raise argparse.ArgumentTypeError(str(exc).lstrip()) from None


def file_arg(value: str) -> Path:
    """An argparse `type=` for a flag naming an existing regular file to read."""
    try:
        return user_file(value, "")
    except InputRefused as exc:
        raise argparse.ArgumentTypeError(str(exc).lstrip()) from None

"""The one way the daemon and the monitor read and write files.

* `read_bounded`: a regular file only (a FIFO never blocks, `/dev/zero` is never read), at
  most `limit` bytes.
* `write_atomic` / `write_json_atomic`: a random temp name made with O_EXCL|O_NOFOLLOW in the
  target's folder (`mkstemp`), write, fsync, chmod, rename over the target; a target that is a
  directory, FIFO, socket or device node is refused, never replaced.
* `open_stream`: a file appended to or rewritten line by line (events, the monitor's CSV): a
  regular file, or a character device like /dev/null; never a FIFO, socket, block device or
  directory, and the open never blocks.
* `check_writable`: an output path checked before the work that produces it (a regular file
  or absent, in a folder that exists or can be made, and takes a new file).
* `PathLock`: `flock` on a lock file beside a path, so a second daemon with the same stats
  path refuses to start instead of overwriting the first one's figures.
* `dumps_json`: JSON that is always valid (NaN and infinity become null).

Refusals raise `PathRefused` (a ValueError with a message fragment naming the problem);
I/O failures raise OSError. Callers turn both into their own typed error.
"""

from __future__ import annotations

import errno
import fcntl
import json
import math
import os
import stat
import tempfile
import unicodedata
from pathlib import Path
from typing import Any

MAX_PATH = 4095  # PATH_MAX - 1 on Linux
MAX_NAME = 255  # NAME_MAX


class PathRefused(ValueError):
    """A path that must not be used as asked (wrong kind of file, too long, too big)."""


class LockHeld(PathRefused):
    """Another process holds the lock on this path."""


def kind_of(mode: int) -> str:
    """'a directory', 'a FIFO', ... for a stat mode."""
    for test, name in (
        (stat.S_ISREG, "a regular file"),
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISLNK, "a symbolic link"),
    ):
        if test(mode):
            return name
    return "a special file"


def check_text(value: str | bytes | os.PathLike) -> bytes:
    """The UTF-8 bytes of a path or URL the libraries below can take, or PathRefused: no
    byte that is not UTF-8 (Python carries one as a lone surrogate, which OpenCV's C++
    bindings cannot convert: it crashes the process), no NUL, no control character."""
    raw = os.fspath(value)
    try:
        text = raw if isinstance(raw, bytes) else raw.encode("utf-8")
        decoded = text.decode("utf-8")
    except UnicodeError as exc:
        if isinstance(raw, bytes):
            what = f"the byte \\x{raw[exc.start]:02x}"
        else:  # a lone surrogate: U+DC80-U+DCFF stands for an undecodable byte
            code = ord(raw[exc.start])
            what = f"the byte \\x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"U+{code:04X}"
        raise PathRefused(f"it holds {what}, which is not UTF-8 (rename it in UTF-8)") from None
    if "\0" in decoded:
        raise PathRefused("the path contains a NUL byte")
    # Legal, but never meant, and they break log lines (C1 controls also steer terminals).
    if any(unicodedata.category(c) == "Cc" for c in decoded):
        raise PathRefused("the path contains a control character (a newline or tab?)")
    return text


def check_length(path: str | os.PathLike) -> None:
    """Refuse paths longer than Linux allows (whole path and each name), paths that are not
    UTF-8, and paths with NUL or other control characters."""
    text = check_text(path)
    if len(text) > MAX_PATH:
        raise PathRefused(f"the path is {len(text)} bytes long; the limit is {MAX_PATH}")
    for part in text.split(b"/"):
        if len(part) > MAX_NAME:
            shown = part[:24].decode(errors="replace")
            raise PathRefused(f"the name '{shown}...' is {len(part)} bytes long; the limit is {MAX_NAME}")


def cut_name(name: str, limit: int) -> str:
    """`name` cut (by whole characters) to at most `limit` bytes, for names built from it."""
    while len(os.fsencode(name)) > limit:
        name = name[:-1]
    return name


def _lstat(path: Path) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:  # e.g. a file where a folder should be
        raise PathRefused(f"{path} cannot be used ({exc.strerror or exc})") from None


def check_replaceable(path: Path) -> None:
    """Refuse a rename target that exists and is not a regular file (or a link to one)."""
    check_length(path)
    st = _lstat(path)
    if st is not None and not (stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)):
        raise PathRefused(f"{path} is {kind_of(st.st_mode)}, not a regular file")
    if st is not None and stat.S_ISLNK(st.st_mode):
        try:
            target = os.stat(path)
        except OSError:
            return  # a dangling link: the rename replaces the link itself
        if stat.S_ISDIR(target.st_mode):
            raise PathRefused(f"{path} is a link to a directory, not a regular file")


def check_writable(path: Path) -> None:
    """Refuse an output path before anything is computed for it: no file name, not a regular
    file, or a folder that cannot be made or cannot take a new file (probed with a temp file,
    which also catches read-only and pseudo file systems). Makes the folder if it is missing."""
    path = Path(path)
    if not path.name or path.name in (".", ".."):
        raise PathRefused(f"{str(path)!r} names no file")
    check_replaceable(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".probe.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise PathRefused(f"{path} cannot be written ({exc.strerror or exc})") from None


def read_bounded(path: Path, limit: int) -> bytes:
    """The bytes of a regular file of at most `limit` bytes (PathRefused otherwise)."""
    path = Path(path)
    check_length(path)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise PathRefused(f"{path} is {kind_of(st.st_mode)}, not a regular file")
        if st.st_size > limit:
            raise PathRefused(f"{path} is {st.st_size} bytes; the limit is {limit}")
        chunks, size = [], 0
        while size <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > limit:
            raise PathRefused(f"{path} is more than {limit} bytes")
        return b"".join(chunks)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, mode: int = 0o640) -> tuple[int, int]:
    """Replace `path` with `data` so a reader sees the old file or the new one, never half;
    the temp file is unpredictable and created exclusively (a planted symlink is never
    followed), the target must be a regular file or absent. Returns the new file's
    (st_dev, st_ino), so a caller can later tell whether the path is still its file."""
    path = Path(path)
    check_replaceable(path)
    prefix = f".{cut_name(path.name, 200)}."
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=path.parent)
    try:
        try:
            os.fchmod(fd, mode)  # whatever the umask
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
            st = os.fstat(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        return st.st_dev, st.st_ino
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return _finite(value.item())
    return value


def dumps_json(data: Any, **kwargs: Any) -> str:
    """json.dumps that never writes NaN or Infinity (they become null): always valid JSON."""
    try:
        return json.dumps(data, allow_nan=False, **kwargs)
    except (ValueError, TypeError):
        return json.dumps(_finite(data), allow_nan=False, **kwargs)


def write_json_atomic(path: Path, data: Any, mode: int = 0o640) -> tuple[int, int]:
    """`write_atomic` of `data` as valid JSON."""
    return write_atomic(path, dumps_json(data).encode(), mode)


def open_stream(path: Path, *, append: bool = True, mode: int = 0o640) -> int:
    """A write fd for a log-like output: a regular file (created if absent) or a character
    device (/dev/null, /dev/full); anything else is refused without blocking."""
    path = Path(path)
    check_length(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        st = None
    allowed = (stat.S_ISREG, stat.S_ISCHR)
    if st is not None and not any(ok(st.st_mode) for ok in allowed):
        raise PathRefused(f"{path} is {kind_of(st.st_mode)}, not a regular file")
    flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK
    flags |= os.O_APPEND if append else os.O_TRUNC
    try:
        fd = os.open(path, flags, mode)
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # a FIFO that appeared meanwhile, with no reader
            raise PathRefused(f"{path} is a FIFO, not a regular file") from None
        raise
    try:
        st = os.fstat(fd)
        if not any(ok(st.st_mode) for ok in allowed):
            raise PathRefused(f"{path} is {kind_of(st.st_mode)}, not a regular file")
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    except BaseException:
        os.close(fd)
        raise
    return fd


class PathLock:
    """An exclusive `flock` on `.<name>.lock` beside `path`, held until `release`.

    `acquire` raises LockHeld (naming the holder's pid) when another process has it, and
    OSError when the lock file cannot be made at all."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.lock_path = self.path.with_name(f".{cut_name(self.path.name, 240)}.lock")
        self.fd: int | None = None

    def _holder(self) -> str:
        try:
            pid = read_bounded(self.lock_path, 64).decode(errors="replace").strip()
        except (OSError, PathRefused):
            pid = ""
        return f"pid {pid}" if pid.isdigit() else "another process"

    def acquire(self) -> None:
        if self.fd is not None:
            return
        check_length(self.lock_path)
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(10):  # the holder may unlink the file between our open and flock
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o640)
            try:
                if not stat.S_ISREG(os.fstat(fd).st_mode):
                    raise PathRefused(f"lock file {self.lock_path} is not a regular file")
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    raise LockHeld(f"{self.path} is in use by {self._holder()}") from None
                try:
                    same = os.stat(self.lock_path).st_ino == os.fstat(fd).st_ino
                except FileNotFoundError:
                    same = False
                if not same:
                    os.close(fd)
                    continue
                held = os.pread(fd, 64, 0).strip()
                if held and not held.isdigit():  # someone else's file: never truncated, never removed
                    raise PathRefused(f"{self.lock_path} exists and is not a lock file (it holds other data)")
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
            except BaseException:
                os.close(fd)
                raise
            self.fd = fd
            return
        raise LockHeld(f"{self.path} is in use by another process (its lock keeps changing)")

    def release(self) -> None:
        """Remove the lock file and drop the lock (while still holding it, so no one else
        can be handed a file that is about to go)."""
        if self.fd is None:
            return
        try:
            self.lock_path.unlink(missing_ok=True)
        except OSError:
            pass
        os.close(self.fd)
        self.fd = None


# --- Files named twice, regular-file reads, and stdout (the classifier and output paths) ------
#
# * `file_id` / `same_file` / `check_distinct`: two names for one file are found whatever
#   spells them (relative or absolute, a symlink, a hard link): by resolved path, and by
#   (st_dev, st_ino) when the file exists.
# * `read_regular`: `read_bounded` that also looks before it opens, so a device node (a serial
#   port whose open resets a board, a tape that rewinds) is never opened at all.
# * `write_line` / `release_stdout`: output to a pipe or terminal as Unix tools do it: a reader
#   that went away (EPIPE) is a quiet stop with status 141, any other failure one error.

EXIT_BROKEN_PIPE = 128 + 13  # what a shell reports for a process stopped by SIGPIPE


def file_id(path: str | os.PathLike) -> tuple[int, int] | None:
    """(st_dev, st_ino) of the file `path` names (links followed), or None when there is none."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return st.st_dev, st.st_ino


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """True when `a` and `b` name one file: the same resolved path (whether or not it exists
    yet), or the same inode (a hard link, a symlink, a bind mount)."""
    try:
        real_a, real_b = os.path.realpath(a), os.path.realpath(b)
    except (OSError, ValueError):
        real_a, real_b = os.fspath(a), os.fspath(b)
    if real_a == real_b:
        return True
    # A path through a folder that does not exist yet (sub/../x) names, once the folder is
    # made, the file its resolved path names.
    ida = file_id(a) or file_id(real_a)
    return ida is not None and ida == (file_id(b) or file_id(real_b))


def _is_char_device(path: str | os.PathLike) -> bool:
    try:
        return stat.S_ISCHR(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


def check_distinct(
    outputs: list[tuple[str, str | os.PathLike]], inputs: list[tuple[str, str | os.PathLike]]
) -> None:
    """PathRefused naming the first output that is the same file as another output or as an
    input: one file written by two outputs loses one's data, an input written over is lost.
    A character device (/dev/null) may take several outputs."""
    for i, (name, path) in enumerate(outputs):
        if _is_char_device(path):
            continue
        for other, other_path in outputs[:i]:
            if same_file(path, other_path):
                raise PathRefused(f"{name} and {other} name the same file ({path})")
        for other, other_path in inputs:
            if same_file(path, other_path):
                raise PathRefused(
                    f"{name} names the same file as {other} ({path}); writing it would destroy that input"
                )


def read_regular(path: Path, limit: int) -> bytes:
    """`read_bounded`, refusing a path that is not a regular file (or one over `limit` bytes)
    before opening it: only the inode is looked at, so no driver ever sees an open."""
    path = Path(path)
    check_length(path)
    st = os.stat(path)
    if not stat.S_ISREG(st.st_mode):
        raise PathRefused(f"{path} is {kind_of(st.st_mode)}, not a regular file")
    if st.st_size > limit:
        raise PathRefused(f"{path} is {st.st_size} bytes; the limit is {limit}")
    return read_bounded(path, limit)


class StreamGone(Exception):  # noqa: N818 - an end, not always an error
    """A stream that can take no more output: `broken_pipe` when its reader went away
    (quiet, as Unix tools stop), else `message` says why (disk full, closed)."""

    def __init__(self, message: str, broken_pipe: bool) -> None:
        super().__init__(message)
        self.broken_pipe = broken_pipe


def write_line(stream: Any, text: str) -> None:
    """Write `text` to a text stream and flush it; StreamGone when that fails."""
    try:
        stream.write(text)
        stream.flush()
    except BrokenPipeError:
        raise StreamGone("the reader closed the pipe", True) from None
    except OSError as exc:
        raise StreamGone(exc.strerror or str(exc), False) from None
    except (ValueError, AttributeError):  # a closed file, or no stream at all
        raise StreamGone("it is closed", False) from None


def release_stdout() -> None:
    """Point fd 1 at /dev/null after stdout failed, so the interpreter's last flush of what
    is still buffered goes nowhere instead of printing a second error at exit."""
    try:
        null = os.open(os.devnull, os.O_WRONLY)
    except OSError:
        return
    try:
        os.dup2(null, 1)
    except OSError:
        pass
    finally:
        os.close(null)

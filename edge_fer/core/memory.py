"""Low memory is one line: under a memory limit too small to run, every program says so and
exits with `ExitCode.MEMORY`, never with a traceback or a crash.

Two parts, both standard library only (they run before numpy and OpenCV are imported):

* `preflight`: an address-space limit (`ulimit -v`, systemd's LimitAS) below what the program
  needs is refused before anything big is loaded: under it OpenCV's start-up and thread
  creation fail inside C++, where the failure is a SIGSEGV no handler can turn into a line.
* `is_memory_error` / `LowMemory`: a failure at import or later that memory caused
  (MemoryError and numpy's _ArrayMemoryError, std::bad_alloc from OpenCV, a shared object
  that cannot be mapped, a thread that cannot start, ENOMEM), also when another error was
  raised while handling it (a model load that failed because an allocation did).
"""

from __future__ import annotations

import errno
import os
import resource
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from edge_fer.core.exit_codes import ExitCode

MIB = 1 << 20
# The address space each program needs (VmPeak of a run on x86-64 with a 640x480 source, with
# thread stacks and allocator arenas), and the floor below which it is refused at once:
# under that OpenCV's start-up and thread creation fail inside C++, where the failure is a
# SIGSEGV no handler can turn into a line. Between the two, allocations fail as exceptions
# that `is_memory_error` recognises.
NEEDED_MIB = {"edge-fer": 640, "edge-fer-classify": 580, "edge-fer-monitor": 180}
FLOOR_MIB = {"edge-fer": 512, "edge-fer-classify": 512, "edge-fer-monitor": 150}
# Messages of allocation failures that reach Python as another exception type.
_MEMORY_WORDS = (
    "bad_alloc",
    "insufficient memory",
    "failed to allocate",
    "out of memory",
    "cannot allocate memory",
    "failed to map segment",
    "can't start new thread",
    "unable to allocate",
)


class LowMemory(MemoryError):
    """The program ran out of memory; the message is the one line to print."""


def address_space_limit() -> int | None:
    """The soft RLIMIT_AS in bytes (`ulimit -v`), or None when unlimited."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_AS)
    return None if soft == resource.RLIM_INFINITY else soft


def _limit_text() -> str:
    limit = address_space_limit()
    return f"the address-space limit (ulimit -v) is {limit // MIB} MiB" if limit is not None else ""


def memory_line(program: str, cause: BaseException | None = None) -> str:
    """The one line: what failed, the limit in force, what the program needs, the fix."""
    need = NEEDED_MIB.get(program, 640)
    what = f" ({type(cause).__name__}: {str(cause)[:120]})" if cause is not None and str(cause) else ""
    limit = _limit_text()
    return (
        f"not enough memory to run {program}{what}; {limit + '; ' if limit else ''}it needs about "
        f"{need} MiB: raise the limit (ulimit -v, LimitAS= or MemoryMax= in the unit) or free memory"
    )


def is_memory_error(exc: BaseException) -> bool:
    """Whether `exc`, or an error it was raised from or while handling, is memory running out."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, MemoryError):
            return True
        if isinstance(e, OSError) and e.errno == errno.ENOMEM:
            return True
        if isinstance(e, ImportError | RuntimeError | OSError) or type(e).__module__.startswith("cv2"):
            text = str(e).lower()
            if any(word in text for word in _MEMORY_WORDS):
                return True
        todo += [e.__cause__, e.__context__]
    return False


@contextmanager
def low_memory_as_one_line(program: str) -> Iterator[None]:
    """Re-raise a memory-caused failure in the block as LowMemory (with its one line)."""
    try:
        yield
    except LowMemory:
        raise
    except Exception as exc:
        if is_memory_error(exc):
            raise LowMemory(memory_line(program, exc)) from None
        raise


def preflight(program: str) -> str | None:
    """The one line when the address-space limit is below what `program` needs, else None."""
    limit = address_space_limit()
    if limit is not None and limit < FLOOR_MIB.get(program, 512) * MIB:
        return memory_line(program)
    return None


def _say(program: str, line: str) -> None:
    # os.write: no buffering and no allocation to speak of, and a closed stderr is no crash.
    try:
        os.write(2, f"{program}: {line}\n".encode("utf-8", "backslashreplace"))
    except OSError:
        pass


M_ARENA_MAX = -8  # glibc's mallopt parameter number
MALLOC_ARENAS = 2


def limit_malloc_arenas(count: int = MALLOC_ARENAS) -> bool:
    """Cap glibc's malloc arenas (what MALLOC_ARENA_MAX does), unless the environment sets it.

    glibc gives each thread that allocates while another does its own arena, up to 8 per
    core, and what is freed in one is seldom handed back: a stream reader, a reload's build
    and the frame loop running at once grew the daemon by 16 MB for good on the first
    stalled reload (2 arenas: flat; tests/test_stalled_reload_memory.py). Called before any
    thread starts. False where there is no glibc."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    try:
        import ctypes

        return bool(ctypes.CDLL(None).mallopt(M_ARENA_MAX, count))
    except (OSError, AttributeError):
        return False


def run_guarded(program: str, main: Callable[[], int]) -> int:
    """Run a program's `main` (which imports what it needs inside) under the memory rules:
    the preflight first, malloc arenas capped, then any memory-caused failure, at import or
    later, is one line and ExitCode.MEMORY."""
    line = preflight(program)
    if line is not None:
        _say(program, line)
        return ExitCode.MEMORY
    limit_malloc_arenas()
    try:
        return main()
    except LowMemory as exc:
        _say(program, str(exc))
        return ExitCode.MEMORY
    except Exception as exc:
        if not is_memory_error(exc):
            raise
        _say(program, memory_line(program, exc))
        return ExitCode.MEMORY


def entry(program: str, target: str) -> Callable[[], None]:
    """A console-script entry point for `target` ("module:function") under `run_guarded`:
    the module is imported inside the guard, so an import that runs out of memory is one
    line too."""

    def start() -> None:
        def main() -> int:
            import importlib

            module, _, function = target.partition(":")
            return getattr(importlib.import_module(module), function)()

        sys.exit(run_guarded(program, main))

    return start


classify = entry("edge-fer-classify", "edge_fer.apps.classify:main")
monitor = entry("edge-fer-monitor", "edge_fer.apps.monitor:main")

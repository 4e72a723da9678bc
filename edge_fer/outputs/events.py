"""One JSON line per frame (`events.path`, `--events-jsonl`): labels and numbers only.

Each line goes out in one write; if a write fails (disk full, device gone) the file is cut
back to the last whole line, the output stops with one logged error, and classifying goes on.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from edge_fer.core.paths import expand_user
from edge_fer.core.safe_io import PathRefused, check_length, dumps_json, open_stream
from edge_fer.outputs.base import OutputError
from edge_fer.outputs.registration import register_output
from edge_fer.runtime.results import FrameResult

if TYPE_CHECKING:
    from collections.abc import Sequence

    from edge_fer.outputs.base import Output, OutputContext
    from edge_fer.runtime.stats import RunStats


def _open_append(path: Path) -> int:
    try:
        check_length(path)
    except PathRefused as exc:
        raise OutputError(f"events: {exc}; choose a shorter --events-jsonl path") from None
    if path.is_dir():
        raise OutputError(f"events: {path} is a directory; give a file path for --events-jsonl")
    if not path.parent.is_dir():
        raise OutputError(
            f"events: folder {path.parent} does not exist; create it or choose another --events-jsonl path"
        )
    try:
        return open_stream(path, append=True)
    except PathRefused as exc:
        raise OutputError(f"events: {exc}; give a regular file (or /dev/null) for --events-jsonl") from None
    except OSError as exc:
        raise OutputError(
            f"events: cannot write {path} ({exc.strerror or exc}); choose a writable --events-jsonl path"
        ) from None


def _stdout_fd() -> int:
    try:
        return sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        raise OutputError("events: there is no stdout to write to ('-'); give a file path") from None


class EventsLog:
    """Appends `FrameResult.event()` lines to a file, or writes them to stdout ('-')."""

    name = "events"

    def __init__(self, target: str) -> None:
        self.target = target
        try:
            self.path = None if target == "-" else expand_user(target)
        except ValueError as exc:
            raise OutputError(f"events: {exc}") from None
        self.fd = _stdout_fd() if self.path is None else _open_append(self.path)

    def on_frame(self, result: FrameResult, stats: RunStats) -> None:
        line = (dumps_json(result.event()) + "\n").encode()  # NaN would not be JSON
        start = os.lseek(self.fd, 0, os.SEEK_END) if self.path is not None else 0
        try:
            if self.path is None and sys.stdout is not None:
                sys.stdout.flush()
            written = 0
            while written < len(line):
                written += os.write(self.fd, line[written:])
        except OSError as exc:
            if self.path is not None:
                try:
                    os.ftruncate(self.fd, start)  # never leave a partial line behind
                except OSError:
                    pass
            raise OutputError(
                f"events: writing {self.target} failed ({exc.strerror}); events stopped, classifying goes on"
            ) from None

    def close(self) -> None:
        if self.path is not None and self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


@register_output("events", section="events", order=30)
def events_output(ctx: OutputContext, earlier: Sequence[Output]) -> EventsLog | None:
    """`events.path` (a file, or - for stdout) turns the JSON-lines log on."""
    path = ctx.config.events.path
    return EventsLog(path) if path else None

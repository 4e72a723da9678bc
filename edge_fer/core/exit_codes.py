"""Every program's exit codes, in one place: the docs' table is generated from (and tested
against) `ExitCode`, and the programs return these values.

    python -m edge_fer.core.exit_codes      # the Markdown table (docs/exit-codes.md)
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class ExitCode(IntEnum):
    """Why a program stopped. Every error also prints one line naming the problem and the fix."""

    OK = 0
    INTERNAL = 1
    CONFIG = 2
    MODEL = 3
    SOURCE = 4
    DISPLAY = 5
    MEMORY = 6


@dataclass(frozen=True)
class Meaning:
    """What a code means for the user, and which programs can return it."""

    summary: str
    examples: str
    programs: tuple[str, ...]


DAEMON, CLASSIFY, MONITOR = "edge-fer", "edge-fer-classify", "edge-fer-monitor"
ALL = (DAEMON, CLASSIFY, MONITOR)

MEANINGS: dict[ExitCode, Meaning] = {
    ExitCode.OK: Meaning(
        "success: a clean stop (SIGTERM, --max-frames, the end of a video with looping off), "
        "every photo classified",
        "",
        ALL,
    ),
    ExitCode.INTERNAL: Meaning(
        "edge-fer: an internal error (a bug), one line `internal error: ...; please report it`; "
        "edge-fer-monitor: a --csv write that failed while running (the summary is still printed)",
        "edge-fer --log-level DEBUG shows the details; a disk that fills up under --csv",
        (DAEMON, MONITOR),
    ),
    ExitCode.CONFIG: Meaning(
        "a bad config file, flag, path, URL, password file or output path; edge-fer-classify: "
        "also an input that is not a readable image (the other images are still classified)",
        "a config key out of range; a path or URL with a byte that is not UTF-8; a password "
        "file readable by others; --stats-path naming a directory",
        ALL,
    ),
    ExitCode.MODEL: Meaning(
        "the emotion model or the face detector cannot be loaded or is refused",
        "a missing or broken .pte; metadata that does not match the program; a YuNet file "
        "that is not a model",
        (DAEMON, CLASSIFY),
    ),
    ExitCode.SOURCE: Meaning(
        "the camera or source cannot be opened or gives no usable frames at start",
        "no camera; an unreachable stream; a video with no readable frames or too large to "
        "decode within the memory budget; a still image given as file:",
        (DAEMON,),
    ),
    ExitCode.DISPLAY: Meaning(
        "the display asked for cannot be used",
        "--display window with no screen; --display drm without a Camera Module",
        (DAEMON,),
    ),
    ExitCode.MEMORY: Meaning(
        "not enough memory to run: one line `not enough memory: ...` with the limit found and what is needed",
        "ulimit -v below what the program needs; an allocation that fails while loading",
        ALL,
    ),
}


def table_markdown() -> str:
    """The exit-code table as Markdown (the docs must hold exactly this)."""
    lines = ["| code | meaning | for example | programs |", "|---|---|---|---|"]
    for code in ExitCode:
        m = MEANINGS[code]
        lines.append(f"| {int(code)} | {m.summary} | {m.examples or '-'} | {', '.join(m.programs)} |")
    return "\n".join(lines) + "\n"


def parse_table(markdown: str) -> dict[int, tuple[str, str, tuple[str, ...]]]:
    """The rows of the first exit-code table in `markdown` (code -> meaning, example,
    programs): what the docs say, for the test that holds them to `MEANINGS`."""
    rows: dict[int, tuple[str, str, tuple[str, ...]]] = {}
    for line in markdown.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0].isdigit():
            rows[int(cells[0])] = (cells[1], cells[2], tuple(p.strip() for p in cells[3].split(",")))
        elif rows and not line.strip():
            break
    return rows


if __name__ == "__main__":
    print(table_markdown(), end="")

"""The live stats file (`stats.path`): what the daemon publishes about once a second for
edge-fer-monitor, as types with a `format_version`, one writer and one reader.

    {"format_version": 1, "pid", "run_id", "time", "source", "uptime_s", "frames", "fps",
     "latency_ms": {stage: {"p50", "p95", "max", "mean"}}, "detection_frames",
     "window_frames", "outputs_ms": {"p50", "p95", "max", "mean"}, "faces",
     "dropped_frames", "reconnects"}

Times are in milliseconds over the daemon's stats window (`stats.window_s`); `detect` counts
only the frames that ran the detector (`detection_frames` of `window_frames`). Readers ignore
keys they do not know, so a later version may add figures without breaking older monitors;
a change of meaning gets a new `format_version` and a migration here.

Files without `format_version` come from a daemon older than the versioned format (one still
running while the package was upgraded): `migrate_unversioned` reads them. Anything else that
is not such a document (wrong JSON, wrong types, non-finite numbers, missing fields, too big,
not a regular file) is one `LiveStatsError`.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edge_fer.core import safe_io

FORMAT_VERSION = 1
MAX_BYTES = 1 << 20  # the daemon writes ~1 KB; anything far bigger is not its file
STAGES = ("capture", "detect", "classify", "total")
# Figures the unversioned format gained over time: a file from a daemon older than them says
# nothing about them (None), rather than a made-up zero.
LATER_FIGURES = ("run_id", "detection_frames", "window_frames", "outputs_ms")


class LiveStatsError(ValueError):
    """A stats file that cannot be used: the message names the file and the problem."""


class LiveStatsMissing(LiveStatsError):
    """No stats file at the path (no daemon is publishing there)."""


@dataclass(frozen=True)
class Spread:
    """One figure over the stats window, in milliseconds."""

    p50: float
    p95: float
    max: float
    mean: float


@dataclass(frozen=True)
class LiveStats:
    """One stats document. The `LATER_FIGURES` are None only when read from an unversioned
    file whose daemon did not count them yet."""

    pid: int
    run_id: str | None
    time: float  # unix time of writing: a reader tells a stale file by it
    source: str
    uptime_s: float
    frames: int
    fps: float  # over the window; 0.0 until two frames give a rate
    latency_ms: dict[str, Spread]  # one per STAGES
    detection_frames: int | None
    window_frames: int | None
    outputs_ms: Spread | None
    faces: int  # in the last frame
    dropped_frames: int
    reconnects: int
    format_version: int = FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        """The document as plain JSON types (what the file holds)."""
        return asdict(self)


def encode(stats: LiveStats) -> bytes:
    """The file's bytes: JSON that is always valid (`safe_io.dumps_json`)."""
    return safe_io.dumps_json(stats.to_dict()).encode()


def write(path: Path, stats: LiveStats, mode: int = 0o640) -> tuple[int, int]:
    """Replace `path` atomically with `stats` (a reader never sees half a file), making the
    folder if needed. 0640: the daemon's figures are for its group (the monitor), not
    everyone. Returns the file's (st_dev, st_ino). Raises OSError, or safe_io.PathRefused
    for a target that is a directory, FIFO, socket or device."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return safe_io.write_atomic(path, encode(stats), mode)


def read(path: Path) -> LiveStats:
    """The stats document at `path`: a regular file of at most MAX_BYTES, current format or
    migrated. Raises LiveStatsMissing when there is no file, LiveStatsError for anything else
    that is not a stats document (never blocks on a FIFO, never reads a device)."""
    path = Path(path)
    try:
        data = safe_io.read_bounded(path, MAX_BYTES)
    except FileNotFoundError:
        raise LiveStatsMissing(f"no {path}") from None
    except safe_io.PathRefused as exc:
        raise LiveStatsError(str(exc)) from None
    except OSError as exc:
        raise LiveStatsError(f"cannot read {path} ({exc.strerror or exc})") from None
    return decode(data, str(path))


def decode(data: bytes, where: str = "stats") -> LiveStats:
    """A stats document from a file's bytes; `where` names the file in errors."""
    try:
        doc = json.loads(data.decode("utf-8"), parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:  # bad UTF-8 or JSON, NaN/Infinity, too deep
        raise LiveStatsError(f"{where} is not JSON ({str(exc)[:200]})") from None
    if not isinstance(doc, dict):
        raise LiveStatsError(f"{where} is not a JSON object")
    unversioned = "format_version" not in doc
    version = doc.get("format_version")
    if unversioned:
        doc = migrate_unversioned(doc)
    elif isinstance(version, bool) or not isinstance(version, int):
        raise LiveStatsError(f"{where}: format_version {str(version)[:40]!r} is not a whole number")
    elif version > FORMAT_VERSION:
        raise LiveStatsError(
            f"{where} has stats format {version}, newer than this edge-fer reads ({FORMAT_VERSION}); "
            "upgrade edge-fer"
        )
    elif version < 1:
        raise LiveStatsError(f"{where}: format_version {version} is not a stats format")
    try:
        return _from_dict(doc, unversioned)
    except _Bad as exc:
        raise LiveStatsError(f"{where}: {exc}") from None


def migrate_unversioned(doc: dict[str, Any]) -> dict[str, Any]:
    """A document of the unversioned format (a daemon from before `format_version`) as
    format 1: the same keys and meanings; figures its daemon did not count yet are None."""
    migrated = {key: None for key in LATER_FIGURES}
    migrated.update(doc)
    migrated["format_version"] = 1
    return migrated


def is_live_stats(path: Path) -> bool:
    """True when `path` holds a stats document edge-fer wrote (e.g. before a crash)."""
    try:
        read(path)
    except LiveStatsError:
        return False
    return True


class _Bad(Exception):
    """One field that is wrong (turned into LiveStatsError with the file's name)."""


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number JSON allows")


def _number(doc: dict[str, Any], key: str, where: str = "") -> float:
    value = doc.get(key, _MISSING)
    if value is _MISSING:
        raise _Bad(f"'{where}{key}' is missing")
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _Bad(f"'{where}{key}' must be a finite number, not {str(value)[:40]!r}")
    return float(value)


def _count(doc: dict[str, Any], key: str, minimum: int = 0) -> int:
    value = doc.get(key, _MISSING)
    if value is _MISSING:
        raise _Bad(f"'{key}' is missing")
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise _Bad(f"'{key}' must be a whole number of at least {minimum}, not {str(value)[:40]!r}")
    return value


def _text(doc: dict[str, Any], key: str) -> str:
    value = doc.get(key, _MISSING)
    if value is _MISSING:
        raise _Bad(f"'{key}' is missing")
    if not isinstance(value, str):
        raise _Bad(f"'{key}' must be text, not {str(value)[:40]!r}")
    return value


def _spread(value: object, where: str) -> Spread:
    if not isinstance(value, dict):
        raise _Bad(f"'{where}' must be an object of p50, p95, max and mean, not {str(value)[:40]!r}")
    return Spread(*(_number(value, k, f"{where}.") for k in ("p50", "p95", "max", "mean")))


def _from_dict(doc: dict[str, Any], unversioned: bool) -> LiveStats:
    """The typed document; unknown keys are ignored, later figures may be None only in a
    migrated (`unversioned`) document."""

    def later(key: str, parse: Any) -> Any:
        return None if unversioned and doc.get(key) is None else parse()

    latency = doc.get("latency_ms", _MISSING)
    if latency is _MISSING:
        raise _Bad("'latency_ms' is missing")
    if not isinstance(latency, dict):
        raise _Bad(f"'latency_ms' must be an object of stages, not {str(latency)[:40]!r}")
    for stage in STAGES:
        if stage not in latency:
            raise _Bad(f"'latency_ms.{stage}' is missing")
    return LiveStats(
        pid=_count(doc, "pid", minimum=1),
        run_id=later("run_id", lambda: _text(doc, "run_id")),
        time=_number(doc, "time"),
        source=_text(doc, "source"),
        uptime_s=_number(doc, "uptime_s"),
        frames=_count(doc, "frames"),
        fps=_number(doc, "fps"),
        latency_ms={stage: _spread(latency[stage], f"latency_ms.{stage}") for stage in STAGES},
        detection_frames=later("detection_frames", lambda: _count(doc, "detection_frames")),
        window_frames=later("window_frames", lambda: _count(doc, "window_frames")),
        outputs_ms=later("outputs_ms", lambda: _spread(doc.get("outputs_ms"), "outputs_ms")),
        faces=_count(doc, "faces"),
        dropped_frames=_count(doc, "dropped_frames"),
        reconnects=_count(doc, "reconnects"),
    )


_MISSING = object()

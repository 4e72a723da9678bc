"""Every well-known path in one place: daemon runtime files, config, dataset, models."""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent.parent
# The checkout (for tools, benchmarks and tests run from a clone); meaningless once installed.
PROJECT_ROOT = PACKAGE_DIR.parent


def _from_env(name: str, default: Path) -> Path:
    """$name when it is set and not empty, else `default` (an empty variable means unset)."""
    return Path(os.environ.get(name) or default)


DEFAULT_CONFIG = Path("/etc/edge-fer/config.yaml")
# stats.path's default: the service's RuntimeDirectory. A daemon that may not write there (a
# user's own run) uses its user's runtime folder instead: `live_stats_path`.
DEFAULT_STATS = Path("/run/edge-fer/stats.json")
# FER2013 as this project's workplace lays it out beside the checkout; EDGE_FER_DATA moves it.
YUNET_ENV, DATA_ENV = "EDGE_FER_YUNET", "EDGE_FER_DATA"
DEFAULT_DATA = _from_env(DATA_ENV, PROJECT_ROOT.parent / "shared" / "datasets" / "fer2013")
# The default face detector ships inside the package (OpenCV Zoo's YuNet, MIT: LICENSE-YUNET);
# EDGE_FER_YUNET points the daemon, the photo tool, tools and benchmarks at another copy.
SHIPPED_YUNET = PACKAGE_DIR / "models" / "face_detection_yunet_2026may.onnx"
DEFAULT_YUNET = _from_env(YUNET_ENV, SHIPPED_YUNET)
# The emotion model that ships inside the package (metadata .json beside it).
DEFAULT_MODEL = PACKAGE_DIR / "models" / "edge_fer_student.pte"
# The FER2013 demo video tools/make_demo_video.py builds in a checkout: the daemon's default
# fallback_video (the shipped demo below is played when it is missing).
DEFAULT_DEMO_VIDEO = PROJECT_ROOT / "runs" / "demo" / "faces_640x480.mp4"
# The demo that ships inside the package: photos of real people (Face Research Lab London Set,
# CC BY 4.0) and of synthetic faces (SFHQ-T2I, MIT; samples/ATTRIBUTION.md) and a video built
# from them, the source of last resort.
SAMPLES_DIR = PACKAGE_DIR / "samples"
SHIPPED_DEMO_VIDEO = SAMPLES_DIR / "demo_faces_640x480.mp4"


def expand_user(path: str | os.PathLike) -> Path:
    """`~` and `~user` expanded; ValueError (not RuntimeError or KeyError) naming the user
    when there is no such user or no home to expand to."""
    text = os.fspath(path)
    if isinstance(text, bytes):
        text = os.fsdecode(text)
    if not text.startswith("~"):
        return Path(text)
    user = text[1:].split("/", 1)[0]
    try:
        expanded = os.path.expanduser(text)
    except (KeyError, RuntimeError, OSError, ValueError):
        expanded = text
    if expanded.startswith("~"):
        who = f"user '{user}'" if user else "this user"
        raise ValueError(f"{text!r} names the home of {who}, which does not exist; use an absolute path")
    return Path(expanded)


def runtime_dir(name: str) -> Path:
    """Where a program named `name` keeps its live files: /run/NAME for root and for the
    service (systemd's RuntimeDirectory= makes it writable for the service's user), else the
    user's $XDG_RUNTIME_DIR/NAME (/run/user/UID), else ~/.local/state/NAME."""
    run = Path("/run") / name
    if os.geteuid() == 0 or os.access(run, os.W_OK):
        return run
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and os.path.isabs(xdg) and os.access(xdg, os.W_OK):
        return Path(xdg) / name
    try:
        return Path.home() / ".local" / "state" / name
    except (RuntimeError, KeyError):  # no $HOME and no passwd entry
        return Path("/tmp") / f"{name}-{os.geteuid()}"


def _daemon_dir_name(instance: str | None) -> str:
    return f"edge-fer-{instance}" if instance else DEFAULT_STATS.parent.name


def live_stats_path(instance: str | None = None) -> Path:
    """The default live stats file of a daemon (of `--instance NAME`) run by this user."""
    return runtime_dir(_daemon_dir_name(instance)) / DEFAULT_STATS.name


def live_stats_to_read(instance: str | None = None) -> Path:
    """The stats file edge-fer-monitor reads by default: the service's when it exists (a
    user may read the service's file), else the one this user's own daemon writes."""
    service = Path("/run") / _daemon_dir_name(instance) / DEFAULT_STATS.name
    return service if service.exists() else live_stats_path(instance)

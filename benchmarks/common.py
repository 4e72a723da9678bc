"""What the benchmark scripts share (imported as `common`: each script's own folder is on
sys.path when it runs)."""

from __future__ import annotations

import sys
from pathlib import Path


def daemon_command(video: Path, stats: Path, *flags: str) -> list[str]:
    """The real `edge-fer` on a video file, headless, quiet, no console line, plus `flags`."""
    return [sys.executable, "-m", "edge_fer.cli", "--source", f"file:{video}", "--display", "none",
            "--stats-path", str(stats), "--log-level", "WARNING", "--console", "off", *flags]  # fmt: skip

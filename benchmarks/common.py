"""What the benchmark scripts share (imported as `common`: each script's own folder is on
sys.path when it runs)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path


def daemon_command(video: Path, stats: Path, *flags: str) -> list[str]:
    """The real `edge-fer` on a video file, headless, quiet, no console line, plus `flags`. The
    file is read as fast as it decodes (`--pace fast`), not at its own frame rate: the
    benchmarks measure how fast the daemon can go."""
    return [sys.executable, "-m", "edge_fer.apps.daemon", "--source", f"file:{video}", "--display", "none",
            "--stats-path", str(stats), "--log-level", "WARNING", "--console", "off", "--pace", "fast",
            *flags]  # fmt: skip


def latency_ms(fn: Callable, x: object, iters: int) -> dict:
    """p50 and p95 of `fn(x)` in ms over `iters` calls, after a warm-up of a tenth (at least 10)."""
    import numpy as np

    for _ in range(max(10, iters // 10)):
        fn(x)
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - t)
    a = np.asarray(times) * 1e3
    return {"p50": float(np.percentile(a, 50)), "p95": float(np.percentile(a, 95))}

#!/usr/bin/env python3
"""Runtime start-up benchmark: how the daemon should load the shipped `.pte`.

    python benchmarks/bench_runtime.py [--model models/edge_fer_student.pte] [--repeats 3]

Each way of loading runs in a fresh process (so imports are cold in the interpreter, warm in
the page cache, as on a restart): time to import, to load the program, to the first
inference, and the process RSS after the first inference.

  native              PteClassifier(runtime="native"): edge_fer.native's ctypes runner, no torch
  pybind              PteClassifier(runtime="pybind"): torch + ExecuTorch's Python extension only
  executorch_runtime  the documented `executorch.runtime.Runtime` API
  eager_float         the float student in eager PyTorch (needs --checkpoint)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from edge_fer.config import DEFAULT_MODEL
from edge_fer.core.paths import PROJECT_ROOT as ROOT
from edge_fer.core.user_input import FlagParser, path_arg

WAYS = ("native", "pybind", "executorch_runtime", "eager_float")

# Run in a child process; prints one JSON object. Kept as source so the child's imports are cold.
CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
way, model, checkpoint = sys.argv[1], sys.argv[2], sys.argv[3]

def rss_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024

import numpy as np
faces = np.random.default_rng(0).integers(0, 256, (1, 48, 48), dtype=np.uint8)
if way in ("native", "pybind"):
    from edge_fer.emotions.classifier import PteClassifier
    t1 = time.perf_counter()
    clf = PteClassifier(model, threads=1, runtime=way)
    t2 = time.perf_counter()
    clf.classify_batch(faces)
elif way == "executorch_runtime":
    import torch
    from executorch.runtime import Runtime
    t1 = time.perf_counter()
    method = Runtime.get().load_program(model).load_method("forward")
    t2 = time.perf_counter()
    method.execute((torch.from_numpy(faces[:, None].astype(np.float32) / 255),))
else:
    from edge_fer.emotions.classifier import TorchClassifier
    t1 = time.perf_counter()
    clf = TorchClassifier(checkpoint, threads=1)
    t2 = time.perf_counter()
    clf.classify_batch(faces)
t3 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "load_s": t2 - t1, "first_inference_s": t3 - t2,
                  "total_s": t3 - t0, "rss_mb": rss_mb()}))
"""


def measure(way: str, model: Path, checkpoint: Path, repeats: int) -> dict:
    runs = []
    for _ in range(repeats):
        proc = subprocess.run(
            [sys.executable, "-c", CHILD, way, str(model), str(checkpoint)],
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        if proc.returncode != 0:
            raise SystemExit(f"error: {way} failed: {proc.stderr.strip().splitlines()[-1]}")
        runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    # The median run by total time; RSS varies little between runs.
    runs.sort(key=lambda r: r["total_s"])
    return {"way": way, **runs[len(runs) // 2], "total_s_all": [round(r["total_s"], 3) for r in runs]}


def format_table(rows: list[dict]) -> str:
    lines = [
        "| way | import s | load s | first inference ms | start-up total s | RSS MB |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['way']} | {r['import_s']:.2f} | {r['load_s']:.3f} | "
            f"{r['first_inference_s'] * 1e3:.1f} | {r['total_s']:.2f} | "
            f"{r['rss_mb']:.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = FlagParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", type=path_arg, default=DEFAULT_MODEL)
    p.add_argument(
        "--checkpoint",
        type=path_arg,
        default=None,
        help="float student checkpoint (runs/<name>/pruned.pt) for the eager row",
    )
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", type=path_arg, default=ROOT / "benchmarks" / "results" / "runtime.json")
    args = p.parse_args(argv)
    if not args.model.is_file():
        print(f"error: model {args.model} not found; pass --model PATH", file=sys.stderr)
        return 2
    if args.checkpoint is not None and not args.checkpoint.is_file():
        print(
            f"error: checkpoint {args.checkpoint} not found; pass --checkpoint "
            "runs/<name>/pruned.pt or leave it out",
            file=sys.stderr,
        )
        return 2
    if args.repeats < 1:
        print("error: --repeats must be at least 1", file=sys.stderr)
        return 2
    ways = [w for w in WAYS if w != "eager_float" or args.checkpoint is not None]
    rows = []
    for way in ways:
        print(f"measuring {way} ...", file=sys.stderr, flush=True)
        rows.append(
            measure(way, args.model.resolve(), (args.checkpoint or Path("-")).resolve(), args.repeats)
        )
    print(format_table(rows))
    native = rows[0]
    print()
    for other in rows[1:3]:
        print(
            f"native vs {other['way']}: {other['total_s'] / native['total_s']:.1f}x faster "
            f"start-up, {other['rss_mb'] / native['rss_mb']:.1f}x less RSS "
            f"({other['rss_mb'] - native['rss_mb']:.0f} MB; median of {args.repeats} starts)"
        )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"model": str(args.model), "rows": rows}, indent=2))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

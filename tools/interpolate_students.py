#!/usr/bin/env python3
"""Weight-space interpolation of two students of the same architecture (WiSE-FT): a student
fine-tuned for robustness from another is mixed back with it, (1-a)*clean + a*robust, which
keeps most of the robustness and recovers clean accuracy (the two lie in one basin, since one
was fine-tuned from the other).

    .venv/bin/python tools/interpolate_students.py --clean artifacts/v10t/pruned.pt \
        --robust runs/robust/student.pt --alphas 0,0.5,0.6,0.7,0.8,1       # report only
    .venv/bin/python tools/interpolate_students.py --clean artifacts/v10t/pruned.pt \
        --robust runs/robust_wise/student.pt runs/robust_soup/student.pt   # a soup of two
    .venv/bin/python tools/interpolate_students.py ... --pick 0.7 --out runs/robust_wise/student.pt

For each alpha: PublicTest accuracy on clean faces and the mean over the camera-degradation
suite of bench_robustness.py (the selection score is their mean, as the robust training's),
float weights, batch-norm statistics interpolated with the weights.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch

from edge_fer.core.paths import DEFAULT_DATA
from edge_fer.core.safe_io import PathRefused, check_writable, write_json_atomic
from edge_fer.core.user_input import FlagParser, path_arg
from edge_fer.data.fer2013 import DatasetError, load_split
from edge_fer.emotions.preprocess import PreprocessSpec
from edge_fer.nets.checkpoint import CheckpointError, load_model, save_model
from edge_fer.training.degrade import benchmark_suite
from edge_fer.training.loop import predict_logits
from edge_fer.training.stages import TrainingError, average_weights, interpolate_weights, load_fine_tunes


def _alphas(text: str) -> list[float]:
    try:
        values = [float(v) + 0.0 for v in text.split(",") if v.strip()]  # + 0.0: no -0
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers in [0, 1], got {text!r}"
        ) from None
    if not values or not all(0 <= v <= 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers in [0, 1], got {text!r}")
    return values


def main(argv: list[str] | None = None) -> int:
    p = FlagParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--clean", type=path_arg, required=True, help="student.pt before the robust fine-tune")
    p.add_argument(
        "--robust",
        type=path_arg,
        nargs="+",
        required=True,
        help="student.pt after it (same architecture); several: their uniform average (a soup)",
    )
    p.add_argument("--alphas", type=_alphas, default=_alphas("0,0.5,0.6,0.7,0.8,0.9,1"))
    p.add_argument("--pick", type=float, default=None, help="write this alpha's student to --out")
    p.add_argument("--out", type=path_arg, default=None, help="student.pt to write (with --pick)")
    p.add_argument("--data", type=path_arg, default=DEFAULT_DATA)
    p.add_argument("--threads", type=int, default=2, choices=range(1, 17), metavar="1-16")
    args = p.parse_args(argv)
    if (args.pick is None) != (args.out is None) or (args.pick is not None and not 0 <= args.pick <= 1):
        p.error("--pick A (in [0, 1]) and --out PATH go together")
    torch.set_num_threads(args.threads)
    try:
        if args.out is not None:  # before minutes of evaluation, not after them
            check_writable(args.out)
            check_writable(args.out.with_name("interpolation.json"))
        clean, ckpt = load_model(args.clean)
        spec = PreprocessSpec.from_dict(ckpt["preprocess"])
        robust = average_weights(load_fine_tunes(args.robust, spec, clean, "--robust"))
        data = load_split(args.data, "public", spec)
    except (CheckpointError, DatasetError, TrainingError, PathRefused, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    suite = {k: torch.from_numpy(v) for k, v in benchmark_suite(data.images).items()}
    rows = []
    print(f"{'alpha':>6}{'clean':>9}{'degraded':>10}{'score':>8}{'worst':>22}")
    for alpha in sorted({*args.alphas, *([args.pick] if args.pick is not None else [])}):
        model = interpolate_weights(clean, robust, alpha)
        acc = {
            k: float((predict_logits(model, x, spec).argmax(1).numpy() == data.labels).mean())
            for k, x in suite.items()
        }
        degraded = {k: v for k, v in acc.items() if k != "clean"}
        worst = min(degraded, key=degraded.get)
        mean = float(np.mean(list(degraded.values())))
        row = {
            "alpha": alpha,
            "clean": acc["clean"],
            "degraded_mean": mean,
            "conditions": acc,
            "worst": worst,
        }
        row["score"] = (row["clean"] + row["degraded_mean"]) / 2
        rows.append(row)
        print(f"{alpha:>6g}{row['clean'] * 100:>8.2f}%{mean * 100:>9.2f}%{row['score'] * 100:>7.2f}%"
              f"{worst:>14} {degraded[worst] * 100:.2f}%")  # fmt: skip
        if args.pick is not None and alpha == args.pick:
            source = {"clean": str(args.clean), "robust": [str(path) for path in args.robust], "alpha": alpha}
            metrics = {"val_accuracy": row["clean"], "val_degraded_mean": mean, "interpolation": source}
            try:
                save_model(args.out, model, spec, metrics)
                write_json_atomic(args.out.with_name("interpolation.json"), {"picked": row, "rows": rows})
            except (CheckpointError, PathRefused, OSError) as exc:
                print(f"error: {args.out} not written: {exc}", file=sys.stderr)
                return 2
            print(f"wrote {args.out} (alpha {alpha:g})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Evaluate an emotion model on a folder of class subfolders (or a FER2013 root / CSV).

    python tools/evaluate.py --data ../shared/datasets/fer2013/test
    python tools/evaluate.py --data DIR --model runs/main/pruned.pt --json

Prints accuracy, macro-F1, per-class precision/recall and the confusion matrix, and writes
the same summary as JSON and a confusion-matrix PNG into --out (default runs/eval/ in the
checkout): <model>_on_<data>.json and <model>_on_<data>_confusion.png. With --json the last
stdout line is also that JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys

from edge_fer.config import DEFAULT_MODEL
from edge_fer.core.paths import PROJECT_ROOT
from edge_fer.core.user_input import FlagParser, path_arg
from edge_fer.data.fer2013 import DatasetError, load_eval_folder
from edge_fer.emotions.classifier import ModelError, load_classifier
from edge_fer.evaluation.metrics import confusion_matrix, format_report, plot_confusion, summarize

DEFAULT_OUT = PROJECT_ROOT / "runs" / "eval"


def main(argv: list[str] | None = None) -> int:
    p = FlagParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", type=path_arg, required=True, help="folder of class subfolders")
    p.add_argument("--model", type=path_arg, default=DEFAULT_MODEL, help=".pte program or .pt student")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--out",
        type=path_arg,
        default=DEFAULT_OUT,
        help=f"folder for the JSON summary and the confusion PNG (default {DEFAULT_OUT})",
    )
    p.add_argument(
        "--plot",
        type=path_arg,
        default=None,
        help="confusion-matrix PNG elsewhere (default: <out>/<model>_on_<data>_confusion.png)",
    )
    p.add_argument("--json", action="store_true", help="last stdout line: one JSON object")
    args = p.parse_args(argv)
    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(
            f"error: --out {args.out}: cannot create it ({exc.strerror}); choose a writable folder",
            file=sys.stderr,
        )
        return 2
    try:
        classifier = load_classifier(args.model, args.threads)
        data = load_eval_folder(args.data, classifier.spec)
    except (ModelError, DatasetError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    probs = classifier.classify_batch(data.images)
    preds = probs.argmax(1)
    summary = summarize(confusion_matrix(data.labels, preds))
    summary["model"] = str(args.model)
    summary["model_bytes"] = args.model.stat().st_size
    summary["data"] = str(args.data)
    stem = f"{args.model.stem}_on_{args.data.resolve().name}"
    plot = args.plot or args.out / f"{stem}_confusion.png"
    report = args.out / f"{stem}.json"
    print(f"model {args.model} ({summary['model_bytes']} bytes) on {args.data}")
    print(format_report(summary))
    try:
        plot_confusion(
            confusion_matrix(data.labels, preds),
            str(plot),
            f"{args.model.name} ({summary['accuracy'] * 100:.1f}%, n={summary['n']})",
        )
        print(f"confusion matrix plot: {plot}")
    except ImportError:  # a runtime-only install (the Pi's): the numbers still stand
        print("confusion matrix plot: skipped (needs matplotlib: pip install 'edge-fer[train]')")
    except OSError as exc:
        print(
            f"error: cannot write {plot} ({exc.strerror}); choose a writable --plot or --out", file=sys.stderr
        )
        return 2
    try:
        report.write_text(json.dumps(summary, indent=1) + "\n")
        print(f"summary: {report}")
    except OSError as exc:
        print(f"error: cannot write {report} ({exc.strerror}); choose a writable --out", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())

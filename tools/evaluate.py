#!/usr/bin/env python3
"""Evaluate an emotion model on a folder of class subfolders (or a FER2013 root / CSV).

    python tools/evaluate.py --data ../shared/datasets/fer2013/test
    python tools/evaluate.py --data DIR --model runs/main/pruned.pt --json

Prints accuracy, macro-F1, per-class precision/recall and the confusion matrix, and writes
a confusion-matrix PNG. With --json the last stdout line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from edge_fer.classify import ModelError, load_classifier
from edge_fer.config import DEFAULT_MODEL
from edge_fer.dataset import DatasetError, load_eval_folder
from edge_fer.metrics import confusion_matrix, format_report, plot_confusion, summarize


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", type=Path, required=True, help="folder of class subfolders")
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL, help=".pte program or .pt student")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--plot",
        type=Path,
        default=None,
        help="confusion-matrix PNG (default: confusion_<model>.png in the cwd)",
    )
    p.add_argument("--json", action="store_true", help="last stdout line: one JSON object")
    args = p.parse_args(argv)
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
    plot = args.plot or Path(f"confusion_{args.model.stem}.png")
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
    if args.json:
        print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())

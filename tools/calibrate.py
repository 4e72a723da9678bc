#!/usr/bin/env python3
"""Make a model's scores calibrated probabilities: fit a calibration map on PublicTest and
store it in the model's metadata, where the daemon reads it.

    .venv/bin/python tools/calibrate.py                       # the shipped model
    .venv/bin/python tools/calibrate.py --model runs/robust/edge_fer_student.pte --no-write

The map is vector scaling by default: softmax(logits * scale + bias) with one scale and one
bias per class (14 numbers, fitted by NLL), which also corrects the classes the model is
biased towards; `--method temperature` fits a single softmax temperature instead. How well
it works is measured by 5-fold cross-validation on PublicTest: the map used for each fifth
of the faces is fitted on the other four fifths, so no face is scored by a map fitted on it.
The stored map is then fitted on all of PublicTest. Prints
(and writes as JSON and PNGs beside the model, or into --out) expected calibration error
(15 bins) and NLL before and after, the coverage/accuracy curve behind the daemon's
`smoothing.uncertain_below`, and the accuracy of the coarser label groups.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from edge_fer.config import DEFAULT_MODEL, SmoothingConfig
from edge_fer.core.paths import DEFAULT_DATA
from edge_fer.core.user_input import FlagParser, path_arg
from edge_fer.data.fer2013 import DatasetError, load_split, stratified_subset
from edge_fer.emotions.classifier import ModelError, PteClassifier, metadata_path, write_metadata
from edge_fer.emotions.labels import LABEL_GROUPS, group_matrix
from edge_fer.emotions.preprocess import normalize
from edge_fer.evaluation.metrics import (
    expected_calibration_error,
    fit_temperature,
    fit_vector_scaling,
    negative_log_likelihood,
    plot_coverage,
    plot_reliability,
    reliability_bins,
    softmax_t,
    softmax_vs,
)

FOLDS = 5
THRESHOLDS = [round(0.05 * i, 2) for i in range(0, 19)]


def fit_map(logits: np.ndarray, labels: np.ndarray, method: str, objective: str) -> dict:
    """The calibration map as stored in the metadata: {"scale", "bias"} or {"temperature"}."""
    if method == "vector":
        scale, bias = fit_vector_scaling(logits, labels)
        return {"scale": [round(float(v), 5) for v in scale], "bias": [round(float(v), 5) for v in bias]}
    return {"temperature": round(fit_temperature(logits, labels, objective), 5)}


def apply_map(logits: np.ndarray, calibration: dict) -> np.ndarray:
    if "scale" in calibration:
        return softmax_vs(logits, np.asarray(calibration["scale"]), np.asarray(calibration["bias"]))
    return softmax_t(logits, calibration["temperature"])


def cross_validated_probs(
    logits: np.ndarray, labels: np.ndarray, method: str, objective: str = "nll", seed: int = 0
) -> tuple[np.ndarray, list[dict]]:
    """Probabilities of every face under a map fitted on the other folds (stratified)."""
    rng = np.random.default_rng(seed)
    fold = np.empty(len(labels), int)
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        fold[members] = np.arange(len(members)) % FOLDS
    probs = np.empty(logits.shape, np.float64)
    maps = []
    for k in range(FOLDS):
        held = fold == k
        fitted = fit_map(logits[~held], labels[~held], method, objective)
        maps.append(fitted)
        probs[held] = apply_map(logits[held], fitted)
    return probs, maps


def scores(probs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    return {"ece": expected_calibration_error(probs, labels), "nll": negative_log_likelihood(probs, labels),
            "accuracy": float((probs.argmax(1) == labels).mean()),
            "mean_confidence": float(probs.max(1).mean())}  # fmt: skip


def coverage_curve(probs: np.ndarray, labels: np.ndarray) -> list[dict]:
    """For each threshold: the share of faces whose top probability reaches it, and how often
    those confident labels are right."""
    conf, right = probs.max(1), probs.argmax(1) == labels
    rows = []
    for t in THRESHOLDS:
        kept = conf >= t
        rows.append({"threshold": t, "coverage": float(kept.mean()),
                     "accuracy": float(right[kept].mean()) if kept.any() else None})  # fmt: skip
    return rows


def grouped_accuracy(probs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Accuracy of the summed group probabilities against the faces' true groups."""
    out = {}
    for name in LABEL_GROUPS:
        m = np.asarray(group_matrix(name))
        out[name] = float(((probs @ m.T).argmax(1) == m[:, labels].argmax(0)).mean())
    return out


def main(argv: list[str] | None = None) -> int:
    p = FlagParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--model", type=path_arg, default=DEFAULT_MODEL, help=".pte program with metadata beside it"
    )
    p.add_argument("--data", type=path_arg, default=DEFAULT_DATA, help="FER2013 folder (train/, test/)")
    p.add_argument(
        "--out", type=path_arg, default=None, help="folder of the JSON and PNGs (default: the model's)"
    )
    p.add_argument("--no-write", action="store_true", help="report only; leave the metadata as it is")
    p.add_argument("--threads", type=int, default=2, choices=range(1, 17), metavar="1-16")
    p.add_argument(
        "--method",
        choices=("vector", "temperature"),
        default="vector",
        help="vector: a scale and a bias per class, by NLL (default); temperature: one softmax\n"
        "temperature for all classes",
    )
    p.add_argument(
        "--objective",
        choices=("nll", "ece"),
        default="nll",
        help="what a temperature minimizes: the NLL of all 7 probabilities (default: a proper\n"
        "scoring rule, steadier across folds), or the calibration error of the top score",
    )
    p.add_argument(
        "--uncertain-below", type=float, default=SmoothingConfig().uncertain_below, help="threshold starred"
    )
    args = p.parse_args(argv)
    try:
        classifier = PteClassifier(args.model, threads=args.threads)
        data = load_split(args.data, "public", classifier.spec)
    except (ModelError, DatasetError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out_dir = args.out or args.model.parent
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(f"error: cannot create --out {out_dir} ({exc.strerror}); pass a writable one", file=sys.stderr)
        return 2
    logits = classifier.logits(normalize(data.images, classifier.spec)).astype(np.float64)
    classifier.close()
    labels = data.labels
    raw = softmax_t(logits, 1.0)
    cv_probs, fold_maps = cross_validated_probs(logits, labels, args.method, args.objective)
    chosen = fit_map(logits, labels, args.method, args.objective)
    # Both methods, for the table: what vector scaling adds over one temperature.
    compared = {
        "temperature (nll)": cross_validated_probs(logits, labels, "temperature", "nll")[0],
        "vector scaling (nll)": cross_validated_probs(logits, labels, "vector")[0],
    }
    before, after = scores(raw, labels), scores(cv_probs, labels)
    label = "vector scaling" if args.method == "vector" else f"temperature ({args.objective})"
    curve = coverage_curve(cv_probs, labels)
    groups = grouped_accuracy(cv_probs, labels)
    # A cheap check of the split's stability: the same fit on a stratified half.
    half = stratified_subset(labels, 0.5, 1)
    result = {
        "model": str(args.model),
        "faces": len(labels),
        "accuracy": before["accuracy"],
        "method": label,
        "calibration": chosen,
        "fold_calibrations": fold_maps,
        "half_split_calibration": fit_map(logits[half], labels[half], args.method, args.objective),
        "uncalibrated": before,
        "calibrated_5fold_cv": after,
        "methods_5fold_cv": {name: scores(probs, labels) for name, probs in compared.items()},
        "reliability_bins": {
            "uncalibrated": reliability_bins(raw, labels),
            "calibrated": reliability_bins(cv_probs, labels),
        },  # fmt: skip
        "coverage_curve": curve,
        "grouped_accuracy": groups,
    }
    stem = args.model.stem
    (out_dir / f"{stem}_calibration.json").write_text(json.dumps(result, indent=2) + "\n")
    try:
        plot_reliability(
            {"uncalibrated": (raw, labels), f"{label} (5-fold CV)": (cv_probs, labels)},
            str(out_dir / f"{stem}_reliability.png"),
            "Reliability on PublicTest (int8 .pte)",
        )
        points = [
            (r["threshold"], r["coverage"], r["accuracy"]) for r in curve[::2] if r["accuracy"] is not None
        ]
        title = "Single-face confidence threshold (PublicTest, calibrated)"
        plot_coverage(points, args.uncertain_below, str(out_dir / f"{stem}_coverage.png"), title)
    except ImportError:
        print("plots: skipped (needs matplotlib: pip install 'edge-fer[train]')")
    print(f"model {args.model}: {len(labels)} PublicTest faces, accuracy {before['accuracy'] * 100:.2f}%")
    print(f"{'':<34}{'ECE (15 bins)':>14}{'NLL':>8}{'mean conf':>11}{'accuracy':>10}")
    rows = [("uncalibrated", before), (f"{label}, 5-fold CV", after)]
    rows += [(f"{name}, 5-fold CV", row) for name, row in result["methods_5fold_cv"].items() if row != after]
    for name, row in rows:
        print(
            f"{name:<34}{row['ece'] * 100:>13.2f}%{row['nll']:>8.4f}{row['mean_confidence'] * 100:>10.1f}%"
            f"{row['accuracy'] * 100:>9.2f}%"
        )
    print(f"stored map: {json.dumps(chosen)}")
    print("threshold  coverage  accuracy of the labelled faces")
    for r in curve[4:16]:
        print(f"{r['threshold']:>9.2f}{r['coverage'] * 100:>9.1f}%{(r['accuracy'] or 0) * 100:>9.1f}%")
    print("grouped accuracy: " + ", ".join(f"{k} {v * 100:.2f}%" for k, v in groups.items()))
    if not args.no_write:
        meta = json.loads(metadata_path(args.model).read_text())  # as written, not as parsed
        meta["calibration"] = {
            "method": label,
            **chosen,
            "fit_on": f"PublicTest ({len(labels)} faces); the ECE/NLL below by 5-fold cross-validation",
            "ece_before": round(before["ece"], 4),
            "ece_after": round(after["ece"], 4),
            "nll_before": round(before["nll"], 4),
            "nll_after": round(after["nll"], 4),
        }
        write_metadata(args.model, meta)
        print(f"wrote calibration ({label}) into {args.model.with_suffix('.json')}")
    print(f"report: {out_dir / (stem + '_calibration.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

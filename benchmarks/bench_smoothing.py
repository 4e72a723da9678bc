#!/usr/bin/env python3
"""Smoothing settings on the demo video: label flicker, time to settle, coverage and accuracy
for each `smoothing.window` x `hysteresis` x `uncertain_below`, from one pass of the pipeline.

    .venv/bin/python benchmarks/bench_smoothing.py [--frames 3000] [--model M.pte]

The daemon's own pipeline (default detector, tracker and appearance check) runs once over the
demo video of real PublicTest faces (each held 1.5 s, drifting, with sensor noise), recording
every call it makes to the smoother: the calibrated probabilities of each face in each frame
and each restart. Those calls are then replayed into a fresh `LabelSmoother` per setting, so
every row sees exactly the same faces. Scored as bench_e2e.py scores the daemon's events.
Prints the table and the coverage/accuracy curve of `uncertain_below` at the chosen window
and hysteresis; writes JSON and a PNG of the curve.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
from bench_e2e import HOLD, evaluate, steadiness

from edge_fer.config import DEFAULT_MODEL, Config, SmoothingConfig
from edge_fer.core.paths import DEFAULT_DATA
from edge_fer.core.paths import PROJECT_ROOT as ROOT
from edge_fer.core.user_input import FlagParser, path_arg
from edge_fer.data.demo_video import build_demo_video
from edge_fer.emotions.classifier import ModelError, PteClassifier
from edge_fer.emotions.smooth import LabelSmoother
from edge_fer.evaluation.metrics import plot_coverage
from edge_fer.faces.detect import make_detector
from edge_fer.faces.finder import FaceFinder
from edge_fer.runtime.pipeline import Pipeline
from edge_fer.sources.base import RawFrame

WINDOWS = (1, 7, 15, 30, 45)
HYSTERESES = (0.0, 0.1, 0.2, 0.3)
UNCERTAIN = (0.0, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5)


class SmootherCalls:
    """Stands in for the pipeline's smoother and records what it is asked."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def update(self, face_id: int, probs: np.ndarray) -> tuple[str, float]:
        self.calls.append(("update", face_id, np.array(probs)))
        return "", 0.0

    def forget(self, face_ids: list[int]) -> None:
        self.calls.append(("forget", list(face_ids)))


def record(video: Path, model: Path) -> list[dict]:
    """One pass of the real pipeline: per frame, its smoother calls and its faces."""
    config = Config()
    classifier = PteClassifier(model, threads=1)
    finder = FaceFinder(lambda: make_detector(config.detector), config.detector)
    pipeline = Pipeline(finder, classifier, config.detector, config.tracker, config.smoothing)
    calls = SmootherCalls()
    pipeline.smoother = calls  # type: ignore[assignment]
    frames, cap, index = [], cv2.VideoCapture(str(video)), 0
    while True:
        ok, image = cap.read()
        if not ok:
            break
        start = len(calls.calls)
        result = pipeline.step(RawFrame(image), 0.0, index)
        frames.append({"frame": index, "calls": calls.calls[start:],
                       "faces": [(f.id, list(f.box), f.label) for f in result.faces]})  # fmt: skip
        index += 1
    cap.release()
    classifier.close()
    return frames


def replay(frames: list[dict], window: int, hysteresis: float, uncertain_below: float) -> list[dict]:
    """The events a daemon with these settings would have written for the recorded frames."""
    smoother = LabelSmoother(
        SmoothingConfig(window=window, hysteresis=hysteresis, uncertain_below=uncertain_below)
    )
    events = []
    for fr in frames:
        smoothed = {}
        for call in fr["calls"]:
            if call[0] == "forget":
                smoother.forget(call[1])
            else:
                smoothed[call[1]] = smoother.update(call[1], call[2])[0]
        faces = [
            {"id": i, "box": box, "label": label, "smoothed": smoothed[i]} for i, box, label in fr["faces"]
        ]
        events.append({"frame": fr["frame"], "faces": faces})
    return events


def score(frames: list[dict], truth: dict, window: int, hysteresis: float, uncertain_below: float) -> dict:
    events = replay(frames, window, hysteresis, uncertain_below)
    st = steadiness(events, truth, HOLD, truth["fps"])
    ev = evaluate(events, truth)
    return {"window": window, "hysteresis": hysteresis, "uncertain_below": uncertain_below, **st,
            "raw_accuracy": ev["raw_accuracy"], "smoothed_accuracy": ev["smoothed_accuracy"]}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = FlagParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", type=path_arg, default=DEFAULT_DATA)
    p.add_argument("--model", type=path_arg, default=DEFAULT_MODEL)
    p.add_argument("--frames", type=int, default=3000, choices=range(HOLD, 100_001), metavar="N")
    p.add_argument("--json", type=path_arg, default=ROOT / "benchmarks" / "results" / "smoothing.json")
    args = p.parse_args(argv)
    if not (args.data / "test").is_dir():
        print(f"error: FER2013 not found at {args.data}; pass --data", file=sys.stderr)
        return 2
    defaults = Config().smoothing
    with tempfile.TemporaryDirectory() as tmp:
        video = Path(tmp) / "faces.mp4"
        truth = build_demo_video(args.data, video, args.frames, 2, hold=HOLD, seed=7)
        try:
            frames = record(video, args.model)
        except ModelError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    grid = [score(frames, truth, w, h, u) for w, h, u in itertools.product(WINDOWS, HYSTERESES, (0.0,))]
    curve = [score(frames, truth, defaults.window, defaults.hysteresis, u) for u in UNCERTAIN]
    columns = ("window", "hyst", "uncert", "changes/face-min", "settle p50/p90 s", "coverage", "named acc",
               "per-frame", "smoothed")  # fmt: skip
    head = "| " + " | ".join(columns) + " |"
    print(f"{truth['frames']} frames, {truth['faces']} faces each, held {HOLD} frames; model {args.model}")
    print(head)
    for r in grid + [None] + curve:
        if r is None:
            print("|" + "-" * (len(head) - 2) + "|")
            continue
        cells = (
            f"{r['window']:>6}",
            f"{r['hysteresis']:>4g}",
            f"{r['uncertain_below']:>6g}",
            f"{r['changes_per_face_minute'] or 0:>16.2f}",
            f"{r['settle_p50_s'] or 0:>7.2f} / {r['settle_p90_s'] or 0:>6.2f}",
            f"{r['coverage'] * 100:>7.1f}%",
            f"{r['named_accuracy'] * 100:>8.1f}%",
            f"{r['raw_accuracy'] * 100:>8.1f}%",
            f"{r['smoothed_accuracy'] * 100:>7.1f}%",
        )
        print("| " + " | ".join(cells) + " |")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    try:
        points = [(r["uncertain_below"], r["coverage"], r["named_accuracy"]) for r in curve]
        title = f"smoothing.uncertain_below (window {defaults.window}, hysteresis {defaults.hysteresis:g})"
        plot_coverage(
            points, defaults.uncertain_below, str(args.json.with_suffix(".png")), title, "face-frames"
        )
    except ImportError:
        print("plot: skipped (needs matplotlib)")
    args.json.write_text(json.dumps({"model": str(args.model), "frames": truth["frames"], "hold": HOLD,
                                     "defaults": vars(defaults), "grid": grid, "uncertain_curve": curve},
                                    indent=2) + "\n")  # fmt: skip
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

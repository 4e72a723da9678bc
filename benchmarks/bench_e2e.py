#!/usr/bin/env python3
"""End-to-end accuracy: the daemon's labels on a video of real faces against the same faces'
crop accuracy, per detector, and the crop margin that closes the gap.

    python benchmarks/bench_e2e.py [--frames 9000] [--faces 2] [--margins 0,0.1,0.2,0.3]
                                    [--detectors haar,yunet]

The demo video composites FER2013 PublicTest faces (known labels, known boxes) into moving
frames. For each detector the real `edge-fer` daemon runs over it once (1 thread, the default
detection settings or --config's) with its events on; each true face is matched to the daemon's face whose box
holds its centre. Reported per detector: recall, fps, accuracy of the raw and the smoothed
label on found faces, and the crop accuracy of the same faces (the model on the 48x48
originals). Then, for the detector's own boxes, the accuracy each crop margin would give:
the margin is part of the model's preprocessing metadata. Writes
benchmarks/results/e2e.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
from common import daemon_command

from edge_fer.config import DEFAULT_MODEL, ConfigError, load_config
from edge_fer.labels import EMOTIONS
from edge_fer.paths import DEFAULT_DATA, DEFAULT_YUNET
from edge_fer.paths import PROJECT_ROOT as ROOT


def run_daemon(
    video: Path, model: Path, detector: str, workdir: Path, config: Path | None = None
) -> tuple[list[dict], dict]:
    events, report = workdir / f"{detector}.jsonl", workdir / f"{detector}.json"
    cmd = daemon_command(
        video, workdir / "stats.json", "--no-loop", "--model", str(model), "--threads", "1",
        "--detector", detector, "--events-jsonl", str(events), "--report-json", str(report),
    )  # fmt: skip
    if config is not None:
        cmd += ["--config", str(config)]
    if detector == "yunet":
        cmd += ["--yunet-model", str(DEFAULT_YUNET)]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"the daemon failed with {detector}: {done.stderr[-800:]}")
    return ([json.loads(line) for line in events.read_text().splitlines()], json.loads(report.read_text()))


def match(truth_box: list[int], faces: list[dict]) -> dict | None:
    """The daemon face whose box contains the true face's centre (the nearest if several)."""
    cx, cy = truth_box[0] + truth_box[2] / 2, truth_box[1] + truth_box[3] / 2
    best, best_d = None, float("inf")
    for f in faces:
        x, y, w, h = f["box"]
        if x <= cx <= x + w and y <= cy <= y + h:
            d = (x + w / 2 - cx) ** 2 + (y + h / 2 - cy) ** 2
            if d < best_d:
                best, best_d = f, d
    return best


def evaluate(events: list[dict], truth: dict) -> dict:
    found = raw_ok = smooth_ok = total = 0
    pairs = []  # (frame, detected box, true label) for the margin sweep
    for e in events:
        i = e["frame"]
        for label, box in zip(truth["labels"][i], truth["boxes"][i], strict=True):
            total += 1
            face = match(box, e["faces"])
            if face is None:
                continue
            found += 1
            raw_ok += face["label"] == label
            smooth_ok += face["smoothed"] == label
            pairs.append((i, face["box"], label))
    return {
        "faces": total,
        "found": found,
        "recall": found / total if total else 0.0,
        "raw_accuracy": raw_ok / found if found else 0.0,
        "smoothed_accuracy": smooth_ok / found if found else 0.0,
        "pairs": pairs,
    }


def crop_accuracy(
    classifier, truth: dict, faces_by_source: dict[str, np.ndarray], frames: list[int] | None = None
) -> float:
    """The model on the original 48x48 FER faces shown in `frames` (all by default)."""
    ok = n = 0
    cache: dict[str, str] = {}
    for i in frames if frames is not None else range(truth["frames"]):
        for label, source in zip(truth["labels"][i], truth["sources"][i], strict=True):
            if source not in cache:
                probs = classifier.classify_batch(faces_by_source[source][None])
                cache[source] = EMOTIONS[int(probs.argmax())]
            ok += cache[source] == label
            n += 1
    return ok / n if n else 0.0


def margin_sweep(classifier, video: Path, pairs: list, margins: list[float]) -> dict[str, float]:
    """Accuracy of the daemon's boxes cropped with each margin (same frames, same model)."""
    from dataclasses import replace

    from edge_fer.preprocess import prepare_face

    by_frame: dict[int, list] = {}
    for i, box, label in pairs:
        by_frame.setdefault(i, []).append((tuple(box), label))
    correct = {m: 0 for m in margins}
    cap = cv2.VideoCapture(str(video))
    index = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        for box, label in by_frame.get(index, []):
            for m in margins:
                face = prepare_face(frame, replace(classifier.spec, margin=m), box)
                correct[m] += EMOTIONS[int(classifier.classify_batch(face[None]).argmax())] == label
        index += 1
    cap.release()
    return {f"{m:g}": correct[m] / len(pairs) if pairs else 0.0 for m in margins}


def main(argv: list[str] | None = None) -> int:
    from edge_fer.classify import PteClassifier
    from edge_fer.dataset import load_split
    from edge_fer.demo import build_demo_video

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    p.add_argument("--frames", type=int, default=9000)
    p.add_argument("--faces", type=int, default=2)
    p.add_argument("--margins", default="0,0.1,0.2,0.3")
    p.add_argument("--detectors", default="haar,yunet", help="comma list of haar, yunet")
    p.add_argument("--config", type=Path, help="the daemon's config file (default: its defaults)")
    p.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "e2e.json")
    args = p.parse_args(argv)
    if not (args.data / "test").is_dir():
        print(f"error: FER2013 not found at {args.data}; pass --data", file=sys.stderr)
        return 2
    try:
        margins = [float(m) for m in args.margins.split(",")]
    except ValueError:
        print(f"error: --margins takes comma-separated numbers, got {args.margins!r}", file=sys.stderr)
        return 2
    detectors = [d for d in args.detectors.split(",") if d]
    if not detectors or set(detectors) - {"haar", "yunet"}:
        print(f"error: --detectors takes haar and/or yunet, got {args.detectors!r}", file=sys.stderr)
        return 2
    if "yunet" in detectors and not DEFAULT_YUNET.is_file():
        print(f"error: the YuNet model is missing at {DEFAULT_YUNET}; reinstall edge-fer", file=sys.stderr)
        return 2
    try:
        daemon_config = load_config(args.config)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    detection, smoothing = daemon_config.detector, daemon_config.smoothing
    classifier = PteClassifier(args.model, threads=1)
    public = load_split(args.data, "public", classifier.spec)
    faces_by_source = dict(zip(public.sources, public.images, strict=True))
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        video = workdir / "faces.mp4"
        truth = build_demo_video(args.data, video, args.frames, args.faces, hold=30, seed=7)
        crop_all = crop_accuracy(classifier, truth, faces_by_source)
        for detector in detectors:
            print(f"running the daemon with {detector} ...", file=sys.stderr, flush=True)
            events, report = run_daemon(video, args.model, detector, workdir, args.config)
            r = evaluate(events, truth)
            found_frames = sorted({i for i, _, _ in r["pairs"]})
            r["crop_accuracy_same_frames"] = crop_accuracy(classifier, truth, faces_by_source, found_frames)
            r["margins"] = margin_sweep(classifier, video, r.pop("pairs"), margins)
            r["fps"] = report["fps"]
            r["gap_points"] = 100 * (r["crop_accuracy_same_frames"] - r["smoothed_accuracy"])
            results[detector] = r
    print(
        f"crop accuracy of all {args.faces * args.frames} shown faces: {crop_all * 100:.1f}%"
        f" (model margin {classifier.spec.margin:g})"
    )
    print(
        f"| {'detector':<8} | {'recall':>7} | {'fps':>6} | {'raw':>6} | {'smoothed':>8} | "
        f"{'crop':>6} | {'gap pt':>6} | margins " + " ".join(f"{m:g}" for m in margins) + " |"
    )
    for d, r in results.items():
        sweep = " ".join(f"{v * 100:.1f}" for v in r["margins"].values())
        print(
            f"| {d:<8} | {r['recall'] * 100:6.1f}% | {r['fps']:6.1f} | "
            f"{r['raw_accuracy'] * 100:5.1f}% | {r['smoothed_accuracy'] * 100:7.1f}% | "
            f"{r['crop_accuracy_same_frames'] * 100:5.1f}% | {r['gap_points']:6.1f} | {sweep} |"
        )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {
                "model": str(args.model),
                "margin": classifier.spec.margin,
                "frames": args.frames,
                "faces_per_frame": args.faces,
                "daemon_config": str(args.config) if args.config else None,
                "detection": {
                    "detect_width": detection.detect_width,
                    "every_n_frames": detection.every_n_frames,
                },
                "smoothing": {"window": smoothing.window, "restart_below": smoothing.restart_below},
                "crop_accuracy_all": crop_all,
                "detectors": results,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

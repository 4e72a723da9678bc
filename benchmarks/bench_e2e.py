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
import dataclasses
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
import yaml
from common import daemon_command

from edge_fer.config import DEFAULT_MODEL, ConfigError, load_config
from edge_fer.core.paths import DEFAULT_DATA, DEFAULT_YUNET
from edge_fer.core.paths import PROJECT_ROOT as ROOT
from edge_fer.core.user_input import FlagParser, path_arg
from edge_fer.emotions.labels import EMOTIONS

# Each shown face stays 1.5 s (at the video's 30 fps), drifting, as a person holds an expression.
HOLD = 45


def without_uncertain(config: Path | None) -> dict:
    """The daemon config of `config` (or the defaults) with `uncertain` switched off."""
    data = yaml.safe_load(config.read_text()) if config is not None else None
    data = data if isinstance(data, dict) else {}
    data.setdefault("smoothing", {})["uncertain_below"] = 0.0
    return data


def run_daemon(
    video: Path, model: Path, detector: str, workdir: Path, config: Path | None = None, tag: str = "defaults"
) -> tuple[list[dict], dict]:
    """The daemon's events and report for one pass over `video`. Each (detector, tag) gets its
    own files: the events output appends, as a long-running daemon's should."""
    events, report = workdir / f"{detector}-{tag}.jsonl", workdir / f"{detector}-{tag}.json"
    if events.exists():
        raise SystemExit(f"bench_e2e: {events} is already there; give each daemon run its own tag")
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


def steadiness(events: list[dict], truth: dict, hold: int, fps: float) -> dict:
    """How steady and quick the published (smoothed) label is, per shown face.

    A shown face is one slot of the video for one `hold`-frame stretch. Its label "settles"
    at the first frame that shows the label the daemon gives it most often; reported: the time
    from the face's first frame to that (p50/p90), the label changes after it per face-minute
    (a change to or from `uncertain` counts), and the share of frames given a label (not
    `uncertain`) with the accuracy of those labels.
    """
    by_face: dict[tuple[int, int], list[tuple[int, str, str]]] = {}
    for e in events:
        i = e["frame"]
        for slot, (label, box) in enumerate(zip(truth["labels"][i], truth["boxes"][i], strict=True)):
            face = match(box, e["faces"])
            if face is not None:
                by_face.setdefault((slot, i // hold), []).append((i, face["smoothed"], label))
    settle, changes, minutes, named, named_ok, n = [], 0, 0.0, 0, 0, 0
    for (_, block), seq in by_face.items():
        labels = [s for _, s, _ in seq]
        n += len(seq)
        named += sum(s != "uncertain" for s in labels)
        named_ok += sum(s == t for _, s, t in seq)
        if len(seq) < hold // 3:  # mostly missed by the detector: no steadiness to speak of
            continue
        modal = max(set(labels), key=labels.count)
        k = labels.index(modal)
        settle.append((seq[k][0] - block * hold) / fps)
        changes += sum(a != b for a, b in zip(labels[k:], labels[k + 1 :], strict=False))
        minutes += (seq[-1][0] - seq[k][0] + 1) / fps / 60
    return {
        "faces": len(settle),
        "settle_p50_s": float(np.percentile(settle, 50)) if settle else None,
        "settle_p90_s": float(np.percentile(settle, 90)) if settle else None,
        "changes_per_face_minute": changes / minutes if minutes else None,
        "coverage": named / n if n else 0.0,
        "named_accuracy": named_ok / named if named else 0.0,
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

    from edge_fer.emotions.preprocess import prepare_face

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
    from edge_fer.data.demo_video import build_demo_video
    from edge_fer.data.fer2013 import load_split
    from edge_fer.emotions.classifier import PteClassifier

    p = FlagParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", type=path_arg, default=DEFAULT_DATA)
    p.add_argument("--model", type=path_arg, default=DEFAULT_MODEL)
    p.add_argument("--frames", type=int, default=9000)
    p.add_argument("--faces", type=int, default=2)
    p.add_argument("--margins", default="0,0.1,0.2,0.3")
    p.add_argument("--detectors", default="haar,yunet", help="comma list of haar, yunet")
    p.add_argument("--config", type=path_arg, help="the daemon's config file (default: its defaults)")
    p.add_argument("--json", type=path_arg, default=ROOT / "benchmarks" / "results" / "e2e.json")
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
        truth = build_demo_video(args.data, video, args.frames, args.faces, hold=HOLD, seed=7)
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
            r["steadiness"] = steadiness(events, truth, HOLD, truth["fps"])
            # The same run with `uncertain` off: smoothed labels against per-frame ones, like for like.
            plain_config = workdir / "no_uncertain.yaml"
            plain_config.write_text(yaml.safe_dump(without_uncertain(args.config)))
            plain, _ = run_daemon(video, args.model, detector, workdir, plain_config, tag="no-uncertain")
            p = evaluate(plain, truth)
            r["always_named"] = {k: p[k] for k in ("raw_accuracy", "smoothed_accuracy")}
            r["always_named"]["gain_points"] = 100 * (p["smoothed_accuracy"] - p["raw_accuracy"])
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
    print(
        f"| {'detector':<8} | {'changes/face-min':>16} | {'settle p50':>10} | {'settle p90':>10} | "
        f"{'coverage':>8} | {'named acc':>9} | {'per-frame':>9} | {'smoothed':>8} | {'gain pt':>7} |"
    )
    for d, r in results.items():
        st, an = r["steadiness"], r["always_named"]
        cells = [
            f"{st['changes_per_face_minute'] or 0:16.2f}",
            f"{st['settle_p50_s'] or 0:9.2f}s",
            f"{st['settle_p90_s'] or 0:9.2f}s",
            f"{st['coverage'] * 100:7.1f}%",
            f"{st['named_accuracy'] * 100:8.1f}%",
            f"{an['raw_accuracy'] * 100:8.1f}%",
            f"{an['smoothed_accuracy'] * 100:7.1f}%",
            f"{an['gain_points']:7.1f}",
        ]
        print(f"| {d:<8} | " + " | ".join(cells) + " |")
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
                "smoothing": dataclasses.asdict(smoothing),
                "hold_frames": HOLD,
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

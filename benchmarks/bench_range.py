#!/usr/bin/env python3
"""Range: how far from the camera edge-fer finds and reads faces.

    python benchmarks/bench_range.py [--sizes 20,24,32,48,64,96,128] [--faces 4]
                                     [--hold 90] [--frames 450] [--configs default,full]

Two parts, one JSON (benchmarks/results/range.json):

1. **Reading by face size.** Every PublicTest face shrunk to S px (what a face S px tall in
   the frame gives the classifier) and classified by the shipped model: accuracy and macro-F1
   per size. This curve sets `smoothing.min_readable_px`.
2. **Finding and reading in a room.** Synthetic rooms at 1920x1080 and at the Pi's default
   main size (2304x1296): `--faces` real PublicTest faces per frame, each in an oval head with
   context (`edge_fer.data.demo_video.face_patch`), at one size per video, drifting slowly, new people
   every `--hold` frames; each stretch of people goes through one camera condition of
   `bench_robustness` applied to the whole frame (clean, sensor noise, two stops under,
   defocus, JPEG 20). The real `edge-fer` daemon runs over each video (1 thread, `--pace fast`)
   with the default config and with full-resolution detection on every frame (the reference
   the range targets are set against). Per size: recall (a true face counts as found when a
   daemon box holds its centre and is 0.5-2x its size), false faces per frame, the share of
   found faces given a label (not `uncertain`), the accuracy of those labels, fps and peak RSS.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import yaml
from common import daemon_command

from edge_fer.core.paths import DEFAULT_DATA
from edge_fer.core.paths import PROJECT_ROOT as ROOT
from edge_fer.core.user_input import FlagParser, file_arg, path_arg

RESOLUTIONS = {"1080p": (1920, 1080), "pi": (2304, 1296)}
# Cameras for the distance table: (rooms measured at, width in px, horizontal field of view):
# the Camera Module 3 at its default main size (the 2x2-binned mode keeps the whole field) with
# the standard and the wide lens, and a typical 1080p USB webcam.
CAMERAS = {
    "Camera Module 3 (66 deg), 2304x1296": ("pi", 2304, 66.0),
    "Camera Module 3 Wide (102 deg), 2304x1296": ("pi", 2304, 102.0),
    "1080p webcam (70 deg)": ("1080p", 1920, 70.0),
}
DISTANCES = (1.0, 2.0, 3.0, 4.0, 5.0, 7.0, 10.0)
FACE_M = 0.16  # a face's height, brow to chin, as FER2013 crops it
CONDITIONS = ("clean", "noise", "dark", "defocus", "jpeg")
# Frame-level strengths: bench_robustness's, applied to the whole frame as a camera would.
STRENGTHS = {"noise": 0.06, "dark": 0.25, "defocus": 1.5, "jpeg": 20.0}
CONFIGS = {
    # The daemon's defaults.
    "default": {},
    # The reference: the detector on the whole frame at full resolution, every frame.
    "full": {"detector": {"detect_width": 8192, "every_n_frames": 1, "tile_zoom": 0, "track_zoom_px": 0}},
    # No tiles: tracked faces are still followed in zoomed windows, new ones found by the coarse
    # pass only (faces of ~150 px and up on 1080p); the cheapest.
    "near": {"detector": {"tile_zoom": 0}},
    # Tiles zoomed 1.5x: faces from ~32 px, cheaper tiles than the default's 2x.
    "mid": {"detector": {"tile_zoom": 1.5, "tile_size": 320}},
}


def read_by_size(model: Path, data: Path, sizes: list[int]) -> dict:
    """Accuracy of the model on PublicTest faces shrunk to each size (then cropped as the daemon
    crops a face of that size)."""
    from edge_fer.data.fer2013 import load_split
    from edge_fer.emotions.classifier import PteClassifier
    from edge_fer.emotions.preprocess import PreprocessSpec, prepare_face
    from edge_fer.evaluation.metrics import confusion_matrix, summarize

    faces = load_split(data, "public", PreprocessSpec(input_size=48))
    classifier = PteClassifier(model, threads=1)
    out = {}
    for size in sizes:
        preds = []
        for start in range(0, len(faces), 256):
            crops = []
            for img in faces.images[start : start + 256]:
                small = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA) if size < 48 else img
                small = cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC) if size > 48 else small
                crops.append(prepare_face(small, classifier.spec, (0, 0, size, size)))
            preds.append(np.argmax(classifier.classify_batch(np.stack(crops)), axis=1))
        pred = np.concatenate(preds)
        out[str(size)] = {
            "accuracy": float(np.mean(pred == faces.labels)),
            "macro_f1": float(summarize(confusion_matrix(faces.labels, pred))["macro_f1"]),
        }
    classifier.close()
    return out


def min_readable(read: dict) -> int | None:
    """The smallest face size whose accuracy is within 10 points of 48 px faces' (FER2013's)."""
    ref = read.get("48", {}).get("accuracy")
    if ref is None:
        return None
    ordered = sorted(read.items(), key=lambda kv: int(kv[0]))
    return next((int(s) for s, v in ordered if v["accuracy"] >= ref - 0.10), None)


PI_MAIN_SIZES = ((640, 480), (1536, 864), (2304, 1296))


def camera_cost(model: Path, video: Path, frames: int = 150) -> list[dict]:
    """What a bigger picamera2 main stream costs: the pipeline (default config, real model, one
    thread) on frames already in memory, as picamera2 hands them over (main BGR + the lores Y
    plane), for each main size; and the main stream's four buffers' memory."""
    from edge_fer.config import Config
    from edge_fer.emotions.classifier import PteClassifier
    from edge_fer.faces.detect import make_detector
    from edge_fer.faces.finder import FaceFinder
    from edge_fer.runtime.pipeline import Pipeline
    from edge_fer.sources.base import RawFrame

    cap, source = cv2.VideoCapture(str(video)), []
    while len(source) < frames:
        ok, image = cap.read()
        if not ok:
            break
        source.append(image)
    cap.release()
    classifier = PteClassifier(model, threads=1)
    rows = []
    for main in PI_MAIN_SIZES:
        config = Config()
        config.camera.main_size = main
        lores = config.camera.lores
        raws = []
        for image in source:
            big = cv2.resize(image, main, interpolation=cv2.INTER_AREA)
            small = cv2.resize(big, lores, interpolation=cv2.INTER_AREA)
            raws.append(RawFrame(big, cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)))
        finder = FaceFinder(lambda c=config: make_detector(c.detector), config.detector)
        pipeline = Pipeline(finder, classifier, config.detector, config.tracker, config.smoothing)
        times, faces = [], 0
        for i, raw in enumerate(raws):
            t = time.perf_counter()
            result = pipeline.step(raw, 0.0, i)
            times.append(time.perf_counter() - t)
            faces += len(result.faces)
        ms = float(np.median(times[10:]) * 1e3)
        rows.append(
            {"main": list(main), "lores": list(lores), "pipeline_ms_p50": ms, "pipeline_fps": 1000 / ms,
             "faces_per_frame": faces / len(raws), "buffers_mb": 4 * main[0] * main[1] * 3 / 2**20}
        )  # fmt: skip
    classifier.close()
    return rows


def degrade_frame(gray: np.ndarray, condition: str, seed: int) -> np.ndarray:
    """One camera condition over a whole gray frame (bench_robustness's strengths)."""
    if condition == "clean":
        return gray
    import torch

    from edge_fer.training.degrade import degrade

    kind = {"noise": "noise", "dark": "dark", "defocus": "defocus", "jpeg": "jpeg"}[condition]
    x = torch.from_numpy(gray).float().view(1, 1, *gray.shape) / 255.0
    y = degrade(x, kind, STRENGTHS[condition], torch.Generator().manual_seed(seed))
    return torch.round(y[0, 0] * 255).clamp(0, 255).to(torch.uint8).numpy()


def room_background(size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A plain room: a lit wall, a floor, a few boxes of furniture, fine texture."""
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    wall = 120 + 35 * np.cos(xx / w * 3.1) - 20 * (yy / h)
    wall[yy > h * 0.7] = 70 + 20 * np.sin(xx[yy > h * 0.7] / 37.0)
    for _ in range(6):
        x0, y0 = int(rng.integers(0, w - w // 6)), int(rng.integers(h // 3, h - h // 8))
        bh, bw = int(rng.integers(h // 12, h // 4)), int(rng.integers(w // 20, w // 6))
        wall[y0 : y0 + bh, x0 : x0 + bw] = rng.integers(40, 200)
    return np.clip(wall + rng.normal(0, 4, wall.shape), 0, 255).astype(np.uint8)


def room_video(data: Path, out: Path, size: tuple[int, int], face_px: int, faces: int, frames: int, hold: int,
               seed: int) -> dict:  # fmt: skip
    """Write the room video (MJPG) and return its truth: per frame, labels and FER boxes."""
    from edge_fer.data.demo_video import face_patch
    from edge_fer.data.fer2013 import load_split
    from edge_fer.emotions.labels import EMOTIONS
    from edge_fer.emotions.preprocess import PreprocessSpec

    faceset = load_split(data, "public", PreprocessSpec(input_size=48))
    rng = np.random.default_rng(seed)
    w, h = size
    background = room_background(size, rng)
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"MJPG"), 30, (w, h))
    if not writer.isOpened():
        raise SystemExit(f"bench_range: cannot write {out}")
    labels, boxes, conditions = [], [], []
    people: list[tuple[int, np.ndarray, int, int]] = []
    for i in range(frames):
        stretch = i // hold
        if i % hold == 0:  # new people at new places, none overlapping another
            people, taken = [], []
            patch_px = face_px + 2 * (face_px // 3)
            margin = max(8, face_px // 2)
            while len(people) < faces:
                x0 = int(rng.integers(margin, w - patch_px - margin))
                y0 = int(rng.integers(margin, h - patch_px - margin))
                if any(abs(x0 - a) < patch_px + margin and abs(y0 - b) < patch_px + margin for a, b in taken):
                    continue
                taken.append((x0, y0))
                k = int(rng.integers(0, len(faceset)))
                people.append((k, face_patch(faceset.images[k], face_px), x0, y0))
        frame = background.copy()
        frame_labels, frame_boxes = [], []
        for slot, (k, patch, x0, y0) in enumerate(people):
            drift = max(2, face_px // 4)  # a person shifting a little as they sit or stand
            dx = int(round(drift * np.sin(i / 40.0 + slot)))
            dy = int(round(drift * 0.5 * np.cos(i / 55.0 + slot)))
            x, y = min(max(0, x0 + dx), w - patch.shape[1]), min(max(0, y0 + dy), h - patch.shape[0])
            frame[y : y + patch.shape[0], x : x + patch.shape[1]] = patch
            pad = (patch.shape[1] - face_px) // 2
            frame_labels.append(EMOTIONS[faceset.labels[k]])
            frame_boxes.append([x + pad, y + pad, face_px, face_px])
        condition = CONDITIONS[stretch % len(CONDITIONS)]
        frame = degrade_frame(frame, condition, seed * 100000 + i)
        writer.write(cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR))
        labels.append(frame_labels)
        boxes.append(frame_boxes)
        conditions.append(condition)
    writer.release()
    return {
        "labels": labels,
        "boxes": boxes,
        "conditions": conditions,
        "size": list(size),
        "face_px": face_px,
    }


def found_face(truth_box: list[int], faces: list[dict]) -> dict | None:
    """The daemon face whose box holds the true face's centre and is 0.5-2x its size (nearest)."""
    cx, cy = truth_box[0] + truth_box[2] / 2, truth_box[1] + truth_box[3] / 2
    best, best_d = None, float("inf")
    for f in faces:
        x, y, bw, bh = f["box"]
        if x <= cx <= x + bw and y <= cy <= y + bh and 0.5 <= bw / truth_box[2] <= 2.0:
            d = (x + bw / 2 - cx) ** 2 + (y + bh / 2 - cy) ** 2
            if d < best_d:
                best, best_d = f, d
    return best


def score(events: list[dict], truth: dict, hold: int) -> dict:
    """Recall, false faces per frame, labelled share and accuracy of the labels, per condition;
    and identity swaps: a daemon face id given to two different people (people change every
    `hold` frames)."""
    people_of: dict[int, set[tuple[int, int]]] = {}
    per: dict[str, dict[str, int]] = {}
    for e in events:
        i = e["frame"]
        c = per.setdefault(
            truth["conditions"][i], dict(faces=0, found=0, named=0, right=0, false=0, frames=0)
        )
        c["frames"] += 1
        matched = set()
        for slot, (label, box) in enumerate(zip(truth["labels"][i], truth["boxes"][i], strict=True)):
            c["faces"] += 1
            face = found_face(box, e["faces"])
            if face is None:
                continue
            matched.add(face["id"])
            people_of.setdefault(face["id"], set()).add((i // hold, slot))
            c["found"] += 1
            if face["smoothed"] != "uncertain":
                c["named"] += 1
                c["right"] += face["smoothed"] == label
        c["false"] += sum(f["id"] not in matched for f in e["faces"])

    def rates(c: dict) -> dict:
        return {
            "recall": c["found"] / max(1, c["faces"]),
            "false_per_frame": c["false"] / max(1, c["frames"]),
            "named": c["named"] / max(1, c["found"]),
            "accuracy": c["right"] / c["named"] if c["named"] else None,
        }

    total = {
        k: sum(c[k] for c in per.values()) for k in ("faces", "found", "named", "right", "false", "frames")
    }
    swaps = sum(len(people) - 1 for people in people_of.values())
    return {**rates(total), "id_swaps": swaps, "conditions": {name: rates(c) for name, c in per.items()}}


def run_daemon(video: Path, model: Path, config: dict, workdir: Path, tag: str) -> tuple[list[dict], dict]:
    """The real daemon over `video` with `config` (a dict of sections): its events and report."""
    cfg, events, report = workdir / f"{tag}.yaml", workdir / f"{tag}.jsonl", workdir / f"{tag}.report.json"
    cfg.write_text(yaml.safe_dump(config or {"log_level": "WARNING"}))
    cmd = daemon_command(
        video, workdir / f"{tag}.stats.json", "--config", str(cfg), "--no-loop", "--model", str(model),
        "--threads", "1", "--events-jsonl", str(events), "--report-json", str(report),
    )  # fmt: skip
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"bench_range: the daemon failed ({tag}): {done.stderr[-800:]}")
    return [json.loads(line) for line in events.read_text().splitlines()], json.loads(report.read_text())


def _vs_full(recall: float, full: float | None) -> str:
    """Recall as a share of full resolution's; "-" where full resolution found almost nothing
    (a ratio to ~0 says nothing)."""
    return f"{recall / full:.2f}" if full and full >= 0.05 else "-"


def format_tables(results: dict) -> str:
    lines = ["Reading: accuracy of the shipped model by face size (PublicTest, clean)", ""]
    read = results["read_by_size"]
    lines.append("  size px  " + "".join(f"{s:>8}" for s in read))
    lines.append("  accuracy " + "".join(f"{v['accuracy'] * 100:>7.1f}%" for v in read.values()))
    lines.append("  macro-F1 " + "".join(f"{v['macro_f1'] * 100:>7.1f}%" for v in read.values()))
    lines.append(f"  min_readable_px (first size within 10 points of 48 px): {results['min_readable_px']}")
    for res, rows in results["rooms"].items():
        w, h = RESOLUTIONS[res]
        lines += ["", f"Finding and reading: {w}x{h}, {results['faces']} faces per frame", ""]
        lines.append(
            f"  {'face px':>7}  {'config':<8} {'recall':>6} {'vs full':>7} {'false/fr':>8} {'named':>6}"
            f" {'accuracy':>8} {'id swaps':>8} {'fps':>6} {'RSS MB':>6}"
        )
        for size, by_config in rows.items():
            full = by_config.get("full", {}).get("recall")
            for name, r in by_config.items():
                vs = _vs_full(r["recall"], full)
                acc = f"{r['accuracy'] * 100:.1f}%" if r["accuracy"] is not None else "-"
                name = name + ("*" if "kept_from" in r else "")
                lines.append(
                    f"  {size:>7}  {name:<8} {r['recall']:>6.2f} {vs:>7} {r['false_per_frame']:>8.2f}"
                    f" {r['named'] * 100:>5.0f}% {acc:>8} {r['id_swaps']:>8} {r['fps']:>6.1f}"
                    f" {r['peak_rss_mb'] or 0:>6.0f}"
                )
    for r in results.get("camera_cost", []):
        main, lores = "x".join(map(str, r["main"])), "x".join(map(str, r["lores"]))
        lines.append(
            f"  picamera2 main {main} (lores {lores}): pipeline {r['pipeline_ms_p50']:.1f} ms/frame,"
            f" {r['faces_per_frame']:.2f} faces/frame, main buffers {r['buffers_mb']:.0f} MB"
        )
    if results.get("distances"):
        lines += [
            "",
            "How far it sees (a 16 cm face; recall of the default config, accuracy of the read curve)",
            "",
        ]
        lines.append(f"  {'camera':<46} " + "".join(f"{d:>6g} m" for d in DISTANCES))
        for camera, row in results["distances"].items():
            lines.append(f"  {camera + ', face px':<46} " + "".join(f"{c['px']:>8.0f}" for c in row))
            lines.append(f"  {'  recall':<46} " + "".join(f"{_pct(c['recall']):>8}" for c in row))
            lines.append(
                f"  {'  accuracy (uncertain below min_readable)':<46} "
                + "".join(f"{_pct(c['accuracy']):>8}" for c in row)
            )
    return "\n".join(lines)


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v * 100:.0f}%"


def face_px(width_px: int, hfov_deg: float, distance_m: float, face_m: float = FACE_M) -> float:
    """Pixels across a face `face_m` tall at `distance_m` from a camera `width_px` wide with a
    horizontal field of view of `hfov_deg` (a pinhole camera, square pixels)."""
    focal_px = width_px / 2 / math.tan(math.radians(hfov_deg) / 2)
    return focal_px * face_m / distance_m


def _interp(x: float, points: dict[int, float | None]) -> float | None:
    """Linear in log face size between measured sizes; None below the smallest (not measured),
    the largest's value above it."""
    known = sorted((k, v) for k, v in points.items() if v is not None)
    if not known or x < known[0][0]:
        return None
    for (a, va), (b, vb) in zip(known, known[1:], strict=False):
        if a <= x <= b:
            t = (math.log(x) - math.log(a)) / (math.log(b) - math.log(a))
            return va + t * (vb - va)
    return known[-1][1]


def distance_table(results: dict, min_readable_px: int) -> dict:
    """Per camera, per distance: face px, the default config's recall there (from the rooms at
    that camera's resolution) and the read curve's accuracy (None where faces are uncertain)."""
    read = {int(k): v["accuracy"] for k, v in results["read_by_size"].items()}
    out = {}
    for camera, (res, width, hfov) in CAMERAS.items():
        rows = results["rooms"].get(res)
        if not rows:
            continue
        recall = {int(k): v.get("default", {}).get("recall") for k, v in rows.items()}
        out[camera] = []
        for d in DISTANCES:
            px = face_px(width, hfov, d)
            out[camera].append(
                {"distance_m": d, "px": px, "recall": _interp(px, recall),
                 "accuracy": _interp(px, read) if px >= min_readable_px else None}
            )  # fmt: skip
    return out


def markdown(results: dict) -> dict[str, str]:
    """The docs' tables from the results: 'distances' (per camera), 'sizes' (1080p rooms by face
    size and config) and 'read' (accuracy by face size)."""
    out = {}
    dist = results.get("distances", {})
    if dist:
        head = "| camera | " + " | ".join(f"{d:g} m" for d in DISTANCES) + " |"
        rows = [head, "|---" * (len(DISTANCES) + 1) + "|"]
        for camera, row in dist.items():
            rows.append(f"| {camera}: face px | " + " | ".join(f"{c['px']:.0f}" for c in row) + " |")
            rows.append("| found (recall) | " + " | ".join(_pct(c["recall"]) for c in row) + " |")
            rows.append("| read (accuracy) | " + " | ".join(_pct(c["accuracy"]) for c in row) + " |")
        out["distances"] = "\n".join(rows)
    rooms = results.get("rooms", {}).get("1080p", {})
    if rooms:
        rows = [
            "| face px | config | recall | vs full-res | false faces/frame | named | accuracy | id swaps"
            " | fps | peak RSS |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for size, by_config in rooms.items():
            full = by_config.get("full", {}).get("recall")
            for name, r in by_config.items():
                vs = _vs_full(r["recall"], full)
                cells = [
                    str(size),
                    name + ("*" if "kept_from" in r else ""),
                    f"{r['recall']:.2f}",
                    vs,
                    f"{r['false_per_frame']:.2f}",
                    _pct(r["named"]),
                    _pct(r["accuracy"]),
                    str(r["id_swaps"]),
                    f"{r['fps']:.1f}",
                    f"{r['peak_rss_mb'] or 0:.0f} MB",
                ]
                rows.append("| " + " | ".join(cells) + " |")
        out["sizes"] = "\n".join(rows)
    cost = results.get("camera_cost")
    if cost:
        rows = [
            "| main stream | lores | pipeline ms/frame | fps | faces found per frame | main buffers |",
            "|---|---|---|---|---|---|",
        ]
        for r in cost:
            main, lores = "x".join(map(str, r["main"])), "x".join(map(str, r["lores"]))
            rows.append(
                f"| {main} | {lores} | {r['pipeline_ms_p50']:.1f} | {r['pipeline_fps']:.0f}"
                f" | {r['faces_per_frame']:.2f} | {r['buffers_mb']:.0f} MB |"
            )
        out["camera"] = "\n".join(rows)
    read = results.get("read_by_size", {})
    if read:
        out["read"] = "\n".join(
            [
                "| face px | " + " | ".join(read) + " |",
                "|---" * (len(read) + 1) + "|",
                "| accuracy | " + " | ".join(_pct(v["accuracy"]) for v in read.values()) + " |",
                "| macro-F1 | " + " | ".join(_pct(v["macro_f1"]) for v in read.values()) + " |",
            ]
        )
    return out


def fill_docs(text: str, tables: dict[str, str]) -> str:
    """`text` with each `<!-- range:NAME -->` ... `<!-- /range:NAME -->` section replaced by
    its table (sections the text lacks are skipped)."""
    for name, table in tables.items():
        begin, end = f"<!-- range:{name} -->", f"<!-- /range:{name} -->"
        if begin in text and end in text:
            head, rest = text.split(begin, 1)
            text = head + begin + "\n" + table + "\n" + end + rest.split(end, 1)[1]
    return text


def update_docs(results: dict) -> None:
    """Rewrite the range tables in the docs that hold them."""
    from edge_fer.core.safe_io import write_atomic

    tables = markdown(results)
    for doc in DOCS:
        if doc.is_file() and fill_docs(doc.read_text(), tables) != doc.read_text():
            write_atomic(doc, fill_docs(doc.read_text(), tables).encode(), mode=0o644)
            print(f"updated the range tables in {doc.relative_to(ROOT)}")


DOCS = (ROOT / "docs" / "range.md", ROOT / "README.md", ROOT / "edge_fer" / "models" / "README.md")


def main(argv: list[str] | None = None) -> int:
    from edge_fer.config import DEFAULT_MODEL, Config
    from edge_fer.core.safe_io import check_writable, write_atomic

    p = FlagParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", type=path_arg, default=DEFAULT_DATA)
    p.add_argument("--model", type=path_arg, default=DEFAULT_MODEL)
    p.add_argument("--sizes", default="20,24,32,48,64,96,128", help="face sizes in the rooms (px)")
    p.add_argument("--read-sizes", default="12,16,20,24,32,48,64,96")
    p.add_argument("--faces", type=int, default=4)
    p.add_argument("--hold", type=int, default=90, help="frames each set of people stays")
    p.add_argument("--frames", type=int, default=450, help="frames per room video")
    p.add_argument("--resolutions", default="1080p,pi")
    p.add_argument("--configs", default="default,mid,near,full")
    p.add_argument("--full-sizes", default="24,32,48,64", help="sizes the (slow) full config runs on")
    p.add_argument("--pi-configs", default="default", help="configs run on the Pi-size rooms")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument(
        "--work", type=path_arg, default=ROOT / "runs" / "bench_range", help="videos are cached here"
    )
    p.add_argument("--json", type=path_arg, default=ROOT / "benchmarks" / "results" / "range.json")
    p.add_argument(
        "--tables-from", type=file_arg, help="print the tables of this results file (and update the docs)"
    )
    p.add_argument(
        "--keep-from",
        type=path_arg,
        help="a previous results file: its rows for configs this run leaves out are kept (marked)",
    )
    p.add_argument(
        "--docs",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="rewrite the range tables in docs/range.md, README.md and the model card",
    )
    args = p.parse_args(argv)
    if args.tables_from is not None:  # only the tables (and the docs) from a results file
        try:
            results = json.loads(args.tables_from.read_text())
        except (OSError, ValueError) as exc:
            p.error(f"--tables-from {args.tables_from}: not a readable results file ({exc})")
        print(format_tables(results))
        if args.docs:
            update_docs(results)
        return 0
    try:
        sizes = [int(s) for s in args.sizes.split(",")]
        read_sizes = [int(s) for s in args.read_sizes.split(",")]
    except ValueError:
        p.error("--sizes and --read-sizes take comma-separated integers, e.g. 24,48")
    resolutions = args.resolutions.split(",")
    configs = args.configs.split(",")
    for name in resolutions:
        if name not in RESOLUTIONS:
            p.error(f"--resolutions: unknown {name!r}; choose from {', '.join(RESOLUTIONS)}")
    for name in configs + args.pi_configs.split(","):
        if name not in CONFIGS:
            p.error(f"--configs: unknown {name!r}; choose from {', '.join(CONFIGS)}")
    if not args.data.is_dir():
        p.error(f"dataset {args.data} does not exist (set EDGE_FER_DATA or --data)")
    check_writable(args.json)
    kept: dict = {}
    if args.keep_from is not None:
        try:
            kept = json.loads(args.keep_from.read_text())
        except (OSError, ValueError) as exc:
            p.error(f"--keep-from {args.keep_from}: not a readable results file ({exc})")
    args.work.mkdir(parents=True, exist_ok=True)

    results: dict = {"faces": args.faces, "hold": args.hold, "frames": args.frames, "model": str(args.model)}
    results["read_by_size"] = read_by_size(args.model, args.data, read_sizes)
    results["min_readable_px"] = min_readable(results["read_by_size"])
    print(format_tables({**results, "rooms": {}}), flush=True)
    results["rooms"] = {}
    for res in resolutions:
        size = RESOLUTIONS[res]
        rows: dict = {}
        for face_px in sizes:
            video = (
                args.work / f"room_{res}_{face_px}px_{args.faces}f_{args.frames}_{args.hold}_{args.seed}.avi"
            )
            truth_file = video.with_suffix(".json")
            if not (video.is_file() and truth_file.is_file()):
                t = time.time()
                truth = room_video(
                    args.data, video, size, face_px, args.faces, args.frames, args.hold, args.seed
                )
                truth_file.write_text(json.dumps(truth))
                print(f"  built {video.name} in {time.time() - t:.0f} s", file=sys.stderr, flush=True)
            truth = json.loads(truth_file.read_text())
            rows[face_px] = {}
            names = configs if res == "1080p" else args.pi_configs.split(",")
            for name in names:
                if name == "full" and str(face_px) not in args.full_sizes.split(","):
                    continue
                with tempfile.TemporaryDirectory() as tmp:
                    events, report = run_daemon(video, args.model, CONFIGS[name], Path(tmp), name)
                rows[face_px][name] = {
                    **score(events, truth, args.hold),
                    "fps": report.get("fps"),
                    "peak_rss_mb": report.get("peak_rss_mb"),
                    "faces_seen": report.get("faces_seen"),
                }
                r = rows[face_px][name]
                line = f"  {res} {face_px}px {name}: recall {r['recall']:.2f} fps {r['fps']:.1f}"
                print(line, file=sys.stderr, flush=True)
        for face_px, by_config in kept.get("rooms", {}).get(res, {}).items():
            for name, row in by_config.items():  # configs this run left out, from --keep-from
                rows.setdefault(int(face_px), {}).setdefault(name, {**row, "kept_from": str(args.keep_from)})
        results["rooms"][res] = rows
    pi_video = args.work / f"room_pi_48px_{args.faces}f_{args.frames}_{args.hold}_{args.seed}.avi"
    if "pi" in resolutions and pi_video.is_file():
        results["camera_cost"] = camera_cost(args.model, pi_video)
    results["cpu"] = os.cpu_count()
    results["distances"] = distance_table(results, Config().smoothing.min_readable_px)
    print()
    print(format_tables(results))
    write_atomic(args.json, (json.dumps(results, indent=1) + "\n").encode())
    print(f"\nwrote {args.json}")
    if args.docs:
        update_docs(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())

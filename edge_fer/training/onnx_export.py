"""ONNX copies of a trained student for other runtimes (onnxruntime, OpenVINO, Hailo's
compiler...), checked against the shipped ExecuTorch program on the same faces.

* float: the float student (a run's pruned.pt) through torch.onnx (opset 17, dynamic batch,
  batch norm folded into the convolutions).
* int8: that float graph through onnxruntime's static quantization (QDQ, per-channel symmetric
  int8 weights, int8 activations calibrated on real training faces); the blocks the .pte keeps
  float (quantize.json's float_modules) stay float here too.

Inputs are the daemon's: (N, 1, S, S) float32 faces normalised as the checkpoint's
preprocessing says; outputs are (N, 7) logits in edge_fer.emotions.labels.EMOTIONS order.
"""

from __future__ import annotations

import io
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edge_fer.core import safe_io

OPSET = 17


class OnnxError(RuntimeError):
    """An ONNX export or check that failed; the message names the file and the fix."""


def export_onnx(model: nn.Module, path: Path, input_size: int, in_channels: int = 1) -> int:
    """Write `model` (float, eval) as ONNX with a dynamic batch; returns the file's size."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    graph = io.BytesIO()
    example = torch.zeros(2, in_channels, input_size, input_size)
    with warnings.catch_warnings():  # the TorchScript exporter's deprecation notice
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model.eval(),
            (example,),
            graph,
            input_names=["x"],
            output_names=["logits"],
            dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}},
            opset_version=OPSET,
            dynamo=False,
        )
    safe_io.write_atomic(path, graph.getbuffer(), 0o644)
    return path.stat().st_size


def _nodes_in(graph_path: Path, modules: Sequence[str]) -> list[str]:
    """Names of the ONNX nodes that torch.onnx made from the given submodules (it names a
    node after its module path: /features/features.0/features.0.0/Conv)."""
    import onnx

    names = [n.name for n in onnx.load(str(graph_path)).graph.node]
    return [n for n in names if any(f"/{m}/" in n for m in modules)]


class _Faces:
    """onnxruntime's CalibrationDataReader over normalised faces, in batches."""

    def __init__(self, x: np.ndarray, batch: int = 64) -> None:
        self._batches = iter([{"x": x[i : i + batch]} for i in range(0, len(x), batch)])

    def get_next(self) -> dict | None:
        return next(self._batches, None)


def quantize_onnx(
    float_path: Path, path: Path, calibration: np.ndarray, float_modules: Sequence[str] = ()
) -> int:
    """int8 QDQ copy of the float ONNX at `float_path`, calibrated on `calibration` (N, C, S, S)
    normalised faces; nodes of `float_modules` stay float. Returns the file's size."""
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    ort.set_default_logger_severity(3)  # errors only: not its notes on unused initializers
    path = Path(path)
    # onnxruntime writes files by name: into a private folder, then atomically to `path`.
    with tempfile.TemporaryDirectory(prefix="edge-fer-onnx.") as work:
        prepared, quantized = Path(work) / "prepared.onnx", Path(work) / "int8.onnx"
        # Shape inference and graph optimisation first, as onnxruntime's quantizer asks for.
        quant_pre_process(str(float_path), str(prepared))
        quantize_static(
            str(prepared),
            str(quantized),
            _Faces(calibration.astype(np.float32)),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            weight_type=QuantType.QInt8,
            activation_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            nodes_to_exclude=_nodes_in(prepared, float_modules),
            extra_options={"WeightSymmetric": True, "ActivationSymmetric": False},
        )
        safe_io.write_atomic(path, quantized.read_bytes(), 0o644)
    return path.stat().st_size


def onnx_logits(path: Path, x: np.ndarray, threads: int = 1, batch: int = 256) -> np.ndarray:
    """Logits of the ONNX model at `path` on normalised faces `x` (N, C, S, S), by onnxruntime."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own Fail/InvalidGraph types
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise OnnxError(f"onnxruntime cannot load {path} ({first}); export it again") from None
    out = [
        session.run(["logits"], {"x": x[i : i + batch].astype(np.float32)})[0]
        for i in range(0, len(x), batch)
    ]
    return np.concatenate(out) if out else np.zeros((0, 7), np.float32)


def compare(labels: np.ndarray, reference: np.ndarray, predictions: dict[str, np.ndarray]) -> dict:
    """Accuracy of the reference (the .pte) and of each prediction, and how often each
    prediction gives the reference's label."""
    n = len(labels)
    report: dict = {"n": n, "pte_accuracy": float((reference == labels).mean()) if n else 0.0}
    for name, pred in predictions.items():
        report[f"{name}_accuracy"] = float((pred == labels).mean()) if n else 0.0
        report[f"{name}_agreement_with_pte"] = float((pred == reference).mean()) if n else 0.0
    return report

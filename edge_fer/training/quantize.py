"""int8 post-training quantization (torchao pt2e + XNNPACK quantizer) and ExecuTorch export.

Per-channel symmetric int8 weights, int8 activations calibrated on real faces, lowered to
an ExecuTorch program whose convolutions and linears all run in XNNPACK.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn


def _export(model: nn.Module, example: torch.Tensor,
            dynamic_batch: bool = False) -> torch.export.ExportedProgram:
    dynamic = {"x": {0: torch.export.Dim("batch", min=1, max=4096)}} if dynamic_batch else None
    if not isinstance(model, torch.fx.GraphModule):  # a converted pt2e graph is already eval
        model = model.eval()
    return torch.export.export(model, (example,), dynamic_shapes=dynamic, strict=True)


def quantize_int8(model: nn.Module, calibration: torch.Tensor, batch_size: int = 64) -> nn.Module:
    """Static int8 quantization of `model`, calibrated on `calibration` (N, C, H, W) inputs."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    graph = _export(model, calibration[:2], dynamic_batch=True).module()
    quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    prepared = prepare_pt2e(graph, quantizer)
    with torch.no_grad():
        for start in range(0, len(calibration), batch_size):
            prepared(calibration[start:start + batch_size])
    return convert_pt2e(prepared)


def export_pte(model: nn.Module, example: torch.Tensor, path: Path) -> int:
    """Lower `model` (float or pt2e-quantized) to an ExecuTorch XNNPACK program at `path`.

    The program has a fixed batch of example.shape[0]. Returns the file size in bytes.
    """
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    program = to_edge_transform_and_lower(
        _export(model, example), partitioner=[XnnpackPartitioner()]
    ).to_executorch()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(program.buffer)
    tmp.replace(path)  # atomic: a crash never leaves a half-written model behind
    return path.stat().st_size

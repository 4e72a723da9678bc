"""int8 post-training quantization (torchao pt2e + XNNPACK quantizer) and ExecuTorch export.

Per-channel symmetric int8 weights, int8 activations calibrated on real faces, lowered to
an ExecuTorch program whose convolutions and linears all run in XNNPACK. Named submodules
(the student's first blocks, which it lists itself: `float_prefix`) can stay float: XNNPACK
runs them in fp32. Any registered student (edge_fer/nets/students.py) goes through.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from edge_fer.core import safe_io
from edge_fer.nets.students import is_student

if TYPE_CHECKING:
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import XNNPACKQuantizer


def float_prefix(model: nn.Module, blocks: int) -> tuple[str, ...]:
    """Module names of the student's first `blocks` blocks (its `quant_blocks()`, stem first:
    see edge_fer/nets/students.py), the ones --float-blocks keeps float."""
    if blocks <= 0:
        return ()
    if not is_student(model):
        raise ValueError(f"{type(model).__name__} is not a registered student (edge_fer/nets/students.py)")
    names = model.quant_blocks()
    if blocks > len(names):
        raise ValueError(f"cannot keep {blocks} feature blocks float: the model has {len(names)}")
    return tuple(names[:blocks])


def _outside(module_names: Sequence[str]) -> Callable[[torch.fx.Node], bool]:
    """A quantizer node filter: True for nodes that belong to none of `module_names`."""

    def keep(node: torch.fx.Node) -> bool:
        owners = [path for path, _ in node.meta.get("nn_module_stack", {}).values()]
        return not any(o == name or o.startswith(name + ".") for o in owners for name in module_names)

    return keep


def _quantizer(is_qat: bool, float_modules: Sequence[str]) -> XNNPACKQuantizer:
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )

    quantizer = XNNPACKQuantizer().set_global(
        get_symmetric_quantization_config(is_per_channel=True, is_qat=is_qat)
    )
    if float_modules:
        quantizer.set_filter_function(_outside(float_modules))
    return quantizer


def export_graph(
    model: nn.Module, example: torch.Tensor, max_batch: int | None = None
) -> torch.export.ExportedProgram:
    """torch.export `model`; with `max_batch`, the batch dimension is dynamic up to it."""
    dynamic = None
    if max_batch:
        dynamic = {"x": {0: torch.export.Dim("batch", min=1, max=max_batch)}}
        if example.shape[0] == 1:  # a batch-1 example would pin the batch dimension to 1
            example = example.expand(2, *example.shape[1:]).contiguous()
    if not isinstance(model, torch.fx.GraphModule):  # a converted pt2e graph is already eval
        model = model.eval()
    return torch.export.export(model, (example,), dynamic_shapes=dynamic, strict=True)


def quantize_int8(
    model: nn.Module,
    calibration: torch.Tensor,
    batch_size: int = 64,
    float_modules: Sequence[str] = (),
) -> nn.Module:
    """Static int8 quantization of `model`, calibrated on `calibration` (N, C, H, W) inputs;
    submodules named in `float_modules` (and everything inside them) stay float."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    graph = export_graph(model, calibration[:2], max_batch=4096).module()
    prepared = prepare_pt2e(graph, _quantizer(False, float_modules))
    with torch.no_grad():
        for start in range(0, len(calibration), batch_size):
            prepared(calibration[start : start + batch_size])
    return convert_pt2e(prepared)


def load_int8_graph(path: Path) -> nn.Module:
    """The int8 graph the quantize stage saved, ready for `export_pte`.

    Raises CheckpointError when it is missing or unreadable.
    """
    # Importing torchao's pt2e package registers the quantized_decomposed ops the saved graph
    # calls; a process that did not quantize (export run on its own) lacks them otherwise.
    import torchao.quantization.pt2e  # noqa: F401

    from edge_fer.nets.checkpoint import CheckpointError

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"{path} does not exist; run the quantize stage first (--stages quantize,export)"
        )
    try:
        return torch.export.load(path).module()
    except Exception as exc:  # torch raises RuntimeError, SerializeError, zipfile errors...
        raise CheckpointError(
            f"{path} is not a readable int8 graph ({type(exc).__name__}); run --stages quantize,export again"
        ) from None


def export_pte(model: nn.Module, example: torch.Tensor, path: Path, max_batch: int | None = None) -> int:
    """Lower `model` (float or pt2e-quantized) to an ExecuTorch XNNPACK program at `path`.

    The program takes any batch up to `max_batch`, or a fixed batch of example.shape[0]
    without it. Returns the file size in bytes.
    """
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    program = to_edge_transform_and_lower(
        export_graph(model, example, max_batch), partitioner=[XnnpackPartitioner()]
    ).to_executorch()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    safe_io.write_atomic(path, program.buffer, 0o644)  # a crash never leaves a half-written model
    return path.stat().st_size


def prepare_qat(model: nn.Module, example: torch.Tensor, float_modules: Sequence[str] = ()) -> nn.Module:
    """The float student as a pt2e graph with fake-quantized int8 weights and activations
    (except in `float_modules`), ready for quantization-aware fine-tuning (any batch size)."""
    from torchao.quantization.pt2e import move_exported_model_to_train
    from torchao.quantization.pt2e.quantize_pt2e import prepare_qat_pt2e

    graph = export_graph(model.train(), example[:2], max_batch=4096).module()
    prepared = prepare_qat_pt2e(graph, _quantizer(True, float_modules))
    move_exported_model_to_train(prepared)
    return prepared


def convert_qat(prepared: nn.Module) -> nn.Module:
    """The fine-tuned fake-quant graph -> a real int8 graph (like `quantize_int8`'s result)."""
    from torchao.quantization.pt2e import move_exported_model_to_eval
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

    move_exported_model_to_eval(prepared)
    return convert_pt2e(prepared)

"""Multiply-accumulates of one forward pass, for any net of convs and linears."""

from __future__ import annotations

import torch
from torch import nn


def count_macs(model: nn.Module, input_size: int, in_channels: int = 1) -> int:
    """Multiply-accumulates of one forward pass (convs and linears), by forward hooks."""
    total = 0

    def conv_hook(module: nn.Conv2d, _inp: tuple, out: torch.Tensor) -> None:
        nonlocal total
        k = module.kernel_size[0] * module.kernel_size[1]
        total += out.numel() // out.shape[0] * k * module.in_channels // module.groups

    def linear_hook(module: nn.Linear, _inp: tuple, out: torch.Tensor) -> None:
        nonlocal total
        total += module.in_features * module.out_features

    handles = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
    was_training = model.training
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, in_channels, input_size, input_size))
    model.train(was_training)
    for h in handles:
        h.remove()
    return total

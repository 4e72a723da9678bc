"""Helpers for structured pruning of conv-BN stacks: channels are removed, not masked.

Channel importance is the BatchNorm scale |gamma| (network slimming, Liu et al. 2017) of the
layer that produces the channel. A student's `pruned()` picks which channels of which layers
go (see MobileNetV2.pruned) and copies the survivors with `take_conv_bn`.
"""

from __future__ import annotations

import torch
from torch import nn


def round_channels(n: float, multiple: int = 8) -> int:
    """`n` rounded to a multiple of 8: XNNPACK's int8 kernels work in channel tiles of 8/16."""
    return max(multiple, int(round(n / multiple)) * multiple)


def keep_index(bn: nn.BatchNorm2d, keep: int) -> torch.Tensor:
    """Indices (ascending) of the `keep` channels with the largest |gamma|."""
    score = bn.weight.detach().abs()
    return torch.sort(torch.topk(score, keep).indices).values


def take_conv_bn(
    src: nn.Sequential, dst: nn.Sequential, out_idx: torch.Tensor | None, in_idx: torch.Tensor | None
) -> None:
    """Copy a (Conv2d, BatchNorm2d, ...) block's weights into a smaller one, keeping the given
    output and input channels (None: all)."""
    w = src[0].weight.detach()
    if src[0].groups > 1:  # depthwise: channel i only reads input i
        w = w[out_idx]
    else:
        if out_idx is not None:
            w = w[out_idx]
        if in_idx is not None:
            w = w[:, in_idx]
    dst[0].weight.data.copy_(w)
    for name in ("weight", "bias", "running_mean", "running_var"):
        t = getattr(src[1], name).detach()
        getattr(dst[1], name).data.copy_(t[out_idx] if out_idx is not None else t)

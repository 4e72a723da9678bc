"""Structured pruning of the MobileNetV2 student: channels are removed, not masked.

Inside an inverted residual the hidden (expanded) channels are private to the block, so
dropping some of them shrinks the expand conv's outputs, the depthwise conv and the
project conv's inputs without touching the residual path. The last 1x1 conv's outputs
(and the classifier's inputs) are pruned the same way. Channel importance is the BatchNorm
scale |gamma| (network slimming, Liu et al. 2017) of the layer that produces the channel.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from edge_fer.nets.mobilenetv2 import InvertedResidual, MobileNetV2, StudentArch


def _round_channels(n: float, multiple: int = 8) -> int:
    # XNNPACK's int8 kernels work in channel tiles of 8/16: keep counts on those steps.
    return max(multiple, int(round(n / multiple)) * multiple)


def _keep_index(bn: nn.BatchNorm2d, keep: int) -> torch.Tensor:
    score = bn.weight.detach().abs()
    return torch.sort(torch.topk(score, keep).indices).values


def _take_conv_bn(
    src: nn.Sequential, dst: nn.Sequential, out_idx: torch.Tensor | None, in_idx: torch.Tensor | None
) -> None:
    """Copy a ConvBNReLU's weights into a smaller one, keeping the given channels."""
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


def prune_student(model: MobileNetV2, keep_ratio: float, last_keep_ratio: float | None = None) -> MobileNetV2:
    """Return a new, smaller MobileNetV2 keeping `keep_ratio` of each block's hidden channels
    (and `last_keep_ratio` of the final conv's channels) ranked by BN |gamma|."""
    if not 0 < keep_ratio <= 1:
        raise ValueError(f"keep_ratio must be in (0, 1], got {keep_ratio}")
    last_keep_ratio = keep_ratio if last_keep_ratio is None else last_keep_ratio
    model = model.cpu().eval()
    arch = copy.deepcopy(model.arch)
    blocks = [m for m in model.features if isinstance(m, InvertedResidual)]
    keep_indices: list[torch.Tensor | None] = []
    for spec, block in zip(arch.blocks, blocks, strict=True):
        if not spec.expand:  # t=1: hidden channels are the block's input, shared with the stem
            keep_indices.append(None)
            continue
        keep = min(spec.hidden, _round_channels(spec.hidden * keep_ratio))
        # The depthwise BN scales what survives both the expansion and the depthwise conv.
        keep_indices.append(_keep_index(block.conv[1][1], keep))
        spec.hidden = keep
    last = model.features[-1]
    last_keep = min(arch.last_channels, _round_channels(arch.last_channels * last_keep_ratio))
    last_idx = _keep_index(last[1], last_keep)
    arch.last_channels = last_keep
    arch.notes = {**arch.notes, "pruned_keep_ratio": keep_ratio, "pruned_last_keep_ratio": last_keep_ratio}

    pruned = MobileNetV2(arch).eval()
    pruned.features[0].load_state_dict(model.features[0].state_dict())
    new_blocks = [m for m in pruned.features if isinstance(m, InvertedResidual)]
    for idx, old, new in zip(keep_indices, blocks, new_blocks, strict=True):
        if idx is None:
            new.load_state_dict(old.state_dict())
            continue
        _take_conv_bn(old.conv[0], new.conv[0], idx, None)  # expand: fewer outputs
        _take_conv_bn(old.conv[1], new.conv[1], idx, None)  # depthwise
        _take_conv_bn(old.conv[2], new.conv[2], None, idx)  # project: fewer inputs
    _take_conv_bn(last, pruned.features[-1], last_idx, None)
    pruned.classifier[1].weight.data.copy_(model.classifier[1].weight.detach()[:, last_idx])
    pruned.classifier[1].bias.data.copy_(model.classifier[1].bias.detach())
    return pruned


def describe(arch: StudentArch) -> str:
    return " ".join(f"{b.hidden}" for b in arch.blocks) + f" | last {arch.last_channels}"

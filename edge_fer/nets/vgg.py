"""A small VGG-style net for 48 px faces: the distillation teacher.

Dense 3x3 convs are what this project's training CPUs run fastest per FLOP (bf16 autocast +
channels_last roughly doubles their speed on AVX-512 BF16), so the teacher is a plain stack
of conv-bn-relu pairs with max-pooling: 48 -> 24 -> 12 -> 6 -> 3, then a small MLP head.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from edge_fer.emotions.labels import EMOTIONS


class FaceVGG(nn.Module):
    """Four stages of two 3x3 conv-bn-relu layers and a 2x2 max-pool, then a 2-layer head."""

    kind: ClassVar[str] = "facevgg"

    def __init__(
        self,
        widths: tuple[int, ...] = (32, 64, 128, 256),
        num_classes: int = len(EMOTIONS),
        in_channels: int = 1,
        input_size: int = 48,
        hidden: int = 256,
        dropout: float = 0.4,
    ) -> None:
        super().__init__()
        self.config = {
            "widths": list(widths),
            "num_classes": num_classes,
            "in_channels": in_channels,
            "input_size": input_size,
            "hidden": hidden,
            "dropout": dropout,
        }
        layers: list[nn.Module] = []
        in_ch = in_channels
        for width in widths:
            for _ in range(2):
                layers += [
                    nn.Conv2d(in_ch, width, 3, 1, 1, bias=False),
                    nn.BatchNorm2d(width),
                    nn.ReLU(inplace=True),
                ]
                in_ch = width
            layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        side = input_size // 2 ** len(widths)
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(in_ch * side * side, hidden),
            nn.BatchNorm1d(hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    @classmethod
    def from_arch(cls, arch: dict) -> FaceVGG:
        return cls(**{**arch, "widths": tuple(arch["widths"])})

    def arch_dict(self) -> dict:
        return dict(self.config)

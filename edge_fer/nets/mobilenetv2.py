"""MobileNetV2 for small grayscale faces, written for torch.export and int8.

Follows torchvision's `models/mobilenetv2.py`: conv-bn-relu blocks that fold cleanly,
inverted residuals with plain adds, no Python control flow in `forward`. Every block's
hidden width is explicit in `StudentArch`, so a structurally pruned net is just another
architecture and can be rebuilt from its checkpoint.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from edge_fer.labels import EMOTIONS


def _make_divisible(value: float, divisor: int = 8) -> int:
    new = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * value else new


@dataclass
class BlockSpec:
    in_ch: int
    hidden: int
    out_ch: int
    stride: int
    expand: bool  # False for t=1 blocks, which have no 1x1 expansion conv


@dataclass
class StudentArch:
    """Everything that shapes the student; saved with every checkpoint."""

    in_channels: int
    stem_channels: int
    stem_stride: int
    blocks: list[BlockSpec]
    last_channels: int
    num_classes: int
    dropout: float = 0.2
    input_size: int = 48
    width_mult: float = 1.0
    notes: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> StudentArch:
        data = dict(data)
        data["blocks"] = [BlockSpec(**b) for b in data["blocks"]]
        return cls(**data)


# (expansion t, output channels c, repeats n, first stride s), as in the MobileNetV2 paper,
# shortened for 48 px faces. With a stride-2 stem, two more stride-2 steps give a total
# stride of 8: the last stages see 6x6 maps (ImageNet's stride 32 would crush 48 px to 2x2,
# which cost ~10 points of accuracy here).
FACE_SETTING: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 3, 1),
    (6, 96, 2, 1),
)


def student_arch(
    width_mult: float = 1.0,
    input_size: int = 48,
    in_channels: int = 1,
    num_classes: int = len(EMOTIONS),
    stem_stride: int = 2,
    last_channels: int = 512,
    setting: tuple[tuple[int, int, int, int], ...] = FACE_SETTING,
    dropout: float = 0.2,
) -> StudentArch:
    """A MobileNetV2 architecture with a width multiplier, as a plain description."""
    stem = _make_divisible(32 * width_mult)
    blocks: list[BlockSpec] = []
    in_ch = stem
    for t, c, n, s in setting:
        out_ch = _make_divisible(c * width_mult)
        for i in range(n):
            blocks.append(BlockSpec(in_ch, in_ch * t, out_ch, s if i == 0 else 1, t != 1))
            in_ch = out_ch
    last = _make_divisible(last_channels * max(1.0, width_mult))
    return StudentArch(
        in_channels, stem, stem_stride, blocks, last, num_classes, dropout, input_size, width_mult
    )


class ConvBNReLU(nn.Sequential):
    """Conv2d + BatchNorm2d + ReLU6 (ReLU6 keeps int8 activation ranges tight)."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel: int = 3,
        stride: int = 1,
        groups: int = 1,
        activation: bool = True,
    ) -> None:
        layers: list[nn.Module] = [
            nn.Conv2d(in_ch, out_ch, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
            nn.BatchNorm2d(out_ch),
        ]
        if activation:
            layers.append(nn.ReLU6(inplace=True))
        super().__init__(*layers)


class InvertedResidual(nn.Module):
    """Expand (1x1) -> depthwise (3x3) -> project (1x1, linear), residual when shapes allow."""

    def __init__(self, spec: BlockSpec) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        if spec.expand:
            layers.append(ConvBNReLU(spec.in_ch, spec.hidden, kernel=1))
        layers.append(ConvBNReLU(spec.hidden, spec.hidden, stride=spec.stride, groups=spec.hidden))
        layers.append(ConvBNReLU(spec.hidden, spec.out_ch, kernel=1, activation=False))
        self.conv = nn.Sequential(*layers)
        self.use_residual = spec.stride == 1 and spec.in_ch == spec.out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # use_residual is fixed at construction, so export sees a static graph.
        if self.use_residual:
            return x + self.conv(x)
        return self.conv(x)


class MobileNetV2(nn.Module):
    """The edge-fer student: MobileNetV2 sized for 48 px grayscale faces."""

    def __init__(self, arch: StudentArch) -> None:
        super().__init__()
        self.arch = arch
        layers: list[nn.Module] = [ConvBNReLU(arch.in_channels, arch.stem_channels, stride=arch.stem_stride)]
        layers += [InvertedResidual(b) for b in arch.blocks]
        layers.append(ConvBNReLU(arch.blocks[-1].out_ch, arch.last_channels, kernel=1))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Dropout(arch.dropout), nn.Linear(arch.last_channels, arch.num_classes)
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = torch.flatten(self.pool(x), 1)
        return self.classifier(x)


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

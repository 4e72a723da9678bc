"""MobileNetV2 for small grayscale faces, written for torch.export and int8: the student.

Follows torchvision's `models/mobilenetv2.py`: conv-bn-relu blocks that fold cleanly,
inverted residuals with plain adds, no Python control flow in `forward`. Every block's
hidden width is explicit in `StudentArch`, so a structurally pruned net is just another
architecture and can be rebuilt from its checkpoint. Implements the `Student` interface of
edge_fer/nets/students.py (registered there as "mobilenetv2").
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, ClassVar

import torch
from torch import nn

from edge_fer.emotions.labels import EMOTIONS
from edge_fer.nets.macs import count_macs
from edge_fer.nets.slimming import keep_index, round_channels, take_conv_bn

if TYPE_CHECKING:
    from edge_fer.training.settings import TrainSettings

__all__ = ["BlockSpec", "MobileNetV2", "StudentArch", "count_macs", "student_arch"]


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

    kind: ClassVar[str] = "mobilenetv2"

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

    @classmethod
    def from_settings(cls, settings: TrainSettings) -> MobileNetV2:
        """--width, --last-channels and --input-size shape it."""
        return cls(
            student_arch(
                width_mult=settings.width,
                input_size=settings.input_size,
                last_channels=settings.last_channels,
            )
        )

    @classmethod
    def from_arch(cls, arch: dict) -> MobileNetV2:
        return cls(StudentArch.from_dict(arch))

    def arch_dict(self) -> dict:
        return self.arch.to_dict()

    def quant_blocks(self) -> tuple[str, ...]:
        """features.0 (the stem), features.1 (the first inverted residual), ..., the last conv."""
        return tuple(f"features.{i}" for i in range(len(self.features)))

    def describe(self) -> str:
        """The hidden width of every block and the last conv's channels."""
        return " ".join(f"{b.hidden}" for b in self.arch.blocks) + f" | last {self.arch.last_channels}"

    def pruned(self, keep_ratio: float, last_keep_ratio: float | None = None) -> MobileNetV2:
        """A new, smaller net keeping `keep_ratio` of each block's hidden channels (and
        `last_keep_ratio` of the last conv's), ranked by BN |gamma|.

        Inside an inverted residual the hidden (expanded) channels are private to the block,
        so dropping some shrinks the expand conv's outputs, the depthwise conv and the project
        conv's inputs without touching the residual path. The last 1x1 conv's outputs (and the
        classifier's inputs) are pruned the same way.
        """
        if not 0 < keep_ratio <= 1:
            raise ValueError(f"keep_ratio must be in (0, 1], got {keep_ratio}")
        last_keep_ratio = keep_ratio if last_keep_ratio is None else last_keep_ratio
        model = self.cpu().eval()
        arch = copy.deepcopy(model.arch)
        blocks = [m for m in model.features if isinstance(m, InvertedResidual)]
        keep_indices: list[torch.Tensor | None] = []
        for spec, block in zip(arch.blocks, blocks, strict=True):
            if not spec.expand:  # t=1: hidden channels are the block's input, shared with the stem
                keep_indices.append(None)
                continue
            keep = min(spec.hidden, round_channels(spec.hidden * keep_ratio))
            # The depthwise BN scales what survives both the expansion and the depthwise conv.
            keep_indices.append(keep_index(block.conv[1][1], keep))
            spec.hidden = keep
        last = model.features[-1]
        last_keep = min(arch.last_channels, round_channels(arch.last_channels * last_keep_ratio))
        last_idx = keep_index(last[1], last_keep)
        arch.last_channels = last_keep
        arch.notes = {
            **arch.notes,
            "pruned_keep_ratio": keep_ratio,
            "pruned_last_keep_ratio": last_keep_ratio,
        }

        pruned = MobileNetV2(arch).eval()
        pruned.features[0].load_state_dict(model.features[0].state_dict())
        new_blocks = [m for m in pruned.features if isinstance(m, InvertedResidual)]
        for idx, old, new in zip(keep_indices, blocks, new_blocks, strict=True):
            if idx is None:
                new.load_state_dict(old.state_dict())
                continue
            take_conv_bn(old.conv[0], new.conv[0], idx, None)  # expand: fewer outputs
            take_conv_bn(old.conv[1], new.conv[1], idx, None)  # depthwise
            take_conv_bn(old.conv[2], new.conv[2], None, idx)  # project: fewer inputs
        take_conv_bn(last, pruned.features[-1], last_idx, None)
        pruned.classifier[1].weight.data.copy_(model.classifier[1].weight.detach()[:, last_idx])
        pruned.classifier[1].bias.data.copy_(model.classifier[1].bias.detach())
        return pruned

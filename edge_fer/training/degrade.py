"""What a camera does to a face, as batched tensor ops on faces in [0, 1], shape (B, 1, H, W).

One function per degradation, each taking a per-face strength in physical units (pixels,
degrees, an exposure factor, a JPEG quality, ...) and an optional `torch.Generator`, so the
same code serves training (random kinds and strengths, `random_degrade`) and the robustness
benchmark (one kind at its fixed, realistic strength, deterministic given a seed).

The strengths in `BENCH_STRENGTHS` are what a Camera Module 3 / webcam frame does to a face
that the detector hands over at about 48-100 px (benchmarks/README.md justifies each one).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import cache

import numpy as np
import torch
import torch.nn.functional as F

Degradation = Callable[[torch.Tensor, torch.Tensor, torch.Generator | None], torch.Tensor]


def _rand(n: int, gen: torch.Generator | None, device: torch.device) -> torch.Tensor:
    return torch.rand(n, generator=gen, device=device)


def _per_face(strength: torch.Tensor) -> torch.Tensor:
    return strength.view(-1, 1, 1, 1)


def sensor_noise(x: torch.Tensor, sigma: torch.Tensor, gen: torch.Generator | None = None) -> torch.Tensor:
    """Low-light sensor noise: shot noise (variance grows with brightness) plus read noise,
    `sigma` being its standard deviation at mid grey."""
    std = _per_face(sigma) * torch.sqrt(0.25 + 1.5 * x)
    noise = torch.randn(x.shape, generator=gen, device=x.device)
    return (x + std * noise).clamp(0, 1)


def _disk_kernels(radius: torch.Tensor, size: int) -> torch.Tensor:
    """(B, 1, size, size) normalized disks with anti-aliased edges, one per radius."""
    r = torch.arange(size, device=radius.device, dtype=torch.float32) - (size - 1) / 2
    dist = torch.sqrt(r.view(1, -1, 1) ** 2 + r.view(1, 1, -1) ** 2)
    disk = (radius.view(-1, 1, 1) + 0.5 - dist).clamp(0, 1)
    return (disk / disk.sum(dim=(1, 2), keepdim=True)).unsqueeze(1)


def defocus_blur(x: torch.Tensor, radius: torch.Tensor, gen: torch.Generator | None = None) -> torch.Tensor:
    """Out-of-focus blur: a disk kernel of `radius` pixels (at the face's resolution)."""
    b, _, h, w = x.shape
    half = int(math.ceil(float(radius.max()))) + 1
    kernels = _disk_kernels(radius.float(), 2 * half + 1)
    padded = F.pad(x.reshape(1, b, h, w), (half, half, half, half), mode="replicate")
    return F.conv2d(padded, kernels, groups=b).reshape(b, 1, h, w)


def _quantize8(x: torch.Tensor) -> torch.Tensor:
    return torch.round(x.clamp(0, 1) * 255) / 255


def under_exposure(x: torch.Tensor, gain: torch.Tensor, gen: torch.Generator | None = None) -> torch.Tensor:
    """A dark scene: the face gets `gain` (< 1) of its light, stored in 8 bits (few grey levels
    left), with the read noise that is then visible."""
    dark = x * _per_face(gain) + 0.01 * torch.randn(x.shape, generator=gen, device=x.device)
    return _quantize8(dark)


def over_exposure(x: torch.Tensor, gain: torch.Tensor, gen: torch.Generator | None = None) -> torch.Tensor:
    """A face in a too-bright scene or backlight compensation: `gain` (> 1), highlights clip."""
    return _quantize8(x * _per_face(gain))


def _dct_matrix(n: int = 8) -> torch.Tensor:
    k = torch.arange(n, dtype=torch.float32).view(-1, 1)
    i = torch.arange(n, dtype=torch.float32).view(1, -1)
    m = torch.cos(math.pi * (2 * i + 1) * k / (2 * n)) * math.sqrt(2 / n)
    m[0] /= math.sqrt(2)
    return m


# The JPEG standard's luminance quantization table (ITU-T T.81, Annex K).
_JPEG_LUMA = torch.tensor(
    [
        [16, 11, 10, 16, 24, 40, 51, 61],
        [12, 12, 14, 19, 26, 58, 60, 55],
        [14, 13, 16, 24, 40, 57, 69, 56],
        [14, 17, 22, 29, 51, 87, 80, 62],
        [18, 22, 37, 56, 68, 109, 103, 77],
        [24, 35, 55, 64, 81, 104, 113, 92],
        [49, 64, 78, 87, 103, 121, 120, 101],
        [72, 92, 95, 98, 112, 100, 103, 99],
    ],
    dtype=torch.float32,
)


@cache
def _dct(device: torch.device) -> torch.Tensor:
    return _dct_matrix().to(device)


def jpeg(x: torch.Tensor, quality: torch.Tensor, gen: torch.Generator | None = None) -> torch.Tensor:
    """Baseline JPEG of a grey image at `quality` (1-100): 8x8 block DCT, the standard table
    scaled as libjpeg does, rounding, inverse DCT (no entropy coding: it is lossless)."""
    b, _, h, w = x.shape
    ph, pw = (-h) % 8, (-w) % 8
    y = F.pad(x, (0, pw, 0, ph), mode="replicate") * 255 - 128
    hh, ww = y.shape[2] // 8, y.shape[3] // 8
    blocks = y.reshape(b, hh, 8, ww, 8).permute(0, 1, 3, 2, 4)  # (B, hh, ww, 8, 8)
    d = _dct(x.device)
    coef = d @ blocks @ d.T
    q = quality.float().clamp(1, 100).view(-1, 1, 1, 1, 1)
    scale = torch.where(q < 50, 5000 / q, 200 - 2 * q)
    table = ((_JPEG_LUMA.to(x.device) * scale + 50) / 100).floor().clamp(1, 255)
    coef = torch.round(coef / table) * table
    out = (d.T @ coef @ d).permute(0, 1, 3, 2, 4).reshape(b, 1, hh * 8, ww * 8)
    return _quantize8((out[:, :, :h, :w] + 128) / 255)


def low_resolution(x: torch.Tensor, side: torch.Tensor, gen: torch.Generator | None = None) -> torch.Tensor:
    """A far face: only `side` x `side` pixels of real detail (area downscale), upscaled back
    bilinearly as the daemon's crop resize does."""
    b, _, h, w = x.shape
    out = x.clone()
    for s in torch.unique(side.round().long()).tolist():
        chosen = side.round().long() == s
        if s >= min(h, w):
            continue
        small = F.interpolate(x[chosen], size=(s, s), mode="area")
        out[chosen] = _quantize8(F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False))
    return out


def _warp(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def head_roll(x: torch.Tensor, degrees: torch.Tensor, gen: torch.Generator | None = None) -> torch.Tensor:
    """The head tilted sideways by `degrees` (either way, at random)."""
    sign = torch.where(_rand(len(x), gen, x.device) < 0.5, -1.0, 1.0)
    a = degrees.float() * sign * (math.pi / 180)
    cos, sin = torch.cos(a), torch.sin(a)
    zero = torch.zeros_like(a)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    return _warp(x, theta)


def box_jitter(x: torch.Tensor, fraction: torch.Tensor, gen: torch.Generator | None = None) -> torch.Tensor:
    """The detector's box off by `fraction` of its size: shifted by that much in a random
    direction and grown or shrunk by up to that much."""
    n = len(x)
    angle = _rand(n, gen, x.device) * (2 * math.pi)
    f = fraction.float()
    zoom = 1 + f * (2 * _rand(n, gen, x.device) - 1)
    tx, ty = 2 * f * torch.cos(angle), 2 * f * torch.sin(angle)  # grid units span 2 per side
    zero = torch.zeros_like(f)
    theta = torch.stack([torch.stack([zoom, zero, tx], 1), torch.stack([zero, zoom, ty], 1)], 1)
    return _warp(x, theta)


def occlusion(x: torch.Tensor, area: torch.Tensor, gen: torch.Generator | None = None) -> torch.Tensor:
    """Something in front of the face (a hand, a mug, a microphone): an ellipse covering
    `area` of the crop, anywhere on its lower two thirds or sides, of a flat random tone with
    mild shading."""
    b, _, h, w = x.shape
    dev = x.device
    aspect = 0.6 + 0.9 * _rand(b, gen, dev)  # width / height of the occluder
    ry = torch.sqrt(area.float() * h * w / (math.pi * aspect))
    rx = ry * aspect
    cy = h * (0.35 + 0.6 * _rand(b, gen, dev))
    cx = w * (0.05 + 0.9 * _rand(b, gen, dev))
    ys = torch.arange(h, device=dev, dtype=torch.float32).view(1, h, 1) + 0.5
    xs = torch.arange(w, device=dev, dtype=torch.float32).view(1, 1, w) + 0.5
    inside = ((ys - cy.view(b, 1, 1)) / ry.view(b, 1, 1)) ** 2 + (
        (xs - cx.view(b, 1, 1)) / rx.view(b, 1, 1)
    ) ** 2 <= 1
    tone = 0.15 + 0.7 * _rand(b, gen, dev).view(b, 1, 1)
    shade = tone + 0.1 * (ys - cy.view(b, 1, 1)) / ry.view(b, 1, 1)
    return torch.where(inside.unsqueeze(1), shade.clamp(0, 1).unsqueeze(1), x)


# In the order a camera applies them: the scene, the geometry of the crop, the optics, the
# exposure, the sensor, the encoder.
DEGRADATIONS: dict[str, Degradation] = {
    "occlusion": occlusion,
    "roll": head_roll,
    "box_jitter": box_jitter,
    "far_face": low_resolution,
    "defocus": defocus_blur,
    "dark": under_exposure,
    "bright": over_exposure,
    "noise": sensor_noise,
    "jpeg": jpeg,
}

# The benchmark's strength of each (units in each function's docstring).
BENCH_STRENGTHS: dict[str, float] = {
    "occlusion": 0.20,  # a fifth of the face crop hidden
    "roll": 15.0,  # degrees
    "box_jitter": 0.10,  # of the box size
    "far_face": 16.0,  # pixels of real detail across the face
    "defocus": 1.5,  # disk radius in pixels at 48 px
    "dark": 0.25,  # two stops under
    "bright": 1.8,  # highlights clipped
    "noise": 0.06,  # std at mid grey (~15 of 255)
    "jpeg": 20.0,  # quality
}

# Training draws strengths between the clean end and a bit past the benchmark's.
TRAIN_RANGES: dict[str, tuple[float, float]] = {
    "occlusion": (0.05, 0.30),
    "roll": (0.0, 20.0),
    "box_jitter": (0.0, 0.14),
    "far_face": (10.0, 40.0),
    "defocus": (0.5, 2.2),
    "dark": (0.12, 0.7),
    "bright": (1.2, 2.3),
    "noise": (0.01, 0.12),
    "jpeg": (10.0, 60.0),
}


def degrade(x: torch.Tensor, kind: str, strength: float, gen: torch.Generator | None = None) -> torch.Tensor:
    """Every face of the batch through one degradation at one strength."""
    if kind not in DEGRADATIONS:
        raise ValueError(f"unknown degradation {kind!r}; choose from {', '.join(DEGRADATIONS)}")
    return DEGRADATIONS[kind](x, torch.full((len(x),), float(strength), device=x.device), gen)


def random_degrade(
    x: torch.Tensor, prob: float, gen: torch.Generator | None = None, multires: float = 0.0
) -> torch.Tensor:
    """Each degradation applied to each face independently with probability `prob`, at a
    strength drawn uniformly from its training range (so several can stack, as a dark, noisy,
    compressed far face does). `multires` is a second, independent chance of the far-face
    degradation (multi-resolution training: far faces are the camera's hardest case). Both 0
    return `x` and draw no random numbers."""
    if prob <= 0 and multires <= 0:
        return x
    n, dev = len(x), x.device
    for kind, fn in DEGRADATIONS.items():
        p = 1 - (1 - prob) * (1 - multires) if kind == "far_face" else prob
        chosen = _rand(n, gen, dev) < p
        lo, hi = TRAIN_RANGES[kind]
        strength = lo + (hi - lo) * _rand(n, gen, dev)
        if kind == "far_face":  # a few sizes, so the resize runs on a few sub-batches
            strength = torch.round(strength / 4) * 4
        if bool(chosen.any()):
            x = torch.where(chosen.view(-1, 1, 1, 1), fn(x, strength, gen), x)
    return x


def degraded_suite_sample(faces_u8: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """uint8 faces (N, S, S), each through one degradation at its benchmark strength (kinds
    in turn by index), deterministic given `seed`: a cheap per-epoch robustness check."""
    gen = torch.Generator().manual_seed(seed)
    x = faces_u8.float().unsqueeze(1) / 255.0
    out = x.clone()
    kinds = list(DEGRADATIONS)
    for i, kind in enumerate(kinds):
        chosen = torch.arange(len(x)) % len(kinds) == i
        if bool(chosen.any()):
            out[chosen] = degrade(x[chosen], kind, BENCH_STRENGTHS[kind], gen)
    return torch.round(out.squeeze(1) * 255).to(torch.uint8)


def benchmark_suite(faces_u8: np.ndarray, seed: int = 0) -> dict[str, np.ndarray]:
    """{'clean': faces, kind: every face through that degradation at its benchmark strength},
    each uint8 (N, S, S) as the daemon's crops are; deterministic given `seed`."""
    x = torch.from_numpy(faces_u8).float().unsqueeze(1) / 255.0
    out = {"clean": faces_u8}
    for i, (kind, strength) in enumerate(BENCH_STRENGTHS.items()):
        y = degrade(x, kind, strength, torch.Generator().manual_seed(seed * 1000 + i))
        out[kind] = torch.round(y.squeeze(1) * 255).to(torch.uint8).numpy()
    return out

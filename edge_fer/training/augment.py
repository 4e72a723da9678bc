"""Face augmentations applied to whole batches on the training device.

All of them run as tensor ops (one affine warp, a few elementwise ops), so a GPU never
waits on a CPU data loader and the same code runs on the CPU.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def augment_batch(
    x: torch.Tensor,
    scale: tuple[float, float] = (0.80, 1.0),
    max_rotation_deg: float = 10.0,
    max_shift: float = 0.06,
    brightness: float = 0.2,
    contrast: float = 0.25,
    noise_std: float = 0.02,
    erase_prob: float = 0.25,
) -> torch.Tensor:
    """Augment faces in [0, 1], shape (B, 1, H, W): random resized crop, flip, rotation,
    brightness/contrast, Gaussian noise, random erasing."""
    b = x.shape[0]
    dev = x.device

    def u(lo: float, hi: float) -> torch.Tensor:
        return torch.empty(b, device=dev).uniform_(lo, hi)

    # Random resized crop + rotation + flip as one affine warp. A zoom of s keeps a
    # fraction s^2 of the face area; the shift keeps the crop inside the image.
    zoom = torch.sqrt(u(scale[0], scale[1]))
    angle = u(-max_rotation_deg, max_rotation_deg) * (math.pi / 180.0)
    flip = torch.where(torch.rand(b, device=dev) < 0.5, -1.0, 1.0)
    room = (1.0 - zoom) + max_shift
    tx, ty = u(-1, 1) * room, u(-1, 1) * room
    cos, sin = torch.cos(angle) * zoom, torch.sin(angle) * zoom
    theta = torch.stack(
        [
            torch.stack([cos * flip, -sin, tx], dim=1),
            torch.stack([sin * flip, cos, ty], dim=1),
        ],
        dim=1,
    )
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)

    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    c = u(1 - contrast, 1 + contrast).view(b, 1, 1, 1)
    br = u(-brightness, brightness).view(b, 1, 1, 1) * 0.5
    x = (x - mean) * c + mean + br
    sigma = u(0, noise_std).view(b, 1, 1, 1) * (torch.rand(b, 1, 1, 1, device=dev) < 0.5)
    x = x + torch.randn_like(x) * sigma
    x = x.clamp(0.0, 1.0)
    return random_erase(x, erase_prob)


def random_erase(
    x: torch.Tensor,
    prob: float,
    area: tuple[float, float] = (0.02, 0.15),
    ratio: tuple[float, float] = (0.3, 3.3),
) -> torch.Tensor:
    """Fill one random rectangle per chosen image with uniform noise (mask arithmetic)."""
    b, _, h, w = x.shape
    dev = x.device
    target = torch.empty(b, device=dev).uniform_(*area) * h * w
    log_r = torch.empty(b, device=dev).uniform_(math.log(ratio[0]), math.log(ratio[1]))
    eh = torch.sqrt(target * torch.exp(log_r)).clamp(1, h)
    ew = torch.sqrt(target / torch.exp(log_r)).clamp(1, w)
    y0 = torch.rand(b, device=dev) * (h - eh)
    x0 = torch.rand(b, device=dev) * (w - ew)
    ys = torch.arange(h, device=dev).view(1, h, 1)
    xs = torch.arange(w, device=dev).view(1, 1, w)
    inside = (
        (ys >= y0.view(b, 1, 1))
        & (ys < (y0 + eh).view(b, 1, 1))
        & (xs >= x0.view(b, 1, 1))
        & (xs < (x0 + ew).view(b, 1, 1))
    )
    chosen = (torch.rand(b, device=dev) < prob).view(b, 1, 1)
    mask = (inside & chosen).unsqueeze(1)
    return torch.where(mask, torch.rand_like(x), x)


def mix_batch(
    x: torch.Tensor, y: torch.Tensor, alpha: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
    """Mixup of a batch with a shuffled copy of itself: (lam*x + (1-lam)*x[perm], y, y[perm], lam).

    lam ~ Beta(alpha, alpha), folded into [0.5, 1] so `y` stays the dominant label; alpha 0
    returns the batch unchanged (lam 1). For KD the teacher must see the mixed batch too.
    """
    if alpha <= 0:
        return x, y, y, 1.0
    lam = float(torch.distributions.Beta(alpha, alpha).sample())
    lam = max(lam, 1.0 - lam)
    perm = torch.randperm(x.shape[0], device=x.device)
    return lam * x + (1.0 - lam) * x[perm], y, y[perm], lam

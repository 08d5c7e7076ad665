"""Batch augmentation that suits chest X-rays: small affine, contrast/gamma, noise; no flips by default.

Anatomy is not left-right symmetric (heart on the image right, i.e. the patient's left), so horizontal
flips are off unless asked for. Works on batches of images in [0, 1] (N, 1, H, W) on any device;
randomness comes only from the ``torch.Generator`` passed in (no global seeding), so a resumed run
that re-creates the generator from (seed, epoch, step) sees exactly the same augmentations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugmentConfig:
    """Ranges of the random transforms (uniform in +-range unless said otherwise)."""

    rotate_deg: float = 7.0
    scale: float = 0.08  # zoom factor in [1 - scale, 1 + scale]
    translate: float = 0.05  # fraction of the side
    contrast: float = 0.2  # multiply around the mean by [1 - c, 1 + c]
    brightness: float = 0.05
    gamma: float = 0.2  # exponent in [1 - g, 1 + g]
    noise_std: float = 0.01
    hflip: bool = False


def _uniform(n: int, r: float, gen: torch.Generator) -> torch.Tensor:
    return (torch.rand(n, generator=gen) * 2 - 1) * r


def augment_batch(x: torch.Tensor, gen: torch.Generator, cfg: AugmentConfig = AugmentConfig()) -> torch.Tensor:
    """Randomly transform a batch (N, C, H, W) of [0, 1] images; returns a new tensor in [0, 1].

    Parameters are drawn on the CPU from ``gen`` (so results do not depend on the device).
    """
    n = x.shape[0]
    ang = _uniform(n, math.radians(cfg.rotate_deg), gen)
    sc = 1 + _uniform(n, cfg.scale, gen)
    tx, ty = _uniform(n, 2 * cfg.translate, gen), _uniform(n, 2 * cfg.translate, gen)
    flip = (torch.rand(n, generator=gen) < 0.5) if cfg.hflip else torch.zeros(n, dtype=torch.bool)
    contrast = 1 + _uniform(n, cfg.contrast, gen)
    bright = _uniform(n, cfg.brightness, gen)
    gamma = 1 + _uniform(n, cfg.gamma, gen)
    noise = torch.randn(x.shape, generator=gen) * cfg.noise_std if cfg.noise_std > 0 else None

    cos, sin = torch.cos(ang) / sc, torch.sin(ang) / sc
    sx = torch.where(flip, -1.0, 1.0)
    theta = torch.stack([torch.stack([cos * sx, -sin, tx], 1), torch.stack([sin * sx, cos, ty], 1)], 1)
    dev, dt = x.device, x.dtype
    grid = F.affine_grid(theta.to(dev, dt), list(x.shape), align_corners=False)
    # Pad with the image's own border (X-ray edges are often dark collimation, zeros would add fake edges).
    y = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    mean = y.mean(dim=(1, 2, 3), keepdim=True)
    y = (y - mean) * contrast.view(-1, 1, 1, 1).to(dev, dt) + mean + bright.view(-1, 1, 1, 1).to(dev, dt)
    y = y.clamp(0, 1) ** gamma.view(-1, 1, 1, 1).to(dev, dt)
    if noise is not None:
        y = y + noise.to(dev, dt)
    return y.clamp(0, 1)

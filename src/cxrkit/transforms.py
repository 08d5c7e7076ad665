"""Augmentation for chest X-rays, batched on any device: array functions first, dict wrappers on top (MONAI's
pattern), one module for every trainer.

Array functions take batches ``(N, C, H, W)`` of images in [0, 1] (and landmarks ``(N, P, 2)`` as ``(x, y)`` in
[0, 1] of the square, masks ``(N, K, H, W)``) on any device; every random number comes from the CPU
``torch.Generator`` passed in, in a fixed order, so results do not depend on the device and a resumed run that
re-creates the generator from (seed, step) sees exactly the same augmentations:

* :func:`random_similarity` / :func:`similarity_theta`: random rotation, scale and shift as ``affine_grid``
  matrices (also the registration trainer's misalignments);
* :func:`augment_images`: the classifier's recipe (small affine with border padding, contrast, brightness,
  gamma, noise; no flips unless asked: anatomy is not left-right symmetric);
* :func:`augment_landmarks`: the segmentation recipe (a similarity that moves the landmarks and masks with the
  image, gamma, a washed-out contrast, noise).

:class:`Augmentd` applies either recipe to a dict sample batch (``image``, optional ``landmarks`` / ``masks``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

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


@dataclass(frozen=True)
class LandmarkAugment:
    """Ranges of the random transforms; each image draws its own values uniformly.

    rotate: radians (0.3 is about 17 degrees); scale: relative zoom; translate: in units of half the side
    ([-1, 1] coordinates); contrast: the intensity range is squeezed to ``c`` in ``[1 - contrast, 1]`` of
    itself around a random level (a washed-out film); gamma: exponent ``1 +- gamma``; noise_std: Gaussian
    noise with a standard deviation drawn from ``[0, noise_std]`` (pixels in [0, 1]).
    """

    rotate: float = 0.3
    scale: float = 0.1
    translate: float = 0.05
    contrast: float = 0.7
    gamma: float = 0.3
    noise_std: float = 0.1


def _uniform(n: int, r: float, gen: torch.Generator) -> torch.Tensor:
    return (torch.rand(n, generator=gen) * 2 - 1) * r


def random_similarity(n: int, gen: torch.Generator, rotate: float, scale: float, translate: float):
    """Draw ``n`` similarity transforms: angles (radians, uniform in +-rotate), scale factors (uniform in
    1 +- scale) and translations (uniform in +-translate, ``[-1, 1]`` units), in that order from ``gen``."""
    u = lambda *shape: torch.rand(*shape, generator=gen) * 2 - 1  # noqa: E731
    return u(n) * rotate, 1 + u(n) * scale, u(n, 2) * translate


def similarity_theta(angle: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor,
                     zoom: bool = False) -> torch.Tensor:
    """(N, 2, 3) ``affine_grid`` matrices ``[s R(angle) | shift]`` (output pixel -> input location) with
    ``s = scale``, or ``s = 1 / scale`` with ``zoom`` (the image then appears ``scale`` times larger)."""
    if zoom:
        cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    else:
        cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    return torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)


def augment_images(x: torch.Tensor, gen: torch.Generator, cfg: AugmentConfig = AugmentConfig()) -> torch.Tensor:
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


def augment_landmarks(x: torch.Tensor, points: torch.Tensor, gen: torch.Generator,
            cfg: LandmarkAugment = LandmarkAugment(), masks: torch.Tensor | None = None):
    """Apply one random similarity transform per image to the image, its landmarks and (optionally) its
    masks (N, K, S, S), nearest-neighbour. Returns (image, landmarks) or (image, landmarks, masks)."""
    n = x.shape[0]
    u = lambda *shape: torch.rand(*shape, generator=gen) * 2 - 1  # noqa: E731
    ang, sc, t = random_similarity(n, gen, cfg.rotate, cfg.scale, cfg.translate)
    theta = similarity_theta(ang, sc, t, zoom=True)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    xa = F.grid_sample(x, grid, padding_mode="border", align_corners=False)
    # Output pixel p samples input theta @ [p, 1]; a landmark q of the input moves to A^-1 (q - t).
    q = points * 2 - 1
    p = torch.einsum("bij,bnj->bni", torch.linalg.inv(theta[:, :, :2]), q - theta[:, None, :, 2])
    gam = 1 + u(n, 1, 1, 1) * cfg.gamma
    xa = xa.clamp(0, 1) ** gam
    if cfg.contrast > 0:  # squeeze to c of the range, placed anywhere inside [0, 1]
        c = 1 - torch.rand(n, 1, 1, 1, generator=gen) * cfg.contrast
        xa = xa * c + torch.rand(n, 1, 1, 1, generator=gen) * (1 - c)
    if cfg.noise_std > 0:
        sigma = torch.rand(n, 1, 1, 1, generator=gen) * cfg.noise_std
        xa = (xa + torch.randn(x.shape, generator=gen) * sigma).clamp(0, 1)
    if masks is not None:
        ma = F.grid_sample(masks, F.affine_grid(theta, list(masks.shape), align_corners=False), mode="nearest",
                           padding_mode="zeros", align_corners=False)
        return xa, (p + 1) / 2, ma
    return xa, (p + 1) / 2


class Augmentd:
    """Dict wrapper: ``Augmentd(cfg)(batch, gen)`` augments ``batch["image"]`` with :func:`augment_images`
    (:class:`AugmentConfig`) or, with a :class:`LandmarkAugment`, ``image`` + ``landmarks`` (+ ``masks``) with
    :func:`augment_landmarks`; other keys pass through. Returns a new dict."""

    def __init__(self, cfg: AugmentConfig | LandmarkAugment) -> None:
        self.cfg = cfg

    def __call__(self, batch: dict[str, Any], gen: torch.Generator) -> dict[str, Any]:
        out = dict(batch)
        if isinstance(self.cfg, LandmarkAugment):
            res = augment_landmarks(batch["image"], batch["landmarks"], gen, self.cfg, masks=batch.get("masks"))
            out["image"], out["landmarks"] = res[0], res[1]
            if batch.get("masks") is not None:
                out["masks"] = res[2]
        else:
            out["image"] = augment_images(batch["image"], gen, self.cfg)
        return out


__all__ = ["AugmentConfig", "Augmentd", "LandmarkAugment", "augment_images", "augment_landmarks",
           "random_similarity", "similarity_theta"]

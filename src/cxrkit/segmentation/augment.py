"""Augmentation that moves landmarks with the image: rotation, scale, translation, contrast, gamma, noise.

Images (N, 1, S, S) in [0, 1]; landmarks (N, P, 2) as (x, y) in [0, 1] of the square. Randomness only
from the ``torch.Generator`` passed in.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


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


def augment(x: torch.Tensor, points: torch.Tensor, gen: torch.Generator,
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

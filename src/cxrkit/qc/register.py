"""2-D image registration for RCA: transforms, similarity, and the classical iterative method.

Conventions. Images are torch tensors ``(N, 1, S, S)`` on a square grid; coordinates are torch's
normalized ``[-1, 1]`` ones (``align_corners=False``: x right, y down, -1/+1 at the outer pixel edges).
A :class:`Transform` maps each *fixed* (reference) location ``p`` to the *moving* location it samples:
``T(p) = A (p + d(p)) + t`` with an affine ``theta = [A | t]`` (N, 2, 3) and a displacement field
``d`` (N, 2, h, w) in normalized units on a coarse grid (upsampled bilinearly to any size). Warping
the moving image (or its masks) with ``T`` brings it into the fixed image's space.

:func:`register_iterative` is the reference method: per pair, optimize the affine by global normalized
cross-correlation on a pyramid (64, then 128 px), then a smooth displacement field on a 16x16 control
grid by local NCC plus a bending penalty, with Adam; all pairs of a batch run together.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from cxrkit.models.warp import Transform, bending, identity, local_ncc, ncc, standardize


@dataclass(frozen=True)
class IterativeConfig:
    """Settings of :func:`register_iterative` (iterations per pyramid level, learning rates, penalty)."""

    affine_sizes: tuple[int, ...] = (64, 128)
    affine_iters: tuple[int, ...] = (80, 40)
    affine_lr: float = 0.02
    deform_size: int = 128
    deform_grid: int = 16
    deform_iters: int = 80
    deform_lr: float = 0.01
    smooth: float = 5.0
    window: int = 9


def register_iterative(moving: torch.Tensor, fixed: torch.Tensor,
                       cfg: IterativeConfig = IterativeConfig()) -> Transform:
    """Register one moving image (1, 1, S, S) to each fixed image (N, 1, S, S) by optimization."""
    n = fixed.shape[0]
    theta = identity(n, fixed.device).requires_grad_(True)
    opt = torch.optim.Adam([theta], lr=cfg.affine_lr)
    with torch.enable_grad():
        for size, iters in zip(cfg.affine_sizes, cfg.affine_iters):
            m = standardize(_resize(moving, size))
            f = standardize(_resize(fixed, size))
            for _ in range(iters):
                loss = (1 - ncc(Transform(theta).warp(m), f)).sum()
                opt.zero_grad()
                loss.backward()
                opt.step()
        theta = theta.detach()
        if cfg.deform_iters <= 0:
            return Transform(theta)
        disp = torch.zeros(n, 2, cfg.deform_grid, cfg.deform_grid, device=fixed.device, requires_grad=True)
        opt = torch.optim.Adam([disp], lr=cfg.deform_lr)
        m = standardize(_resize(moving, cfg.deform_size))
        f = standardize(_resize(fixed, cfg.deform_size))
        for _ in range(cfg.deform_iters):
            loss = (1 - local_ncc(Transform(theta, disp).warp(m), f, cfg.window) + cfg.smooth * bending(disp)).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
    return Transform(theta, disp.detach())


def _resize(x: torch.Tensor, size: int) -> torch.Tensor:
    if x.shape[-1] == size:
        return x
    return F.interpolate(x, size=(size, size), mode="area" if x.shape[-1] > size else "bilinear",
                         align_corners=None if x.shape[-1] > size else False)

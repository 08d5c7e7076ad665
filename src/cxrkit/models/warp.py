"""What a registration gives and how it is scored, on the model's device: :class:`Transform` (affine + a
displacement field, applied by ``grid_sample``) and the similarity terms used to train and to optimize it.

Conventions. Images are torch tensors ``(N, 1, S, S)`` on a square grid; coordinates are torch's normalized
``[-1, 1]`` ones (``align_corners=False``: x right, y down, -1/+1 at the outer pixel edges). A :class:`Transform`
maps each *fixed* (reference) location ``p`` to the *moving* location it samples: ``T(p) = A (p + d(p)) + t`` with
an affine ``theta = [A | t]`` (N, 2, 3) and a displacement field ``d`` (N, 2, h, w) in normalized units on a
coarse grid (upsampled bilinearly to any size). Warping the moving image (or its masks) with ``T`` brings it into
the fixed image's space.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class Transform:
    """Batch of fixed->moving maps (see the module docstring); ``disp`` may be None (affine only)."""

    theta: torch.Tensor  # (N, 2, 3)
    disp: torch.Tensor | None = None  # (N, 2, h, w), normalized units

    def grid(self, size: int) -> torch.Tensor:
        """(N, size, size, 2) sampling grid for :func:`torch.nn.functional.grid_sample`."""
        n = self.theta.shape[0]
        ident = torch.eye(2, 3, dtype=self.theta.dtype, device=self.theta.device).expand(n, 2, 3)
        p = F.affine_grid(ident, [n, 1, size, size], align_corners=False)
        if self.disp is not None:
            d = F.interpolate(self.disp, size=(size, size), mode="bilinear", align_corners=False)
            p = p + d.permute(0, 2, 3, 1)
        a, t = self.theta[:, :, :2], self.theta[:, :, 2]
        return torch.einsum("nij,nhwj->nhwi", a, p) + t[:, None, None, :]

    def warp(self, moving: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
        """Warp ``moving`` (N or 1, C, S, S) into the fixed space at its own size."""
        g = self.grid(moving.shape[-1])
        if moving.shape[0] == 1 and g.shape[0] > 1:
            moving = moving.expand(g.shape[0], *moving.shape[1:])
        return F.grid_sample(moving, g.to(moving.dtype), mode=mode, padding_mode="zeros", align_corners=False)


def identity(n: int, device: torch.device | str = "cpu") -> torch.Tensor:
    return torch.eye(2, 3, device=device).repeat(n, 1, 1)


def standardize(x: torch.Tensor) -> torch.Tensor:
    """Per-image zero mean, unit standard deviation."""
    m = x.mean(dim=(1, 2, 3), keepdim=True)
    s = x.std(dim=(1, 2, 3), keepdim=True).clamp_min(1e-3)
    return (x - m) / s


def ncc(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Global normalized cross-correlation per pair, (N,)."""
    a = a - a.mean(dim=(1, 2, 3), keepdim=True)
    b = b - b.mean(dim=(1, 2, 3), keepdim=True)
    num = (a * b).sum(dim=(1, 2, 3))
    return num / (a.pow(2).sum(dim=(1, 2, 3)) * b.pow(2).sum(dim=(1, 2, 3))).clamp_min(1e-8).sqrt()


def local_ncc(a: torch.Tensor, b: torch.Tensor, win: int = 9) -> torch.Tensor:
    """Mean squared local normalized cross-correlation in ``win`` x ``win`` windows, (N,)."""
    pool = lambda x: F.avg_pool2d(x, win, stride=1, padding=win // 2, count_include_pad=False)  # noqa: E731
    ma, mb = pool(a), pool(b)
    va, vb = pool(a * a) - ma * ma, pool(b * b) - mb * mb
    cov = pool(a * b) - ma * mb
    return (cov * cov / (va * vb).clamp_min(1e-5)).mean(dim=(1, 2, 3))


def bending(disp: torch.Tensor) -> torch.Tensor:
    """Smoothness penalty: mean squared first differences of the displacement field, (N,)."""
    dx = disp[:, :, :, 1:] - disp[:, :, :, :-1]
    dy = disp[:, :, 1:, :] - disp[:, :, :-1, :]
    return dx.pow(2).mean(dim=(1, 2, 3)) + dy.pow(2).mean(dim=(1, 2, 3))


__all__ = ["Transform", "bending", "identity", "local_ncc", "ncc", "standardize"]

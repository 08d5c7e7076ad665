"""Segmentation scores: Dice, 95th-percentile Hausdorff distance, contour error, anatomical plausibility.

Masks are boolean (H, W) in one pixel space; distances are in pixels of that space (multiply by the pixel
spacing for mm). Contours / landmarks are (N, 2) arrays of (x, y) pixels.
"""

from __future__ import annotations

import math

import cv2
import numpy as np


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """2|A∩B| / (|A| + |B|); 1.0 when both are empty."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    if a.shape != b.shape:
        raise ValueError(f"mask shapes differ: {a.shape} vs {b.shape}")
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int(np.logical_and(a, b).sum()) / total


def _border(mask: np.ndarray) -> np.ndarray:
    m = mask.astype(np.uint8)
    return (m - cv2.erode(m, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_CONSTANT, borderValue=0)) > 0


def surface_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distances (px) from every border pixel of ``a`` to the border of ``b`` and vice versa, concatenated."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    ba, bb = _border(a), _border(b)
    if not ba.any() or not bb.any():
        return np.array([math.inf])
    # distance transform of the complement of each border gives the distance to the nearest border pixel
    da = cv2.distanceTransform((~bb).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    db = cv2.distanceTransform((~ba).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    return np.concatenate([da[ba], db[bb]])


def hausdorff95(a: np.ndarray, b: np.ndarray) -> float:
    """95th percentile of the symmetric border-to-border distances (px); inf if a mask is empty."""
    d = surface_distances(a, b)
    return float(np.percentile(d, 95)) if np.isfinite(d).all() else math.inf


def contour_error(pred: np.ndarray, truth: np.ndarray) -> float:
    """Mean distance (px) from each predicted landmark to the closest point of the true closed contour."""
    pred = np.asarray(pred, float).reshape(-1, 2)
    truth = np.asarray(truth, float).reshape(-1, 2)
    p0, p1 = truth, np.roll(truth, -1, axis=0)  # closed polyline segments
    seg = p1 - p0
    length2 = np.maximum((seg**2).sum(1), 1e-12)
    t = np.clip(((pred[:, None, :] - p0[None]) * seg[None]).sum(-1) / length2[None], 0, 1)
    closest = p0[None] + t[..., None] * seg[None]
    return float(np.sqrt(((pred[:, None, :] - closest) ** 2).sum(-1)).min(1).mean())


def plausibility(mask: np.ndarray) -> dict[str, int | bool]:
    """Anatomical plausibility of one structure: one connected component and no holes."""
    m = np.asarray(mask, bool).astype(np.uint8)
    n_comp = cv2.connectedComponents(m, connectivity=8)[0] - 1
    # holes: background components not connected to the image border
    bg = (1 - m).astype(np.uint8)
    padded = cv2.copyMakeBorder(bg, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=1)
    n_bg = cv2.connectedComponents(padded, connectivity=4)[0] - 1
    holes = max(0, n_bg - 1)
    return {"components": int(n_comp), "holes": int(holes), "plausible": n_comp == 1 and holes == 0}

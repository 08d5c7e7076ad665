"""The standard clean-up of pixel masks: the largest connected component of each structure, holes filled.

Pure array functions: bool masks (H, W) in, new bool masks (H, W) out; the input is never modified.
Connectivity matches :func:`cxrkit.metrics.segmentation.plausibility`: foreground components are
8-connected, and a hole is a background region not 4-connected to the image border. So a cleaned
non-empty mask is always one component without holes (plausible), and an empty mask stays empty.

Landmark models (hybridgnet) need none of this: their masks are filled contours. It is meant for pixel
models such as ``unet`` (``cxrkit segmentation evaluate --clean-up``).
"""

from __future__ import annotations

from typing import Mapping

import cv2
import numpy as np

from cxrkit.errors import CxrkitError


def _as_mask(mask: np.ndarray) -> np.ndarray:
    m = np.asarray(mask)
    if m.ndim != 2:
        raise CxrkitError(f"mask clean-up: expected a 2-D (H, W) mask, got shape {m.shape}")
    return m.astype(bool, copy=False)


def largest_component(mask: np.ndarray) -> np.ndarray:
    """Only the largest 8-connected foreground component (ties: the one whose first pixel in row-major
    order comes first); an empty mask stays empty."""
    m = _as_mask(mask)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(m.astype(np.uint8), connectivity=8)
    if n <= 2:  # background only, or one component
        return m.copy()
    areas = stats[1:, cv2.CC_STAT_AREA]
    return labels == 1 + int(np.argmax(areas))


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """The mask with every hole filled: background pixels not 4-connected to the image border become
    foreground."""
    m = _as_mask(mask)
    background = np.pad(~m, 1, constant_values=True).astype(np.uint8)
    _, labels = cv2.connectedComponents(background, connectivity=4)
    outside = labels == labels[0, 0]  # the padded frame is one region with everything that touches it
    return ~outside[1:-1, 1:-1]


def clean_mask(mask: np.ndarray) -> np.ndarray:
    """Largest connected component, then its holes filled."""
    return fill_holes(largest_component(mask))


def clean_masks(masks: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """:func:`clean_mask` applied to each structure of ``{name: (H, W) bool mask}``."""
    return {name: clean_mask(m) for name, m in masks.items()}

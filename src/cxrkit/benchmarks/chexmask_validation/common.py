"""Names and array functions of CheXmask's technical validation (see the package docstring)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Iterable, Mapping

import cv2
import numpy as np

from cxrkit.data.chexmask import STORED_SIZE, CheXmaskRecord
from cxrkit.errors import InputError
from cxrkit.io.geometry import SquareResize
from cxrkit.io.landmarks import ORGANS
from cxrkit.metrics.segmentation import dice
from cxrkit.metrics.stats import nanmean

if TYPE_CHECKING:  # pragma: no cover
    pass

log = logging.getLogger(__name__)

STRUCTURES: tuple[str, ...] = ORGANS  # ("right_lung", "left_lung", "heart")
AVERAGE = "average"  # pseudo-structure: per image, the mean of the three structures' Dice
MATCH_LEVELS: tuple[str, ...] = ("id", "basename", "stem")
METRICS: tuple[str, ...] = ("dice_vs_a", "dice_vs_b", "dice_a_vs_b", "dice_vs_ab_mean")
_IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".dcm", ".dicom", ".tif", ".tiff", ".bmp"})
_CSV_SUFFIXES = (".csv.gz", ".csv")
_MAX_KEPT_PER_KEY = 3  # CheXmask rows kept per match key (only to name them when a key is ambiguous)

Masks = Mapping[str, np.ndarray]


def to_square_space(mask: np.ndarray, size: int = STORED_SIZE) -> np.ndarray:
    """Map a ``(H, W)`` mask in an image's own pixels to CheXmask's ``(size, size)`` space (bool).

    Pads to a centred square (``pad // 2`` before, the rest after) and resizes with nearest
    neighbour, as CheXmask preprocessed its images. A ``(size, size)`` mask is returned as it is.
    """
    m = np.asarray(mask)
    if m.ndim != 2:
        raise InputError(f"mask must be 2-D (H, W), got shape {m.shape}")
    if m.shape == (size, size):
        return m.astype(bool, copy=False)
    tf = SquareResize(m.shape[0], m.shape[1], size)
    return tf.image_to_square(m.astype(np.uint8), interpolation=cv2.INTER_NEAREST).astype(bool)


def record_masks(record: CheXmaskRecord, size: int = STORED_SIZE) -> tuple[dict[str, np.ndarray], bool]:
    """A record's three masks in the ``(size, size)`` space, and whether they had to be mapped there."""
    masks = record.masks()
    moved = (record.height, record.width) != (size, size)
    if moved:
        masks = {organ: to_square_space(m, size) for organ, m in masks.items()}
    return masks, moved


def compare_masks(hybridgnet: Masks, physician_a: Masks | None, physician_b: Masks | None = None) -> dict[str, dict[str, float]]:
    """Dice per structure: ``{structure: {metric: value}}`` for the metrics of :data:`METRICS`.

    All masks are bool ``(H, W)`` in one pixel space (shapes must agree). A missing physician gives
    NaN for the metrics that need it. ``average`` (:data:`AVERAGE`) holds the mean over the three
    structures of each metric; ``dice_vs_ab_mean`` is the mean of ``dice_vs_a`` and ``dice_vs_b``
    (the one that exists when only one physician annotated the image).
    """
    nan = float("nan")
    out: dict[str, dict[str, float]] = {}
    for s in STRUCTURES:
        va = dice(hybridgnet[s], physician_a[s]) if physician_a is not None else nan
        vb = dice(hybridgnet[s], physician_b[s]) if physician_b is not None else nan
        ab = dice(physician_a[s], physician_b[s]) if physician_a is not None and physician_b is not None else nan
        out[s] = {"dice_vs_a": va, "dice_vs_b": vb, "dice_a_vs_b": ab, "dice_vs_ab_mean": nanmean([va, vb])}
    out[AVERAGE] = {m: float(np.mean([out[s][m] for s in STRUCTURES])) for m in METRICS}
    return out


def _one(values: Iterable[object]) -> str:
    v = sorted({str(x) for x in values if str(x)})
    return v[0] if len(v) == 1 else ("mixed" if v else "")

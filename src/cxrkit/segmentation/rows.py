"""CheXmask-format rows: landmarks snapped to integer pixels, the three masks filled from them at the original
size, RLE-encoded, and the row in CheXmask's column layout (the ID column named as the dataset's CSV names it)."""

from __future__ import annotations

import numpy as np

from cxrkit.errors import InputError
from cxrkit.io.landmarks import format_landmarks, organ_masks
from cxrkit.io.rle import encode

COLUMNS = ["ImageID", "Dice RCA (Mean)", "Dice RCA (Max)", "Landmarks", "Left Lung", "Right Lung", "Heart",
           "Height", "Width"]


def chexmask_columns(id_column: str = "ImageID") -> list[str]:
    """CheXmask's CSV columns with the ID column named ``id_column`` (see :mod:`cxrkit.data.id_styles`)."""
    return [id_column] + COLUMNS[1:]


def snap_landmarks(points: np.ndarray, height: int, width: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Landmarks rounded to integer pixels inside the image (as CheXmask stores them) and the three masks
    filled from them (bool, ``height x width``)."""
    pts = np.round(points).astype(np.int64)
    pts[:, 0] = np.clip(pts[:, 0], 0, width - 1)
    pts[:, 1] = np.clip(pts[:, 1], 0, height - 1)
    return pts, organ_masks(pts.astype(np.float64), height, width)


def chexmask_row(image_id: str, points: np.ndarray, masks: dict[str, np.ndarray], height: int, width: int,
                 estimate=None, id_column: str = "ImageID") -> dict[str, str]:
    """One CheXmask-format row from :func:`snap_landmarks`' output (and an optional
    :class:`cxrkit.qc.rca.RcaEstimate` for the Dice RCA columns); the ID under ``id_column``."""

    return {id_column: image_id,
            "Dice RCA (Mean)": "" if estimate is None else f"{estimate.mean:.6f}",
            "Dice RCA (Max)": "" if estimate is None else f"{estimate.max:.6f}",
            "Landmarks": format_landmarks(points),
            "Left Lung": encode(masks["left_lung"]), "Right Lung": encode(masks["right_lung"]),
            "Heart": encode(masks["heart"]), "Height": str(height), "Width": str(width)}


def segmentation_row(image_id: str, points: np.ndarray, height: int, width: int, image: np.ndarray | None = None,
                     qc=None, id_column: str = "ImageID") -> dict[str, str]:
    """One CheXmask-format row from original-resolution landmarks; with ``qc`` (a
    :class:`cxrkit.qc.rca.RcaEstimator`) and the ``image`` the Dice RCA columns are filled."""
    if qc is not None and image is None:
        raise InputError("segmentation_row: qc needs the image")
    pts, masks = snap_landmarks(points, height, width)
    return chexmask_row(image_id, pts, masks, height, width, None if qc is None else qc.estimate(image, masks),
                        id_column=id_column)

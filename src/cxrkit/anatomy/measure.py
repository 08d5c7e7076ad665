"""Cardiothoracic ratio and structure areas from masks; streaming over CheXmask-format CSVs.

Array functions take boolean masks (H, W) in one pixel space; "right lung" is the patient's right (the
image left). Definitions (the usual radiographic ones, taken from the masks):

* heart width: maximal horizontal extent of the heart mask, ``max x - min x + 1`` over all its pixels;
* thoracic width: maximal horizontal extent between the lungs' outer borders,
  ``max x(left lung) - min x(right lung) + 1``;
* CTR = heart width / thoracic width (NaN when a structure is empty).

Widths are in pixels of the given masks; with ``spacing`` ``(row mm, column mm)`` they are also given in
mm and areas in mm^2.
"""

from __future__ import annotations

import csv
import logging
import math
import os
from dataclasses import asdict, dataclass
from typing import Iterator

import numpy as np

from cxrkit.data.chexmask import RowError, iter_records
from cxrkit.errors import CxrkitError, InputError
from cxrkit.io.atomic import atomic_open

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Measurements:
    ctr: float
    heart_width_px: int
    thorax_width_px: int
    area_right_lung_px: int
    area_left_lung_px: int
    area_heart_px: int
    heart_width_mm: float | None = None
    thorax_width_mm: float | None = None
    area_right_lung_mm2: float | None = None
    area_left_lung_mm2: float | None = None
    area_heart_mm2: float | None = None


def _x_extent(mask: np.ndarray) -> tuple[int, int] | None:
    cols = np.flatnonzero(mask.any(axis=0))
    return (int(cols[0]), int(cols[-1])) if cols.size else None


def measure_masks(right_lung: np.ndarray, left_lung: np.ndarray, heart: np.ndarray,
                  spacing: tuple[float, float] | None = None) -> Measurements:
    """CTR, widths and areas of one image's three masks (see module docstring)."""
    shapes = {right_lung.shape, left_lung.shape, heart.shape}
    if len(shapes) != 1:
        raise InputError(f"masks have different shapes {sorted(shapes)}")
    r, lft, h = _x_extent(right_lung), _x_extent(left_lung), _x_extent(heart)
    heart_w = (h[1] - h[0] + 1) if h else 0
    thorax_w = (lft[1] - r[0] + 1) if (r and lft and lft[1] >= r[0]) else 0
    ctr = heart_w / thorax_w if heart_w and thorax_w else math.nan
    areas = [int(np.count_nonzero(m)) for m in (right_lung, left_lung, heart)]
    extra = {}
    if spacing is not None:
        sy, sx = float(spacing[0]), float(spacing[1])
        extra = {"heart_width_mm": heart_w * sx, "thorax_width_mm": thorax_w * sx,
                 "area_right_lung_mm2": areas[0] * sx * sy, "area_left_lung_mm2": areas[1] * sx * sy,
                 "area_heart_mm2": areas[2] * sx * sy}
    return Measurements(ctr, heart_w, thorax_w, *areas, **extra)


COLUMNS = ["ImageID", "ctr", "heart_width_px", "thorax_width_px", "area_right_lung_px", "area_left_lung_px",
           "area_heart_px", "heart_width_mm", "thorax_width_mm", "area_right_lung_mm2", "area_left_lung_mm2",
           "area_heart_mm2", "error"]


def measure_csv(path: str | os.PathLike, spacing: tuple[float, float] | None = None) -> Iterator[dict]:
    """Measure every row of a CheXmask-format CSV (streaming; one decoded row in memory at a time).

    Rows stored at 1024 x 1024 (CheXmask's preprocessed space) give px values in that space. A row that
    cannot be read or decoded yields a dict with an ``error`` and empty measurements; nothing is dropped.
    """
    for rec in iter_records(path, lenient=True):
        if isinstance(rec, RowError):
            yield {"ImageID": rec.image_id or f"line {rec.line}", "error": rec.message}
            continue
        try:
            masks = [rec.mask(o).copy() for o in ("right_lung", "left_lung", "heart")]
            m = measure_masks(*masks, spacing=spacing)
            yield {"ImageID": rec.image_id, **asdict(m), "error": ""}
        except (CxrkitError, ValueError) as exc:
            yield {"ImageID": rec.image_id, "error": f"{rec.where}: {exc}"}


def write_measurements(rows: Iterator[dict], out: str | os.PathLike) -> tuple[int, int]:
    """Write measurement rows as CSV atomically; returns (rows, rows with an error)."""
    n = bad = 0
    with atomic_open(out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS, lineterminator="\n")
        w.writeheader()
        for row in rows:
            n += 1
            bad += bool(row.get("error"))
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) and not math.isnan(v) else
                            ("" if v is None or (isinstance(v, float) and math.isnan(v)) else v))
                        for k, v in row.items()})
    return n, bad

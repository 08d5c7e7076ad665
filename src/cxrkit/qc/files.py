"""``cxrkit qc``: RCA estimates for images whose masks are in a CheXmask-format CSV.

Each image is matched to the SEG.csv row whose ImageID (or the ID's last path component) is the image's
file name. Masks stored at the image's size are used as they are; masks stored in CheXmask's square
space (Height = Width, e.g. 1024 x 1024 for a non-square original) are compared with the image padded
to a centred square and resized to that size. An image that cannot be read, has no row, or whose masks
do not fit gets an ``error`` in its row: the run goes on and the exit status says so.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from cxrkit.errors import CxrkitError
from cxrkit.qc.rca import QC_COLUMNS, RcaEstimator

log = logging.getLogger(__name__)


def read_rows_for(seg_csv: str | os.PathLike, names: set[str]) -> dict[str, object]:
    """Stream SEG.csv once; the records whose ImageID's file name is in ``names`` (bad rows raise)."""
    from cxrkit.data.chexmask import iter_records

    found: dict[str, object] = {}
    for rec in iter_records(seg_csv):
        name = str(rec.image_id).replace("\\", "/").rsplit("/", 1)[-1]
        if name in names:
            found[name] = rec
    return found


def masks_in_image_frame(record, image: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(image, masks) in a common frame: the image's own, or CheXmask's square space of the masks."""
    from cxrkit.io.geometry import SquareResize

    masks = {k: v > 0 for k, v in record.masks().items()}
    shape = next(iter(masks.values())).shape
    if shape == image.shape:
        return image, masks
    if shape[0] == shape[1]:
        return SquareResize(image.shape[0], image.shape[1], shape[0]).image_to_square(image), masks
    raise CxrkitError(f"{record.where()}: masks are {shape[1]}x{shape[0]} but the image is "
                      f"{image.shape[1]}x{image.shape[0]} (expected the image's size or a square CheXmask space)")


def qc_files(estimator: RcaEstimator, images: Sequence[str | os.PathLike], seg_csv: str | os.PathLike,
             progress: bool = True, annotated: str | os.PathLike | None = None) -> list[dict[str, object]]:
    """One dict per image: ``ImageID``, the :data:`QC_COLUMNS` and ``error`` (empty when fine).

    With ``annotated``, also write (atomically) the SEG.csv rows of the images that were scored, in
    CheXmask's layout with the two Dice RCA columns filled and the per-structure ones appended: a file
    ``cxrkit chexmask filter --structure-threshold`` works on.
    """
    from tqdm.auto import tqdm

    from cxrkit.io.images import read_image

    paths = [Path(p) for p in images]
    rows = read_rows_for(seg_csv, {p.name for p in paths})
    out: list[dict[str, object]] = []
    for path in tqdm(paths, desc="RCA", disable=not progress):
        row: dict[str, object] = {"ImageID": path.name, **{c: "" for c in QC_COLUMNS}, "error": ""}
        try:
            if path.name not in rows:
                raise CxrkitError(f"{seg_csv}: no row with ImageID {path.name!r}")
            image, masks = masks_in_image_frame(rows[path.name], read_image(path).pixels)
            row.update({k: round(v, 6) if isinstance(v, float) else v
                        for k, v in estimator.estimate(image, masks).columns().items()})
        except (CxrkitError, OSError, ValueError) as exc:
            log.error("%s: %s", path, exc)
            row["error"] = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        out.append(row)
    if annotated is not None:
        write_annotated(out, rows, annotated)
    return out


def write_annotated(qc_rows: list[dict[str, object]], records: dict[str, object], path: str | os.PathLike) -> None:
    from cxrkit.io.atomic import write_records_csv

    merged = []
    for q in qc_rows:
        rec = records.get(str(q["ImageID"]))
        if rec is None or q["error"]:
            continue
        merged.append({"ImageID": rec.image_id, "Dice RCA (Mean)": q["Dice RCA (Mean)"],
                       "Dice RCA (Max)": q["Dice RCA (Max)"], "Landmarks": rec.landmarks, "Left Lung": rec.left_lung,
                       "Right Lung": rec.right_lung, "Heart": rec.heart, "Height": rec.height, "Width": rec.width,
                       **{c: q[c] for c in QC_COLUMNS[2:]}})
    if not merged:
        raise CxrkitError(f"{path}: no image was scored, nothing to annotate")
    write_records_csv(path, merged)


def write_qc_csv(rows: list[dict[str, object]], out: str | os.PathLike) -> None:
    """``ImageID, Dice RCA (Mean), Dice RCA (Max), <per structure>, error`` written atomically."""
    from cxrkit.io.atomic import write_records_csv

    if not rows:
        raise CxrkitError("no images to write")
    write_records_csv(out, rows)

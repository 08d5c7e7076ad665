"""``cxrkit qc``: RCA estimates for images whose masks are in a CheXmask-format CSV.

Each image is matched to the SEG.csv row whose ID is the image's identity (its path relative to the input
root; :mod:`cxrkit.io.inputs`), or, for the dataset ID columns of ``cxrkit segment --id-style`` (``Image
Index``, ``Path``, ``dicom_id``, ``image_id``, ``ImageID``), the value that style gives the image
(:func:`cxrkit.data.id_styles.candidate_ids`). A row ID that two images would both match is an error for both. Masks stored at the image's size are used as they are; masks stored in CheXmask's square
space (Height = Width, e.g. 1024 x 1024 for a non-square original) are compared with the image padded
to a centred square and resized to that size. An image that cannot be read, has no row, or whose masks
do not fit gets an ``error`` in its row: the run goes on and the exit status says so.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from cxrkit.data.chexmask import iter_records, read_columns
from cxrkit.data.id_styles import candidate_ids
from cxrkit.engine import Failure, run_pipeline, workers_for
from cxrkit.errors import InputError
from cxrkit.io.atomic import write_records_csv
from cxrkit.io.geometry import SquareResize
from cxrkit.io.images import read_image, to_uint8
from cxrkit.io.inputs import ImageInput
from cxrkit.qc.rca import QC_COLUMNS, RcaEstimator
from cxrkit.qc.reference import STRUCTURES, to_square

log = logging.getLogger(__name__)


def match_rows(seg_csv: str | os.PathLike, inputs: Sequence[ImageInput]) -> dict[str, object]:
    """Stream SEG.csv once; ``{image identity: record}`` for the images whose row is there (bad rows raise)."""
    column = read_columns(seg_csv).id_name
    wanted: dict[str, list[str]] = {}  # row id -> identities of the images it may belong to
    order: dict[str, list[str]] = {}
    for inp in inputs:
        order[inp.id] = candidate_ids(inp, column)
        for c in order[inp.id]:
            wanted.setdefault(c, []).append(inp.id)
    found: dict[str, object] = {}
    for rec in iter_records(seg_csv):
        rid = str(rec.image_id).strip()
        if rid in wanted and rid not in found:
            found[rid] = rec
    out: dict[str, object] = {}
    for ident, candidates in order.items():
        for c in candidates:
            if c in found:
                if len(wanted[c]) > 1:
                    raise InputError(f"{seg_csv}: row {column} {c!r} would match several images "
                                     f"({', '.join(wanted[c][:3])}); write SEG.csv with --id-style path")
                out[ident] = found[c]
                break
    return out


def masks_in_image_frame(record, image: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(image, masks) in a common frame: the image's own, or CheXmask's square space of the masks."""
    masks = {k: v > 0 for k, v in record.masks().items()}
    shape = next(iter(masks.values())).shape
    if shape == image.shape:
        return image, masks
    if shape[0] == shape[1]:
        return SquareResize(image.shape[0], image.shape[1], shape[0]).image_to_square(image), masks
    raise InputError(f"{record.where()}: masks are {shape[1]}x{shape[0]} but the image is "
                      f"{image.shape[1]}x{image.shape[0]} (expected the image's size or a square CheXmask space)")


@dataclass(frozen=True)
class QcItem:
    """One image to score and its SEG.csv record (None: no row, a failure)."""

    input: ImageInput
    record: object | None
    seg_csv: str
    looked_for: str

    @property
    def path(self):
        return self.input.path


@dataclass(frozen=True)
class QcWork:
    """Worker side of :class:`QcJob`: the image and its masks in RCA's square space."""

    image_size: int
    mask_size: int

    def prepare(self, item: QcItem) -> tuple[None, tuple[np.ndarray, np.ndarray]]:
        if item.record is None:
            raise InputError(f"{item.seg_csv}: no row with {item.looked_for} (image {item.path})")
        image, masks = masks_in_image_frame(item.record, read_image(item.path).pixels)
        qi = to_square(to_uint8(image), self.image_size)
        qm = np.stack([to_square(masks[s], self.mask_size, mask=True) for s in STRUCTURES])
        return None, (qi, qm)

    def finish(self, item: QcItem, meta: None, output: tuple) -> dict[str, object]:
        return {k: round(v, 6) if isinstance(v, float) else v for k, v in output.columns().items()}


class QcJob:
    """RCA on the estimator's device, a batch of images against all references at once."""

    def __init__(self, estimator: RcaEstimator) -> None:
        self.estimator = estimator
        self.work = QcWork(estimator.image_size, estimator.mask_size)

    def forward(self, inputs: list, metas: list) -> list:
        tables = self.estimator.score_batch(np.stack([x for x, _ in inputs]), np.stack([m for _, m in inputs]))
        return [self.estimator.summarize(t) for t in tables]


def qc_files(estimator: RcaEstimator, inputs: Sequence[ImageInput], seg_csv: str | os.PathLike,
             progress: bool = True, annotated: str | os.PathLike | None = None, workers: int | None = None,
             batch_size: int = 8) -> list[dict[str, object]]:
    """One dict per image: ``ImageID`` (its identity), the :data:`QC_COLUMNS` and ``error`` (empty when fine).

    Runs on the engine (:mod:`cxrkit.engine`): images and masks prepared in ``workers`` processes, the
    registration ``batch_size`` images at a time on the estimator's device. With ``annotated``, also write
    (atomically) the SEG.csv rows of the images that were scored, in CheXmask's layout with the two Dice RCA
    columns filled and the per-structure ones appended: a file ``cxrkit chexmask filter --structure-threshold``
    works on.
    """
    from tqdm.auto import tqdm


    column = read_columns(seg_csv).id_name
    rows = match_rows(seg_csv, inputs)
    items = [QcItem(inp, rows.get(inp.id), str(seg_csv),
                    f"{column} " + " or ".join(repr(c) for c in candidate_ids(inp, column))) for inp in inputs]
    out: list[dict[str, object]] = []
    bar = tqdm(total=len(items), desc="RCA", disable=not progress)

    def emit(item: QcItem, result) -> None:
        row: dict[str, object] = {"ImageID": item.input.id, **{c: "" for c in QC_COLUMNS}, "error": ""}
        if isinstance(result, Failure):
            row["error"] = result.message
            log.error("%s", result.message)
        else:
            row.update(result)
        out.append(row)
        bar.update(1)

    try:
        run_pipeline(QcJob(estimator), items, emit, workers=workers_for(workers, len(items)), batch_size=batch_size)
    finally:
        bar.close()
    if annotated is not None:
        write_annotated(out, rows, annotated)
    return out


def write_annotated(qc_rows: list[dict[str, object]], records: dict[str, object], path: str | os.PathLike) -> None:
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
        raise InputError(f"{path}: no image was scored, nothing to annotate")
    write_records_csv(path, merged)


def write_qc_csv(rows: list[dict[str, object]], out: str | os.PathLike) -> None:
    """``ImageID, Dice RCA (Mean), Dice RCA (Max), <per structure>, error`` written atomically."""
    if not rows:
        raise InputError("no images to write")
    write_records_csv(out, rows)

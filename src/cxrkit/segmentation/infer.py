"""Segment radiographs into CheXmask's format (``cxrkit segment``).

For each image: pad to a centred square and resize to the model's input (the card's preprocessing),
predict the 120 landmarks, map them back to the original pixels (x right, y down, 0-based), fill each
structure's contour at the original size and RLE-encode it (CheXmask's RLE). Rows are appended to the
output CSV as they are done (flushed), so an interrupted run resumes: image IDs already in the file are
skipped and a torn last line is cut off first. An image that cannot be read goes to ``OUT.errors.csv``
and the run goes on.
"""

from __future__ import annotations

import csv
import logging
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from cxrkit.data.id_styles import id_style as get_style
from cxrkit.engine import Failure, run_pipeline, workers_for
from cxrkit.errors import CxrkitError, InputError, UsageError, one_line
from cxrkit.io.atomic import write_records_csv
from cxrkit.io.inputs import ImageInput
from cxrkit.io.landmarks import organ_masks
from cxrkit.models.device import resolve_precision
from cxrkit.segmentation.job import SegmentItem, SegmentJob, autocast
from cxrkit.segmentation.rows import chexmask_columns

log = logging.getLogger(__name__)

def predict_landmarks(model, images: Sequence[np.ndarray], precision: str = "fp32") -> list[np.ndarray]:
    """(120, 2) landmarks per image in original pixels (float; x = column, y = row, 0-based), computed in
    ``precision`` (``fp32``, ``bf16`` or ``auto``: the card's measured-safe default on this device, what
    ``cxrkit segment`` runs)."""
    x, geoms = model.preprocess(list(images))
    device = next(model.parameters()).device
    with torch.inference_mode(), autocast(device, resolve_precision(precision, model.card, device)):
        pts = model.infer(x.to(device))["landmarks"].float().cpu().numpy() * model.card.input_size
    return [g.points_to_original(p) for g, p in zip(geoms, pts)]


def predict_masks(model, image: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """Masks (bool, original size) of one grayscale image and the landmarks (None for pixel models)."""
    if not model.card.gives("landmarks"):
        x, geoms = model.preprocess([image])
        with torch.inference_mode():
            prob = torch.sigmoid(model.infer(x.to(next(model.parameters()).device))["logits"].float())[0].cpu().numpy()
        return {s: geoms[0].map_to_original(prob[k]) > 0.5 for k, s in enumerate(model.card.labels)}, None
    pts = predict_landmarks(model, [image])[0]
    return organ_masks(pts, *image.shape), pts


def _done_ids(path: Path, columns: list[str]) -> set[str]:
    """IDs already in an output CSV being resumed (a torn last line is cut off first)."""
    if not path.is_file() or path.stat().st_size == 0:
        return set()
    data = path.read_bytes()
    if not data.endswith(b"\n"):  # a row torn by an interruption: cut it off
        with open(path, "r+b") as f:
            f.truncate(data.rfind(b"\n") + 1)
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header != columns:
            if header and header[1:] == columns[1:]:
                raise UsageError(f"{path}: exists with ID column {header[0]!r}, not {columns[0]!r}; resume it with "
                                 "the --id-style it was written with, or use another --out")
            raise UsageError(f"{path}: exists and is not a CheXmask-format CSV (header {header[:3] if header else header}); "
                             "use another --out to start over")
        return {row[0] for row in reader if row}


def segment_files(model, inputs: Sequence[ImageInput], out_csv: str | os.PathLike,
                  masks_dir: str | os.PathLike | None = None, progress: bool = True, qc=None,
                  batch_size: int = 16, id_style: str = "path", workers: int | None = None,
                  precision: str = "auto") -> tuple[int, int, int]:
    """Segment ``inputs`` (:class:`~cxrkit.io.inputs.ImageInput`, e.g. from
    :func:`~cxrkit.io.inputs.collect_images`) into ``out_csv``; returns (written, skipped as already done,
    failed). The ID column and its values follow ``id_style`` (:mod:`cxrkit.data.id_styles`; default: the
    identity, a path relative to the input root). Runs on the engine (:mod:`cxrkit.engine`): decoding and
    post-processing in ``workers`` processes (None: all cores; 0: this process), the model (and, with ``qc``, a
    :class:`cxrkit.qc.rca.RcaEstimator`, batched registration) ``batch_size`` images at a time on the model's
    device, in ``precision`` (``auto``: the card's measured-safe default, ``fp32`` or ``bf16``). Rows are appended in input order and flushed as they come,
    so an interrupted run resumes: an image whose ID is already in ``out_csv`` is skipped; an image whose ID
    another input of this run already has is an error row (``OUT.errors.csv``)."""
    from tqdm.auto import tqdm


    if batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1, got {batch_size}")
    style = get_style(id_style)
    columns = chexmask_columns(style.column)
    out_csv = Path(out_csv)
    if out_csv.is_dir():
        raise UsageError(f"{out_csv}: is a folder; --out names the CSV file to write")
    done = _done_ids(out_csv, columns)
    errors: list[tuple[str, str]] = []
    skipped = 0

    def fail(path, exc: Exception | str) -> None:
        msg = exc if isinstance(exc, str) else one_line(exc, path)
        log.error("%s", msg)
        errors.append((str(path), msg))

    todo: list[SegmentItem] = []
    first_with: dict[str, ImageInput] = {}
    for inp in inputs:
        try:
            image_id = style.value(inp)
        except CxrkitError as exc:
            fail(inp.path, exc)
            continue
        if image_id in done:
            if image_id in first_with:  # two inputs of this run with one ID: never a silent drop
                fail(inp.path, InputError(f"{inp.path}: has the same {style.column} {image_id!r} as "
                                          f"{first_with[image_id].path}; use --id-style path"))
            else:
                skipped += 1
            continue
        done.add(image_id)
        first_with[image_id] = inp
        todo.append(SegmentItem(inp, image_id))
    written = 0
    if todo:
        out_csv.parent.mkdir(parents=True, exist_ok=True)
        new = not out_csv.is_file() or out_csv.stat().st_size == 0
        job = SegmentJob(model, qc, style.column, masks_dir, precision)
        with open(out_csv, "a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=columns, lineterminator="\n")
            if new:
                w.writeheader()
                f.flush()
            bar = tqdm(total=len(todo), desc="segment", disable=not progress)

            def emit(item: SegmentItem, result) -> None:
                nonlocal written
                if isinstance(result, Failure):
                    fail(item.path, result.message)
                else:
                    w.writerow(result)
                    f.flush()  # a row is on disk once written: a killed run resumes after it
                    written += 1
                bar.update(1)

            try:
                run_pipeline(job, todo, emit, workers=workers_for(workers, len(todo)), batch_size=batch_size)
            finally:
                bar.close()
    err_path = out_csv.with_suffix(".errors.csv")
    if errors:
        write_records_csv(err_path, [{"image": p, "error": e} for p, e in errors])
    elif err_path.is_file() and todo:  # an earlier run's failures are fixed
        err_path.unlink()
    return written, skipped, len(errors)

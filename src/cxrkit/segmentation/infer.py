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

from cxrkit.errors import CxrkitError

log = logging.getLogger(__name__)

COLUMNS = ["ImageID", "Dice RCA (Mean)", "Dice RCA (Max)", "Landmarks", "Left Lung", "Right Lung", "Heart",
           "Height", "Width"]


def predict_landmarks(model, images: Sequence[np.ndarray]) -> list[np.ndarray]:
    """(120, 2) landmarks per image in original pixels (float)."""
    x, geoms = model.preprocess(list(images))
    with torch.inference_mode():
        pts = model(x)["landmarks"].float().numpy() * model.card.input_size
    return [g.points_to_original(p) for g, p in zip(geoms, pts)]


def predicts_landmarks(model) -> bool:
    """True for landmark models (masks come from filled contours), False for pixel models such as unet."""
    from cxrkit.models.families.hybridgnet import HybridGNet

    return isinstance(model, HybridGNet)


def predict_masks(model, image: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """Masks (bool, original size) of one grayscale image and the landmarks (None for pixel models)."""
    from cxrkit.io.landmarks import organ_masks

    if not predicts_landmarks(model):
        x, geoms = model.preprocess([image])
        with torch.inference_mode():
            prob = torch.sigmoid(model(x)["logits"].float())[0].numpy()
        return {s: geoms[0].map_to_original(prob[k]) > 0.5 for k, s in enumerate(model.card.labels)}, None
    pts = predict_landmarks(model, [image])[0]
    return organ_masks(pts, *image.shape), pts


def snap_landmarks(points: np.ndarray, height: int, width: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Landmarks rounded to integer pixels inside the image (as CheXmask stores them) and the three masks
    filled from them (bool, ``height x width``)."""
    from cxrkit.io.landmarks import organ_masks

    pts = np.round(points).astype(np.int64)
    pts[:, 0] = np.clip(pts[:, 0], 0, width - 1)
    pts[:, 1] = np.clip(pts[:, 1], 0, height - 1)
    return pts, organ_masks(pts.astype(np.float64), height, width)


def chexmask_row(image_id: str, points: np.ndarray, masks: dict[str, np.ndarray], height: int, width: int,
                 estimate=None) -> dict[str, str]:
    """One CheXmask-format row from :func:`snap_landmarks`' output (and an optional
    :class:`cxrkit.qc.rca.RcaEstimate` for the Dice RCA columns)."""
    from cxrkit.io.landmarks import format_landmarks
    from cxrkit.io.rle import encode

    return {"ImageID": image_id,
            "Dice RCA (Mean)": "" if estimate is None else f"{estimate.mean:.6f}",
            "Dice RCA (Max)": "" if estimate is None else f"{estimate.max:.6f}",
            "Landmarks": format_landmarks(points),
            "Left Lung": encode(masks["left_lung"]), "Right Lung": encode(masks["right_lung"]),
            "Heart": encode(masks["heart"]), "Height": str(height), "Width": str(width)}


def segmentation_row(image_id: str, points: np.ndarray, height: int, width: int, image: np.ndarray | None = None,
                     qc=None) -> dict[str, str]:
    """One CheXmask-format row from original-resolution landmarks; with ``qc`` (a
    :class:`cxrkit.qc.rca.RcaEstimator`) and the ``image`` the Dice RCA columns are filled."""
    if qc is not None and image is None:
        raise CxrkitError("segmentation_row: qc needs the image")
    pts, masks = snap_landmarks(points, height, width)
    return chexmask_row(image_id, pts, masks, height, width, None if qc is None else qc.estimate(image, masks))


def _done_ids(path: Path) -> set[str]:
    if not path.is_file() or path.stat().st_size == 0:
        return set()
    data = path.read_bytes()
    if not data.endswith(b"\n"):  # a row torn by an interruption: cut it off
        with open(path, "r+b") as f:
            f.truncate(data.rfind(b"\n") + 1)
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header != COLUMNS:
            raise CxrkitError(f"{path}: exists with another header {header[:3] if header else header}; "
                              "use another --out to start over")
        return {row[0] for row in reader if row}


def segment_files(model, paths: Sequence[str | os.PathLike], out_csv: str | os.PathLike,
                  masks_dir: str | os.PathLike | None = None, progress: bool = True, qc=None,
                  batch_size: int = 16) -> tuple[int, int, int]:
    """Segment ``paths`` into ``out_csv``; returns (written, skipped as already done, failed). Images are
    decoded and predicted ``batch_size`` at a time (one forward pass per batch), rows are written and
    flushed as each batch is done. With ``qc`` (a :class:`cxrkit.qc.rca.RcaEstimator`) the Dice RCA
    columns are filled."""
    from tqdm.auto import tqdm

    from cxrkit.io.images import read_image

    if batch_size < 1:
        raise CxrkitError(f"batch_size must be >= 1, got {batch_size}")
    out_csv = Path(out_csv)
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    done = _done_ids(out_csv)
    errors: list[tuple[str, str]] = []
    written = skipped = 0
    new = not out_csv.is_file() or out_csv.stat().st_size == 0

    def fail(path, exc: Exception) -> None:
        log.error("%s: %s", path, exc)
        errors.append((str(path), str(exc).splitlines()[0] if str(exc) else type(exc).__name__))

    todo = []
    for path in paths:
        if Path(path).name in done:
            skipped += 1
        else:
            done.add(Path(path).name)  # a name given twice is segmented once
            todo.append(path)
    with open(out_csv, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS, lineterminator="\n")
        if new:
            w.writeheader()
        bar = tqdm(total=len(todo), desc="segment", disable=not progress)
        for start in range(0, len(todo), batch_size):
            batch = []
            for path in todo[start : start + batch_size]:
                try:
                    batch.append((path, read_image(path)))
                except (CxrkitError, OSError, ValueError) as exc:
                    fail(path, exc)
            try:
                points = predict_landmarks(model, [x.pixels for _, x in batch]) if batch else []
            except (CxrkitError, ValueError):  # one odd image must not sink the batch: retry one by one
                points = [None] * len(batch)
            for (path, xray), pts in zip(batch, points):
                try:
                    if pts is None:
                        pts = predict_landmarks(model, [xray.pixels])[0]
                    row = segmentation_row(Path(path).name, pts, xray.height, xray.width, xray.pixels, qc)
                except (CxrkitError, OSError, ValueError) as exc:
                    fail(path, exc)
                    continue
                w.writerow(row)
                written += 1
                if masks_dir is not None:
                    _write_masks(row, masks_dir)
            f.flush()
            bar.update(min(batch_size, len(todo) - start))
        bar.close()
    if errors:
        from cxrkit.io.atomic import write_text

        err_path = out_csv.with_suffix(".errors.csv")
        lines = ["image,error"] + [f'"{p}","{e.replace(chr(34), chr(39))}"' for p, e in errors]
        write_text(err_path, "\n".join(lines) + "\n")
    return written, skipped, len(errors)


def _write_masks(row: dict[str, str], masks_dir: str | os.PathLike) -> None:
    from cxrkit.data.chexmask import CheXmaskRecord, write_masks

    rec = CheXmaskRecord(image_id=row["ImageID"], landmarks=row["Landmarks"], right_lung=row["Right Lung"],
                         left_lung=row["Left Lung"], heart=row["Heart"], height=int(row["Height"]),
                         width=int(row["Width"]))
    write_masks(rec, masks_dir)

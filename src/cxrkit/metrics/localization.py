"""Box overlap and the ChestX-ray8 localization scores.

Boxes are ``(x, y, w, h)`` in pixels (x, y = top-left corner, 0-based, same image for both boxes).

* IoU: intersection over union.
* IoBB: intersection over the *predicted* (detected) box's area, as Wang et al. 2017 define it (a small
  box inside the expert box scores 1).

:func:`localization_table` follows the paper's protocol (Section 4.2): for each expert box (one per image
and finding in ``BBox_List_2017``), the localization is correct at threshold T if at least one predicted
box of that finding on that image overlaps it by more than T (IoBB or IoU); the accuracy is the fraction
of correct expert boxes. Average false positives (``avg_fp``) are the predicted boxes of the finding that
overlap no expert box of it by more than T, averaged over the images with an expert box of that finding;
reported at T(IoBB) = 0.5 (``avg_fp@iobb0.5``) and T(IoU) = 0.3.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

IOBB_THRESHOLDS: tuple[float, ...] = (0.1, 0.25, 0.5, 0.75, 0.9)
IOU_THRESHOLDS: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)


def _as_array(boxes) -> np.ndarray:
    return np.asarray(boxes, dtype=np.float64).reshape(-1, 4)


def intersection_matrix(a, b) -> np.ndarray:
    """(len(a), len(b)) intersection areas of two sets of boxes."""
    a, b = _as_array(a), _as_array(b)
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 0] + a[:, None, 2], b[None, :, 0] + b[None, :, 2])
    y2 = np.minimum(a[:, None, 1] + a[:, None, 3], b[None, :, 1] + b[None, :, 3])
    return np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)


def iou_matrix(a, b) -> np.ndarray:
    a, b = _as_array(a), _as_array(b)
    inter = intersection_matrix(a, b)
    union = (a[:, 2] * a[:, 3])[:, None] + (b[:, 2] * b[:, 3])[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def iobb_matrix(gt, pred) -> np.ndarray:
    """(len(gt), len(pred)) intersection over each predicted box's area."""
    gt, pred = _as_array(gt), _as_array(pred)
    inter = intersection_matrix(gt, pred)
    area = (pred[:, 2] * pred[:, 3])[None, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(area > 0, inter / area, 0.0)


def iou(a, b) -> float:
    """IoU of two boxes."""
    return float(iou_matrix(a, b)[0, 0])


def iobb(gt, pred) -> float:
    """Intersection over the predicted box's area."""
    return float(iobb_matrix(gt, pred)[0, 0])


def localization_table(gt: pd.DataFrame, pred: pd.DataFrame, iobb_thresholds: Sequence[float] = IOBB_THRESHOLDS,
                       iou_thresholds: Sequence[float] = IOU_THRESHOLDS) -> pd.DataFrame:
    """Per-finding accuracy at each T(IoBB) and T(IoU), and average false positives (see module doc).

    ``gt``: ``Image Index, Finding, x, y, w, h``; ``pred``: the same plus ``score`` (any number of boxes
    per image and finding, possibly none). Rows: the findings present in ``gt`` (in the order of the
    NIH 14) and ``all`` (every expert box pooled). Columns ``acc_iobb@T``, ``acc_iou@T``,
    ``avg_fp@iobb0.5``, ``avg_fp@iou0.3``, ``n_boxes``, ``n_images``.
    """
    from cxrkit.findings import FINDINGS

    pred_groups = {k: g[["x", "y", "w", "h"]].to_numpy(float) for k, g in pred.groupby(["Image Index", "Finding"])}
    per_box: list[dict] = []
    fp_rows: list[dict] = []
    for (image, finding), g in gt.groupby(["Image Index", "Finding"], sort=False):
        gboxes = g[["x", "y", "w", "h"]].to_numpy(float)
        pboxes = pred_groups.get((image, finding), np.zeros((0, 4)))
        ob = iobb_matrix(gboxes, pboxes)
        ou = iou_matrix(gboxes, pboxes)
        for i in range(len(gboxes)):
            rec = {"finding": finding}
            for t in iobb_thresholds:
                rec[f"acc_iobb@{t}"] = bool((ob[i] > t).any())
            for t in iou_thresholds:
                rec[f"acc_iou@{t}"] = bool((ou[i] > t).any())
            per_box.append(rec)
        fp_rows.append({"finding": finding,
                        "fp_iobb": int((~(ob > 0.5).any(axis=0)).sum()) if len(pboxes) else 0,
                        "fp_iou": int((~(ou > 0.3).any(axis=0)).sum()) if len(pboxes) else 0})
    boxes = pd.DataFrame(per_box)
    fps = pd.DataFrame(fp_rows)
    order = [f for f in FINDINGS if f in set(boxes["finding"])] + sorted(set(boxes["finding"]) - set(FINDINGS))
    out = []
    for name, b, f in [(f, boxes[boxes.finding == f], fps[fps.finding == f]) for f in order] + [("all", boxes, fps)]:
        row = {"finding": name}
        for col in boxes.columns[1:]:
            row[col] = float(b[col].mean())
        row["avg_fp@iobb0.5"] = float(f["fp_iobb"].mean())
        row["avg_fp@iou0.3"] = float(f["fp_iou"].mean())
        row["n_boxes"] = int(len(b))
        row["n_images"] = int(len(f))
        out.append(row)
    return pd.DataFrame(out).set_index("finding")


def write_localization_report(table: pd.DataFrame, out: str | os.PathLike, name: str) -> None:
    """Write ``table`` as ``out/<name>.csv`` and a Markdown ``out/<name>.md`` (atomically)."""
    from cxrkit.io.atomic import write_text

    out = Path(out)
    write_text(out / f"{name}.csv", table.to_csv(float_format="%.4f", lineterminator="\n"))
    cols = list(table.columns)
    lines = ["| finding | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for idx, row in table.iterrows():
        lines.append(f"| {idx} | " + " | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in row) + " |")
    write_text(out / f"{name}.md", "\n".join(lines) + "\n")

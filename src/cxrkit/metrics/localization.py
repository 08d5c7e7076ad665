"""Box overlap and the ChestX-ray8 localization scores.

Boxes are ``(x, y, w, h)`` in pixels (x, y = top-left corner, 0-based, same image for both boxes).

* IoU: intersection over union.
* IoBB: intersection over the *predicted* (detected) box's area, as Wang et al. 2017 define it ("the
  Intersection over the detected B-Box area ratio"): a small box inside the expert box scores 1.

What :func:`localization_table` implements (Wang et al., CVPR 2017, Section 4: "we define a correct
localization by requiring either IoU > T(IoU) or IoBB > T(IoBB)"; the paper does not define its average
false positives more precisely, so the definition below is ours):

* The unit is an *expert group*: one (image, finding) pair with at least one expert box (``BBox_List_2017``
  has one box per image and finding, so a group is one box in practice).
* Accuracy at threshold T: for each expert box, correct if at least one predicted box of the same finding on
  the same image overlaps it by strictly more than T (IoBB or IoU); the accuracy is the fraction of expert
  boxes that are correct. The number of predicted boxes is not limited: every box the method returns counts.
* Average false positives at T (``afp_iobb@T``, ``afp_iou@T``): a predicted box of the finding on that
  image that overlaps *no* expert box of the group by more than T is a false positive; AFP = false positives
  summed over the groups / number of groups (i.e. per image with an expert box of that finding).
* Predicted boxes for (image, finding) pairs without an expert box are not scored (the paper evaluates each
  finding on the images boxed for it); their count is in ``table.attrs["n_pred_ignored"]``.
* Rows: each finding present in ``gt`` (NIH order) and ``all`` (every expert box pooled; AFP pooled over all
  groups).

``avg_fp@iobb0.5`` and ``avg_fp@iou0.3`` are kept as aliases of ``afp_iobb@0.5`` and ``afp_iou@0.3``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from cxrkit.errors import CxrkitError
from cxrkit.findings import FINDINGS
from cxrkit.io.atomic import write_text

# T(IoBB): 0.1 ... 0.7 beside T(IoU), and the paper's 0.25, 0.75, 0.9 (PAPER_IOBB_THRESHOLDS: its Table 4).
IOBB_THRESHOLDS: tuple[float, ...] = (0.1, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.7, 0.75, 0.9)
IOU_THRESHOLDS: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
PAPER_IOBB_THRESHOLDS: tuple[float, ...] = (0.1, 0.25, 0.5, 0.75, 0.9)

# Wang et al., "ChestX-ray8", CVPR 2017: "Pathology localization accuracy and average false positive number
# for 8 disease classes" (ResNet-50, ChestX-ray8, the 880/983-image box set), accuracy (Acc.) and average
# false positives (AFP) at T(IoBB) in {0.1, 0.25, 0.5, 0.75, 0.9}. Verified against the paper's text. The
# later arXiv versions (1705.02315, ChestX-ray14) update this table and add T(IoU) rows; those updated numbers
# could not be verified here and are not included.
_PAPER_FINDINGS = ("Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia",
                   "Pneumothorax")
_PAPER_ROWS = {
    "acc_iobb@0.1": (0.7277, 0.9931, 0.7124, 0.7886, 0.4352, 0.1645, 0.7500, 0.4591),
    "afp_iobb@0.1": (0.8323, 0.3506, 0.7998, 0.5589, 0.6423, 0.6047, 0.9055, 0.4776),
    "acc_iobb@0.25": (0.5500, 0.9794, 0.5424, 0.5772, 0.2823, 0.0506, 0.5583, 0.3469),
    "afp_iobb@0.25": (0.9167, 0.4553, 0.8598, 0.6077, 0.6707, 0.6158, 0.9614, 0.5000),
    "acc_iobb@0.5": (0.2833, 0.8767, 0.3333, 0.4227, 0.1411, 0.0126, 0.3833, 0.1836),
    "afp_iobb@0.5": (1.0203, 0.5630, 0.9268, 0.6585, 0.6941, 0.6189, 1.0132, 0.5285),
    "acc_iobb@0.75": (0.1666, 0.7260, 0.2418, 0.3252, 0.1176, 0.0126, 0.2583, 0.1020),
    "afp_iobb@0.75": (1.0619, 0.6616, 0.9603, 0.6921, 0.7043, 0.6199, 1.0569, 0.5396),
    "acc_iobb@0.9": (0.1333, 0.6849, 0.2091, 0.2520, 0.0588, 0.0126, 0.2416, 0.0816),
    "afp_iobb@0.9": (1.0752, 0.7226, 0.9797, 0.7124, 0.7144, 0.6199, 1.0732, 0.5437),
}
PAPER_LOCALIZATION_CVPR2017: pd.DataFrame = pd.DataFrame(_PAPER_ROWS, index=pd.Index(_PAPER_FINDINGS, name="finding"))


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
    """(len(a), len(b)) intersection over union (0 where the union is empty)."""
    a, b = _as_array(a), _as_array(b)
    inter = intersection_matrix(a, b)
    union = (a[:, 2] * a[:, 3])[:, None] + (b[:, 2] * b[:, 3])[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def iobb_matrix(gt, pred) -> np.ndarray:
    """(len(gt), len(pred)) intersection over each predicted box's area (0 for an empty predicted box)."""
    gt, pred = _as_array(gt), _as_array(pred)
    inter = intersection_matrix(gt, pred)
    area = (pred[:, 2] * pred[:, 3])[None, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(area > 0, inter / area, 0.0)


def iou(a, b) -> float:
    """IoU of two boxes ``(x, y, w, h)``."""
    return float(iou_matrix(a, b)[0, 0])


def iobb(gt, pred) -> float:
    """Intersection of ``gt`` and ``pred`` over the area of the predicted box ``pred``."""
    return float(iobb_matrix(gt, pred)[0, 0])


def _check_boxes(frame: pd.DataFrame, what: str, extra: tuple[str, ...] = ()) -> None:
    need = ["Image Index", "Finding", "x", "y", "w", "h", *extra]
    missing = [c for c in need if c not in frame.columns]
    if missing:
        raise CxrkitError(f"{what} boxes: missing columns {missing} (expected {need})")
    values = frame[["x", "y", "w", "h"]].apply(pd.to_numeric, errors="coerce").to_numpy(float)
    bad = np.isnan(values).any(axis=1) | (values[:, 2] < 0) | (values[:, 3] < 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise CxrkitError(f"{what} boxes: {int(bad.sum())} rows have a missing or negative coordinate/size, e.g. "
                          f"row {i}: {frame.iloc[i][['Image Index', 'Finding', 'x', 'y', 'w', 'h']].tolist()}")


def localization_table(gt: pd.DataFrame, pred: pd.DataFrame, iobb_thresholds: Sequence[float] = IOBB_THRESHOLDS,
                       iou_thresholds: Sequence[float] = IOU_THRESHOLDS) -> pd.DataFrame:
    """Per-finding accuracy and average false positives at each T(IoBB) and T(IoU) (see the module doc).

    ``gt``: ``Image Index, Finding, x, y, w, h``; ``pred``: the same (``score`` optional; any number of
    boxes per image and finding, possibly none). Index ``finding`` (the findings of ``gt`` in NIH order,
    then ``all``); columns ``acc_iobb@T`` ... ``acc_iou@T`` ..., ``afp_iobb@T`` ..., ``afp_iou@T`` ...,
    ``avg_fp@iobb0.5``, ``avg_fp@iou0.3``, ``n_boxes`` (expert boxes), ``n_images`` (expert groups),
    ``n_pred`` (predicted boxes scored).
    """
    _check_boxes(gt, "expert")
    _check_boxes(pred, "predicted")
    if gt.empty:
        raise CxrkitError("expert boxes: the table is empty; nothing to score")
    iobb_t = [float(t) for t in iobb_thresholds]
    iou_t = [float(t) for t in iou_thresholds]
    pred_groups = {k: g[["x", "y", "w", "h"]].to_numpy(float) for k, g in pred.groupby(["Image Index", "Finding"])}
    box_rows: list[dict] = []
    group_rows: list[dict] = []
    used = 0
    for (image, finding), g in gt.groupby(["Image Index", "Finding"], sort=False):
        gboxes = g[["x", "y", "w", "h"]].to_numpy(float)
        pboxes = pred_groups.get((image, finding), np.zeros((0, 4)))
        used += len(pboxes)
        ob, ou = iobb_matrix(gboxes, pboxes), iou_matrix(gboxes, pboxes)
        for i in range(len(gboxes)):
            rec = {"finding": finding}
            rec.update({f"acc_iobb@{t}": bool((ob[i] > t).any()) for t in iobb_t})
            rec.update({f"acc_iou@{t}": bool((ou[i] > t).any()) for t in iou_t})
            box_rows.append(rec)
        rec = {"finding": finding, "n_pred": len(pboxes)}
        rec.update({f"afp_iobb@{t}": int((~(ob > t).any(axis=0)).sum()) for t in iobb_t})
        rec.update({f"afp_iou@{t}": int((~(ou > t).any(axis=0)).sum()) for t in iou_t})
        group_rows.append(rec)
    boxes = pd.DataFrame(box_rows)
    groups = pd.DataFrame(group_rows)
    present = set(boxes["finding"])
    order = [f for f in FINDINGS if f in present] + sorted(present - set(FINDINGS))
    acc_cols = [c for c in boxes.columns if c != "finding"]
    afp_cols = [c for c in groups.columns if c.startswith("afp_")]
    out = []
    for name in [*order, "all"]:
        b = boxes if name == "all" else boxes[boxes["finding"] == name]
        g = groups if name == "all" else groups[groups["finding"] == name]
        row: dict = {"finding": name}
        row.update({c: float(b[c].mean()) for c in acc_cols})
        row.update({c: float(g[c].mean()) for c in afp_cols})
        row["avg_fp@iobb0.5"] = float(g["afp_iobb@0.5"].mean()) if "afp_iobb@0.5" in g else float("nan")
        row["avg_fp@iou0.3"] = float(g["afp_iou@0.3"].mean()) if "afp_iou@0.3" in g else float("nan")
        row.update({"n_boxes": int(len(b)), "n_images": int(len(g)), "n_pred": int(g["n_pred"].sum())})
        out.append(row)
    table = pd.DataFrame(out).set_index("finding")
    table.attrs["n_pred_ignored"] = int(len(pred) - used)
    return table


def paper_comparison(table: pd.DataFrame) -> pd.DataFrame:
    """Long table: for each finding of the paper's localization table and each T(IoBB), accuracy and AFP
    here beside Wang et al. CVPR 2017 (:data:`PAPER_LOCALIZATION_CVPR2017`); NaN where one side is missing."""
    rows = []
    for finding in PAPER_LOCALIZATION_CVPR2017.index:
        for t in PAPER_IOBB_THRESHOLDS:
            rec = {"finding": finding, "T(IoBB)": t}
            for kind in ("acc", "afp"):
                col = f"{kind}_iobb@{t}"
                ours = table.at[finding, col] if finding in table.index and col in table.columns else np.nan
                rec[f"{kind}_here"] = float(ours)
                rec[f"{kind}_wang2017_cvpr"] = float(PAPER_LOCALIZATION_CVPR2017.at[finding, col])
            rows.append(rec)
    return pd.DataFrame(rows)


def _md_table(frame: pd.DataFrame, index_name: str | None = None) -> list[str]:
    frame = frame.reset_index() if index_name else frame
    cols = list(frame.columns)
    lines = ["| " + " | ".join(str(c) for c in cols) + " |", "|" + "---|" * len(cols)]
    for row in frame.itertuples(index=False):
        cells = []
        for v in row:
            if isinstance(v, (float, np.floating)):
                cells.append("-" if not np.isfinite(v) else f"{v:.3f}")
            else:
                cells.append(str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def write_localization_report(table: pd.DataFrame, out: str | os.PathLike, name: str,
                              paper: bool = True) -> list[Path]:
    """Write ``table`` as ``out/<name>.csv`` and Markdown ``out/<name>.md``, and (``paper=True``) the
    comparison with Wang et al. CVPR 2017 as ``out/<name>_vs_paper.csv`` (also in the Markdown). Atomic."""
    out = Path(out)
    written = [out / f"{name}.csv", out / f"{name}.md"]
    write_text(written[0], table.to_csv(float_format="%.4f", lineterminator="\n"))
    lines = [f"# Localization: {name}", "",
             "Accuracy: fraction of expert boxes hit by a predicted box of the same finding with IoBB (or IoU) "
             "> T; AFP: predicted boxes hitting no expert box at T, per image with an expert box of the finding.",
             "", *_md_table(table, "finding")]
    if paper:
        comp = paper_comparison(table)
        written.append(out / f"{name}_vs_paper.csv")
        write_text(written[-1], comp.to_csv(index=False, float_format="%.4f", lineterminator="\n"))
        wide = comp.pivot(index="finding", columns="T(IoBB)", values=["acc_here", "acc_wang2017_cvpr"])
        wide = wide.reindex(list(PAPER_LOCALIZATION_CVPR2017.index))
        wide.columns = [f"{'here' if k == 'acc_here' else 'paper'} T={t}" for k, t in wide.columns]
        lines += ["", "## Beside Wang et al., CVPR 2017 (accuracy at T(IoBB))", "",
                  "Paper: ResNet-50 heatmaps on ChestX-ray8 (different model and data); its T(IoU) rows and the "
                  "later ChestX-ray14 update are not included (not verified). AFP: see the CSV.", "",
                  *_md_table(wide, "finding")]
    write_text(written[1], "\n".join(lines) + "\n")
    return written

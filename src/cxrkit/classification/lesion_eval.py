"""Heatmap -> box rules and scoring for the lesion-insertion benchmark (:mod:`~cxrkit.classification.lesion_bench`).

* :data:`BOX_CANDIDATES`: the rules a run chooses among on its validation images (:func:`choose_box_rule`).
* :func:`evaluate_on`: every sample of a dataset through a checkpoint once; per rule, one row per (sample,
  finding) with the top box of that finding's raw class map at the original image's resolution.
* :func:`score_rows`: AUROC per finding and accuracy at T(IoBB) / T(IoU) (strictly greater than T, as in Wang
  et al. 2017), mean IoU / IoBB, per finding and pooled.
* :func:`write_rows` (``test_predictions.csv``, :data:`COLUMNS`) and :func:`plot_results` (``roc.png``,
  ``overlays.png``).

Boxes ``(x, y, w, h)`` in pixels of the original image (top-left corner, 0-based).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import numpy as np

from cxrkit.classification.boxes import top_threshold_boxes
from cxrkit.classification.cam import original_maps
from cxrkit.classification.lesion_data import LesionDataset
from cxrkit.classification.lesions import LESION_FINDINGS
from cxrkit.classification.predict import Prediction, overlay
from cxrkit.errors import CxrkitError
from cxrkit.io.atomic import write_bytes, write_text
from cxrkit.metrics.auroc import auroc, roc_curve
from cxrkit.metrics.localization import IOBB_THRESHOLDS, IOU_THRESHOLDS, iobb, iou
from cxrkit.models import load_checkpoint
from cxrkit.viz import save_png

# Heatmap -> box rules the benchmark can use (name -> heatmap_to_boxes method and options). The top box of
# each finding's map is scored. "paper": the ChestX-ray8 protocol (thresholds 60 and 180 of the [0, 255] map; its
# top box is the T=180 region holding the peak); "paper@60": the same normalization and region rule at T=60
# alone; "t<T>-<rule>": threshold T (a fraction of the map's range) with the region rule each (the region holding
# the peak), largest or union (see cxrkit.classification.boxes.threshold_boxes). (The adaptive method's top box
# is the each-region at its rel_threshold, so it adds no candidate.) With box_method "auto-per-finding" (the
# benchmark's default) each finding takes the rule with the best mean IoU on its *validation* positives, with
# "auto" one rule for all (choose_box_rule); the test set never chooses.
BOX_THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
BOX_CANDIDATES: dict[str, tuple[str, dict]] = {
    "paper": ("paper", {}),
    "paper@60": ("threshold", {"threshold": 60 / 255, "component": "each"}),
    **{f"t{t:.1f}-{c}": ("threshold", {"threshold": t, "component": c})
       for t in BOX_THRESHOLDS for c in ("each", "largest", "union")},
}
BOX_SELECTION = "mean IoU of the top box with the inserted box, over the validation positives of all findings"
# box_method: "auto" (one rule for every finding), "auto-per-finding" (each finding its own rule, each chosen on
# its validation positives) or a candidate name (given).
BOX_METHODS = ("auto", "auto-per-finding")


def _top_box_key(method: str, kwargs: dict) -> tuple[float, str]:
    """The (threshold, region rule) whose top box equals the candidate's (see the BOX_CANDIDATES comment)."""
    if method == "paper":
        return (180 / 255, "each")
    if method == "threshold":
        return (float(kwargs.get("threshold", 60 / 255)), str(kwargs.get("component", "each")))
    raise CxrkitError(f"box candidate method {method!r}: the lesion benchmark scores 'paper' and 'threshold' rules")


def rows_by_rule(rows: dict[str, list[dict]], rule: dict[str, str]) -> list[dict]:
    """One row list from per-candidate row lists (aligned: same samples and findings in the same order), each
    finding's rows from its rule's list."""
    first = next(iter(rows.values()))
    return [rows[rule[r["finding"]]][i] for i, r in enumerate(first)]


_KEY_METRICS = ("mean_iou", "acc_iou@0.3", "acc_iobb@0.5")


def candidate_table(scores: dict[str, dict]) -> dict[str, dict[str, Any]]:
    return {k: {**{m: v["overall"][m] for m in _KEY_METRICS},
                "per_finding": {f: {m: d[m] for m in _KEY_METRICS} for f, d in v["per_finding"].items()}}
            for k, v in scores.items()}


def finding_table(score: dict) -> dict[str, dict[str, float]]:
    return {f: {m: v[m] for m in ("auroc", *_KEY_METRICS)} for f, v in score["per_finding"].items()}


def choose_box_rule(val_scores: dict[str, dict], finding: str | None = None) -> str:
    """The candidate with the best validation mean IoU (:data:`BOX_SELECTION`; of ``finding``'s positives when
    given); ties keep the earlier candidate in :data:`BOX_CANDIDATES` order (the paper's protocol first)."""
    names = [k for k in BOX_CANDIDATES if k in val_scores]
    if not names:
        raise CxrkitError("choose_box_rule: no scored box candidate")

    def value(k: str) -> float:
        v = val_scores[k]["overall"] if finding is None else val_scores[k]["per_finding"][finding]
        return v["mean_iou"]

    best = max(value(k) for k in names)
    return next(k for k in names if value(k) == best)


def evaluate_on(checkpoint: Path, ds: LesionDataset, box_configs: dict[str, tuple[str, dict]], progress: bool = False,
                example_config: str | dict[str, str] | None = None, clip: bool = False):
    """Predict every sample of ``ds`` once; for each box configuration, one row per (sample, finding)
    with the top box of that finding's heatmap (the raw class map, or with ``clip`` the map clipped at 0, at the
    original image's resolution). Returns ({config: rows}, examples for the overlay figure drawn with ``example_config``: one
    configuration, or one per finding; default the first configuration)."""
    example_config = example_config or next(iter(box_configs))
    if isinstance(example_config, str):
        example_config = dict.fromkeys(LESION_FINDINGS, example_config)
    import cv2  # lazy: OpenCV is loaded by the evaluation only
    from tqdm.auto import tqdm  # lazy: progress bars only here

    model = load_checkpoint(checkpoint)
    keys = {name: _top_box_key(method, kwargs) for name, (method, kwargs) in box_configs.items()}
    thresholds = tuple(sorted({t for t, _ in keys.values()}))
    components = tuple(sorted({c for _, c in keys.values()}))
    rows: dict[str, list[dict]] = {k: [] for k in box_configs}
    examples = []
    labels = list(model.card.labels)
    for i in tqdm(range(len(ds)), desc="evaluate", disable=not progress):
        img, boxes, ident = ds.render(i)
        h, w = ds.base.original_size[i % len(ds.base.names)]
        full = cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR) if img.shape != (h, w) else img
        probs, maps = original_maps(model, [full], clip=clip)
        probabilities = {f: float(probs[0, k]) for k, f in enumerate(labels)}
        tops = {f: top_threshold_boxes(maps[0][labels.index(f)], thresholds, components) for f in LESION_FINDINGS}
        for name, key in keys.items():
            top = {f: {"finding": f, "x": b.x, "y": b.y, "w": b.w, "h": b.h, "score": b.score}
                   for f in LESION_FINDINGS if (b := tops[f][key]) is not None}
            for f in LESION_FINDINGS:
                gt = boxes.get(f)
                pb = top.get(f)
                rows[name].append({"image": ident, "finding": f, "label": int(gt is not None),
                                   "prob": probabilities[f],
                                   **{f"gt_{k}": (gt[j] if gt else None) for j, k in enumerate("xywh")},
                                   **{f"pred_{k}": (pb[k] if pb else None) for k in "xywh"}})
        if len(examples) < 6 and boxes:
            shown = [{"finding": f, "x": b.x, "y": b.y, "w": b.w, "h": b.h, "score": b.score}
                     for f in LESION_FINDINGS if (b := tops[f][keys[example_config[f]]]) is not None]
            examples.append((full, Prediction(ident, w, h, model.card.name, probabilities, shown, maps[0]), boxes))
    return rows, examples


def score_rows(rows: list[dict]) -> dict[str, Any]:
    """AUROC per finding and localization: the top box is correct at T when its IoBB (IoU) with the inserted
    box is strictly greater than T, as in Wang et al. 2017; ``mean_iou`` / ``mean_iobb`` average over the
    positives (a missing box counts 0). ``overall`` pools the positives of all findings."""
    per: dict[str, Any] = {}
    all_iobb, all_iou = [], []
    for f in LESION_FINDINGS:
        r = [x for x in rows if x["finding"] == f]
        y = np.array([x["label"] for x in r], float)
        p = np.array([x["prob"] for x in r], float)
        ob, ou = [], []
        for x in r:
            if not x["label"]:
                continue
            gt = tuple(x[f"gt_{k}"] for k in "xywh")
            if x["pred_x"] is None:
                ob.append(0.0)
                ou.append(0.0)
            else:
                pb = tuple(x[f"pred_{k}"] for k in "xywh")
                ob.append(float(iobb(gt, pb)))
                ou.append(float(iou(gt, pb)))
        all_iobb += ob
        all_iou += ou
        per[f] = {"auroc": auroc(y, p), "n_pos": int(y.sum()), "n_neg": int((1 - y).sum()),
                  **_localization(np.array(ob), np.array(ou))}
    overall = {"mean_auroc": float(np.mean([per[f]["auroc"] for f in LESION_FINDINGS])),
               **_localization(np.array(all_iobb), np.array(all_iou))}
    overall["targets"] = {"mean_auroc>=0.95": overall["mean_auroc"] >= 0.95,
                          "min_auroc>=0.95": min(per[f]["auroc"] for f in LESION_FINDINGS) >= 0.95,
                          "acc_iobb@0.5>=0.8": overall["acc_iobb@0.5"] >= 0.8,
                          "acc_iou@0.3>=0.6": overall["acc_iou@0.3"] >= 0.6}
    return {"per_finding": per, "overall": overall}


def _localization(ob: np.ndarray, ou: np.ndarray) -> dict[str, float]:
    nan = float("nan")
    return {"mean_iou": float(ou.mean()) if len(ou) else nan, "mean_iobb": float(ob.mean()) if len(ob) else nan,
            **{f"acc_iobb@{t}": float(np.mean(ob > t)) if len(ob) else nan for t in IOBB_THRESHOLDS},
            **{f"acc_iou@{t}": float(np.mean(ou > t)) if len(ou) else nan for t in IOU_THRESHOLDS}}


COLUMNS = ["image", "finding", "label", "prob", "gt_x", "gt_y", "gt_w", "gt_h", "pred_x", "pred_y", "pred_w", "pred_h"]


def write_rows(path: Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r[k] is None else (f"{r[k]:.6g}" if isinstance(r[k], float) else r[k])) for k in COLUMNS})
    write_text(path, buf.getvalue())


def plot_results(out: Path, rows: list[dict], examples: list) -> None:
    import matplotlib  # lazy: plotting only here

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: after choosing the Agg backend

    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    for f in LESION_FINDINGS:
        r = [x for x in rows if x["finding"] == f]
        fpr, tpr, _ = roc_curve(np.array([x["label"] for x in r]), np.array([x["prob"] for x in r]))
        ax.plot(fpr, tpr, label=f)
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="Lesion benchmark: test ROC")
    ax.legend(loc="lower right")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    write_bytes(out / "roc.png", buf.getvalue())
    if examples:
        import cv2  # lazy: OpenCV for the overlay grid only

        tiles = []
        for full, pred, boxes in examples:
            finding = next(iter(boxes))
            canvas = overlay((np.clip(full, 0, 1) * 255).astype(np.uint8), pred, finding,
                             truth=list(boxes.items()))
            tiles.append(cv2.resize(canvas, (384, 384), interpolation=cv2.INTER_AREA))
        while len(tiles) % 3:
            tiles.append(np.zeros_like(tiles[0]))
        grid = np.vstack([np.hstack(tiles[k : k + 3]) for k in range(0, len(tiles), 3)])
        save_png(out / "overlays.png", grid)

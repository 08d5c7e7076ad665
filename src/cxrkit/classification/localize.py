"""Weakly-supervised localization on images with expert boxes (NIH ``BBox_List_2017.csv``).

For every image with boxes and every finding boxed on it, the finding's heatmap (CAM or Grad-CAM, at the
original resolution) is turned into boxes by each requested method, and the boxes are scored against the
expert boxes with :func:`cxrkit.metrics.localization.localization_table` (accuracy at T(IoBB) and T(IoU),
average false positives), as in Wang et al. 2017, Section 4.2.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pandas as pd

from cxrkit.classification.predict import (
    CARD_RULES,
    PREDICT_BOX_METHODS,
    Prediction,
    finding_boxes,
    overlay,
    predict_images,
)
from cxrkit.data.locate import ImageLocator
from cxrkit.data.nih import read_boxes
from cxrkit.errors import CxrkitError, UsageError
from cxrkit.io.atomic import write_text
from cxrkit.io.images import read_image
from cxrkit.metrics.localization import localization_table, write_localization_report
from cxrkit.models import load_model
from cxrkit.viz import save_png

log = logging.getLogger(__name__)


def localize_folder(checkpoint: str | os.PathLike, images: str | os.PathLike, boxes: str | os.PathLike,
                    out: str | os.PathLike, heatmap_method: str = "cam",
                    box_methods: tuple[str, ...] | None = None, overlays: bool = True,
                    progress: bool = True, device: str = "auto") -> dict[str, pd.DataFrame]:
    """Score localization of ``checkpoint`` on the boxed images under ``images``; returns a table per method.

    ``box_methods``: ``card`` (the model card's box rules, :func:`cxrkit.classification.predict.finding_boxes`),
    ``paper``, ``adaptive``; default ``card, paper, adaptive`` when the card has box rules, else ``paper, adaptive``.

    Writes ``out/pred_boxes.csv`` (``method, Image Index, Finding, x, y, w, h, score``, original pixels),
    ``out/localization_<method>.csv`` and ``.md`` beside the paper's table, and ``out/overlays/*.png``.
    """
    from tqdm.auto import tqdm  # lazy: progress bars only here

    model = load_model(checkpoint, task="classification", needs="cams", device=device)
    if box_methods is None:
        box_methods = ((CARD_RULES,) if model.card.box_rules else ()) + ("paper", "adaptive")
    bad = [m for m in box_methods if m not in PREDICT_BOX_METHODS]
    if bad:
        raise UsageError(f"box method {bad[0]!r} is not one of {PREDICT_BOX_METHODS}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    gt = read_boxes(boxes)
    locator = ImageLocator(images)
    gt = gt[gt["Image Index"].isin(set(locator.names()))].reset_index(drop=True)
    unknown = sorted(set(gt["Finding"]) - set(model.card.labels))
    if unknown:
        log.warning("model %s does not predict %s; those boxes are skipped", model.card.name, unknown)
        gt = gt[~gt["Finding"].isin(unknown)].reset_index(drop=True)
    if gt.empty:
        raise CxrkitError(f"{images}: no image with an expert box for a finding of model {model.card.name!r}")
    labels = list(model.card.labels)
    rows = []
    for name, group in tqdm(list(gt.groupby("Image Index", sort=True)), desc="localize", disable=not progress):
        xray = read_image(locator.path(name))
        pred = predict_images(model, [xray.pixels], [name], heatmap_method=heatmap_method, box_policy="all",
                              max_boxes=0)[0]
        findings = sorted(set(group["Finding"]))
        truth = [(r.Finding, (r.x, r.y, r.w, r.h)) for r in group.itertuples(index=False)]
        for method in box_methods:
            shown = []
            for f in findings:
                k = labels.index(f)
                for b in finding_boxes(model.card, f, pred.heatmaps[k], pred.box_map(k), method):
                    rows.append({"method": method, "Image Index": name, "Finding": f, "x": b.x, "y": b.y,
                                 "w": b.w, "h": b.h, "score": b.score})
                    shown.append({"finding": f, "x": b.x, "y": b.y, "w": b.w, "h": b.h, "score": b.score})
            if overlays:
                view = Prediction(pred.image, pred.width, pred.height, pred.model, pred.probabilities, shown, pred.heatmaps)
                save_png(out / "overlays" / f"{Path(name).stem}_{method}.png", overlay(xray.pixels, view, findings[0], truth))
    pred_df = pd.DataFrame(rows, columns=["method", "Image Index", "Finding", "x", "y", "w", "h", "score"])
    write_text(out / "pred_boxes.csv", pred_df.to_csv(index=False, float_format="%.2f", lineterminator="\n"))
    tables = {}
    for method in box_methods:
        sub = pred_df[pred_df["method"] == method].drop(columns="method")
        table = localization_table(gt, sub)
        write_localization_report(table, out, f"localization_{method}")
        tables[method] = table
    log.info("localized %d boxed images (%d expert boxes)", gt["Image Index"].nunique(), len(gt))
    return tables

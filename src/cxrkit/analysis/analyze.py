"""One-image analysis (``cxrkit analyze``): every model on one radiograph, one JSON and one HTML report.

JSON schema (``schema_version`` "1.0"; coordinates in pixels of the original image, x right, y down,
0-based; boxes as top-left ``x, y`` plus ``w, h``)::

    {"schema_version": "1.0", "image": "<file name>", "width": W, "height": H,
     "pixel_spacing_mm": [row_mm, col_mm] | null,
     "classifier": {"name", "description", "labels"},
     "probabilities": {finding: p}, "boxes": [{"finding", "x", "y", "w", "h", "score"}],   # as `cxrkit predict`
     "segmentation": {"model": name, "landmarks": [[x, y] x 120] (right lung 0-43, left lung 44-93,
                      heart 94-119), "masks": {"right_lung", "left_lung", "heart": CheXmask RLE}},
     "qc": {"dice_rca_mean", "dice_rca_max", "dice_rca_calibrated", "per_structure": {...}} | null,
     "qc_note": "<why qc is null>" (only when it is),
     "measurements": {"ctr", "heart_width_px", "thorax_width_px", "area_*_px", and *_mm / *_mm2 with spacing}}

The HTML report is self-contained (overlays embedded as PNG data URIs).
"""

from __future__ import annotations

import base64
import html
import json
import logging
import math
import os
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

import numpy as np

from cxrkit.errors import CxrkitError

log = logging.getLogger(__name__)

SCHEMA_VERSION = "1.0"


class Analyzer:
    """Models loaded once, applied per image.

    Args:
        classifier: a cxrkit classifier (default: the shipped ``resnet_lite_lesions``, trained only on
            the lesion-insertion benchmark; pass a model trained with ``cxrkit train`` for real findings).
        segmenter: a landmark model (default: the shipped ``hybridgnet``).
        qc: an :class:`cxrkit.qc.rca.RcaEstimator`, or None to skip quality control.
    """

    def __init__(self, classifier=None, segmenter=None, qc=None, qc_note: str = "") -> None:
        from cxrkit.models import create_model

        self.classifier = classifier if classifier is not None else create_model("resnet_lite_lesions", pretrained=True)
        self.segmenter = segmenter if segmenter is not None else create_model("hybridgnet", pretrained=True)
        self.qc = qc
        self.qc_note = qc_note or ("" if qc is not None else "quality control not run")

    def analyze(self, pixels: np.ndarray, name: str, spacing: tuple[float, float] | None = None) -> tuple[dict, dict]:
        """(analysis JSON, overlays {"segmentation", "heatmap"} as BGR arrays) of one image (H, W)."""
        from cxrkit.anatomy.measure import measure_masks
        from cxrkit.classification.predict import overlay, predict_images
        from cxrkit.data.chexmask import render_overlay
        from cxrkit.io.images import to_uint8
        from cxrkit.segmentation.infer import chexmask_row, predict_landmarks, snap_landmarks

        if pixels.ndim != 2:
            raise CxrkitError(f"{name}: expected a 2-D grayscale image, got shape {pixels.shape}")
        h, w = pixels.shape
        pred = predict_images(self.classifier, [pixels], [name])[0]
        ipts, masks = snap_landmarks(predict_landmarks(self.segmenter, [pixels])[0], h, w)
        row = chexmask_row(name, ipts, masks, h, w)
        predicted = pred.to_json()
        m = measure_masks(masks["right_lung"], masks["left_lung"], masks["heart"], spacing)
        doc = {
            "schema_version": SCHEMA_VERSION, "image": name, "width": int(w), "height": int(h),
            "pixel_spacing_mm": list(spacing) if spacing else None,
            "classifier": {"name": self.classifier.card.name, "description": self.classifier.card.description,
                           "labels": list(self.classifier.card.labels)},
            "probabilities": predicted["probabilities"], "boxes": predicted["boxes"],
            "segmentation": {"model": self.segmenter.card.name, "landmarks": ipts.tolist(),
                             "masks": {"right_lung": row["Right Lung"], "left_lung": row["Left Lung"],
                                       "heart": row["Heart"]}},
            "qc": None,
            "measurements": {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in asdict(m).items()
                             if v is not None},
        }
        if self.qc is not None:
            est = self.qc.estimate(pixels, masks)
            doc["qc"] = {"dice_rca_mean": round(est.mean, 6), "dice_rca_max": round(est.max, 6),
                         "dice_rca_calibrated": None if est.calibrated is None else round(est.calibrated["all"], 6),
                         "per_structure": {s: {"mean": round(est.per_structure_mean[s], 6),
                                               "max": round(est.per_structure_max[s], 6),
                                               "calibrated": None if est.calibrated is None else round(est.calibrated[s], 6)}
                                           for s in est.per_structure_mean}}
        else:
            doc["qc_note"] = self.qc_note
        gray8 = to_uint8(pixels)
        overlays = {"segmentation": render_overlay(masks, ipts.astype(np.float64), gray8),
                    "heatmap": overlay(gray8, pred)}
        return doc, overlays


def _png_data_uri(bgr: np.ndarray, max_side: int = 768) -> str:
    import cv2

    s = max_side / max(bgr.shape[:2])
    if s < 1:
        bgr = cv2.resize(bgr, (round(bgr.shape[1] * s), round(bgr.shape[0] * s)), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".png", bgr)
    if not ok:
        raise CxrkitError("could not encode an overlay as PNG")
    return "data:image/png;base64," + base64.b64encode(buf.tobytes()).decode("ascii")


def render_html(doc: dict, overlays: dict) -> str:
    """A self-contained HTML report of one analysis."""
    e = html.escape
    probs = sorted(doc["probabilities"].items(), key=lambda kv: -kv[1])
    bars = "".join(f'<tr><td>{e(k)}</td><td><div class="bar" style="width:{200 * v:.0f}px"></div></td>'
                   f"<td>{v:.3f}</td></tr>" for k, v in probs)
    m = doc["measurements"]
    meas = "".join(f"<tr><td>{e(k)}</td><td>{v if not isinstance(v, float) else f'{v:.4g}'}</td></tr>"
                   for k, v in m.items())
    q = doc["qc"]
    qc = (f"Dice RCA mean {q['dice_rca_mean']:.3f}, max {q['dice_rca_max']:.3f}"
          + (f", calibrated {q['dice_rca_calibrated']:.3f}" if q["dice_rca_calibrated"] is not None else "")
          + (" &mdash; <b>flag for review</b>" if q["dice_rca_mean"] < 0.7 else "")) if q else e(doc.get("qc_note", ""))
    ctr = m.get("ctr")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>cxrkit analysis: {e(doc['image'])}</title>
<style>body{{font-family:system-ui,sans-serif;margin:1.5em;color:#222}} img{{max-width:48%;margin-right:1%}}
table{{border-collapse:collapse;font-size:13px}} td{{padding:2px 6px;border-bottom:1px solid #eee}}
.bar{{height:10px;background:#3a7bd5}} .badge{{display:inline-block;padding:3px 8px;border-radius:4px;background:#eef;margin-right:8px}}
</style></head><body>
<h1>{e(doc['image'])}</h1>
<p>{doc['width']} x {doc['height']} px; schema {e(doc['schema_version'])}</p>
<p><span class="badge">CTR {'' if ctr is None else f'{ctr:.3f}'}</span><span class="badge">QC: {qc}</span></p>
<p><img src="{_png_data_uri(overlays['segmentation'])}" alt="landmarks and masks">
<img src="{_png_data_uri(overlays['heatmap'])}" alt="heatmap and boxes"></p>
<h2>Findings ({e(doc['classifier']['name'])})</h2><p>{e(doc['classifier']['description'])}</p>
<table>{bars}</table>
<h2>Measurements</h2><table>{meas}</table>
</body></html>
"""


def analyze_files(analyzer: Analyzer, paths: Sequence[str | os.PathLike], out: str | os.PathLike,
                  progress: bool = True) -> list[tuple[str, str]]:
    """Write ``<stem>.json`` and ``<stem>.html`` per image into ``out``; returns the (path, error) failures."""
    from tqdm.auto import tqdm

    from cxrkit.io.atomic import write_text
    from cxrkit.io.images import read_image

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    failures = []
    for path in tqdm(list(paths), desc="analyze", disable=not progress):
        try:
            xray = read_image(path)
            doc, overlays = analyzer.analyze(xray.pixels, Path(path).name, xray.spacing)
            stem = Path(path).stem
            write_text(out / f"{stem}.json", json.dumps(doc, indent=1) + "\n")
            write_text(out / f"{stem}.html", render_html(doc, overlays))
        except (CxrkitError, OSError, ValueError) as exc:
            log.error("%s: %s", path, exc)
            failures.append((str(path), str(exc).splitlines()[0] if str(exc) else type(exc).__name__))
    return failures

"""One-image analysis (``cxrkit analyze``): every model on one radiograph, one JSON and one HTML report.

JSON schema (``schema_version`` "1.1"; coordinates in pixels of the original image, x right, y down,
0-based; boxes as top-left ``x, y`` plus ``w, h``)::

    {"schema_version": "1.1", "image": "<file name>", "width": W, "height": H,
     "pixel_spacing_mm": [row_mm, col_mm] | null,
     "classifier": {"name", "description", "labels"},
     "probabilities": {finding: p}, "boxes": [{"finding", "x", "y", "w", "h", "score"}],   # as `cxrkit predict`
     "segmentation": {"model": name, "landmarks": [[x, y] x 120] (right lung 0-43, left lung 44-93,
                      heart 94-119), "masks": {"right_lung", "left_lung", "heart": CheXmask RLE}},
     "qc": {"dice_rca_mean", "dice_rca_max", "dice_rca_calibrated", "per_structure": {...}} | null,
     "qc_note": "<why qc is null>" (only when it is),
     "measurements": {"ctr", "heart_width_px", "thorax_width_px", "area_*_px", and *_mm / *_mm2 with spacing},
     "heatmaps": {"method": "cam", "width": w, "height": h,                  # only when asked for (1.1)
                  "maps": {finding: {"max": m, "png": "data:image/png;base64,..."}}}}

``heatmaps`` (added in 1.1, optional; ``cxrkit analyze --heatmaps``, ``POST /v1/analyze?heatmaps=true``):
each finding's class activation map at reduced resolution, an 8-bit grayscale PNG of ``w`` x ``h`` pixels
(the longer side :data:`HEATMAP_SIDE`, the aspect ratio of the image) that covers the whole original image:
stretch it to ``W`` x ``H`` to overlay it. A pixel value ``v`` stands for the heat ``v / 255 * max`` (in the
model's arbitrary CAM units; ``max`` is 0 for an all-zero map). Readers of 1.0 documents ignore it; every
1.0 field keeps its meaning, so consumers should accept any ``1.x``.

The HTML report is self-contained (overlays embedded as PNG data URIs). :func:`analyze_files` can also
write ``<stem>.preview.png``, a downscaled 8-bit copy of the image (longer side at most
:data:`PREVIEW_SIDE`), which the service's browse mode (``cxrkit serve --results DIR``) shows under the
overlays without reading the original image's path.
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

SCHEMA_VERSION = "1.1"
HEATMAP_SIDE = 128
PREVIEW_SIDE = 1024
PREVIEW_SUFFIX = ".preview.png"


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

    def analyze(self, pixels: np.ndarray, name: str, spacing: tuple[float, float] | None = None, *,
                heatmaps: bool = False, overlays: bool = True) -> tuple[dict, dict | None]:
        """(analysis JSON, overlays {"segmentation", "heatmap"} as BGR arrays) of one image (H, W).

        ``heatmaps``: also put each finding's heatmap into the JSON (the optional ``heatmaps`` object of
        schema 1.1, see the module docstring). ``overlays=False``: skip drawing them (None is returned in
        their place), for callers that only need the JSON (the service, batch jobs).
        """
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
        if heatmaps:
            doc["heatmaps"] = encode_heatmaps(pred.heatmaps, list(self.classifier.card.labels))
        if not overlays:
            return doc, None
        gray8 = to_uint8(pixels)
        return doc, {"segmentation": render_overlay(masks, ipts.astype(np.float64), gray8),
                     "heatmap": overlay(gray8, pred)}


def encode_heatmaps(maps: np.ndarray | None, labels: Sequence[str], side: int = HEATMAP_SIDE) -> dict:
    """The JSON ``heatmaps`` object of float heatmaps ``maps`` (K, H, W) at original resolution, one per label.

    Each map is shrunk (area averaging) so that its longer side is at most ``side``, scaled to 0..255 by its
    own maximum and stored as a grayscale PNG data URI along with that maximum.
    """
    import cv2

    if maps is None:
        raise CxrkitError("the classifier returned no heatmaps to encode (predict with keep_heatmaps=True)")
    if maps.ndim != 3 or maps.shape[0] != len(labels):
        raise CxrkitError(f"heatmaps of shape {maps.shape} do not match {len(labels)} labels {list(labels)}")
    if side < 1:
        raise CxrkitError(f"heatmap side must be positive, got {side}")
    h, w = maps.shape[1:]
    s = min(1.0, side / max(h, w))
    gw, gh = max(1, round(w * s)), max(1, round(h * s))
    out = {}
    for finding, m in zip(labels, maps):
        m = np.nan_to_num(np.asarray(m, np.float32), nan=0.0, posinf=0.0, neginf=0.0).clip(min=0)
        if (gh, gw) != m.shape:
            m = cv2.resize(m, (gw, gh), interpolation=cv2.INTER_AREA)
        top = float(m.max())
        q = np.zeros((gh, gw), np.uint8) if top <= 0 else np.clip(m * (255.0 / top) + 0.5, 0, 255).astype(np.uint8)
        out[finding] = {"max": round(top, 6), "png": _data_uri(_png_fit(q, max(gh, gw)))}
    return {"method": "cam", "width": gw, "height": gh, "maps": out}


def decode_heatmap(entry: dict) -> np.ndarray:
    """One ``heatmaps["maps"][finding]`` entry back to float32 heat values (h, w) in the model's units."""
    import cv2

    uri = entry.get("png", "") if isinstance(entry, dict) else ""
    prefix = "data:image/png;base64,"
    if not uri.startswith(prefix):
        raise CxrkitError(f"heatmap entry is not a PNG data URI: {str(uri)[:40]!r}")
    q = cv2.imdecode(np.frombuffer(base64.b64decode(uri[len(prefix):]), np.uint8), cv2.IMREAD_GRAYSCALE)
    if q is None:
        raise CxrkitError("heatmap PNG could not be decoded")
    return q.astype(np.float32) * (float(entry.get("max", 0.0)) / 255.0)


def preview_png(pixels: np.ndarray, side: int = PREVIEW_SIDE) -> bytes:
    """A downscaled 8-bit grayscale PNG of ``pixels`` (longer side at most ``side``) for browse mode."""
    from cxrkit.io.images import to_uint8

    return _png_fit(to_uint8(pixels), side)


def _png_fit(image: np.ndarray, side: int) -> bytes:
    """``image`` (gray or BGR, uint8) as PNG bytes, area-downscaled so that its longer side is at most ``side``."""
    import cv2

    s = side / max(image.shape[:2])
    if s < 1:
        size = (max(1, round(image.shape[1] * s)), max(1, round(image.shape[0] * s)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".png", image)
    if not ok:
        raise CxrkitError(f"could not encode a {image.shape[1]}x{image.shape[0]} image as PNG")
    return buf.tobytes()


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


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
<p><img src="{_data_uri(_png_fit(overlays['segmentation'], 768))}" alt="landmarks and masks">
<img src="{_data_uri(_png_fit(overlays['heatmap'], 768))}" alt="heatmap and boxes"></p>
<h2>Findings ({e(doc['classifier']['name'])})</h2><p>{e(doc['classifier']['description'])}</p>
<table>{bars}</table>
<h2>Measurements</h2><table>{meas}</table>
</body></html>
"""


def analyze_files(analyzer: Analyzer, paths: Sequence[str | os.PathLike], out: str | os.PathLike,
                  progress: bool = True, *, heatmaps: bool = False, preview: bool = False) -> list[tuple[str, str]]:
    """Write ``<stem>.json`` and ``<stem>.html`` per image into ``out``; returns the (path, error) failures.

    ``heatmaps``: include the optional ``heatmaps`` object in each JSON. ``preview``: also write
    ``<stem>.preview.png`` (see :func:`preview_png`), the image browse mode shows.
    """
    from tqdm.auto import tqdm

    from cxrkit.io.atomic import write_bytes, write_text
    from cxrkit.io.images import read_image

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    failures = []
    for path in tqdm(list(paths), desc="analyze", disable=not progress):
        try:
            xray = read_image(path)
            doc, overlays = analyzer.analyze(xray.pixels, Path(path).name, xray.spacing, heatmaps=heatmaps)
            stem = Path(path).stem
            if preview:
                write_bytes(out / f"{stem}{PREVIEW_SUFFIX}", preview_png(xray.pixels))
            write_text(out / f"{stem}.json", json.dumps(doc, indent=1) + "\n")
            write_text(out / f"{stem}.html", render_html(doc, overlays))
        except (CxrkitError, OSError, ValueError) as exc:
            log.error("%s: %s", path, exc)
            failures.append((str(path), str(exc).splitlines()[0] if str(exc) else type(exc).__name__))
    return failures

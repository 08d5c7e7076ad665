"""The analysis document (``cxrkit analyze``'s JSON): its schema, model-card summaries, heatmaps, the preview.

JSON schema (``schema_version`` "1.2"; coordinates in pixels of the original image, x right, y down,
0-based; boxes as top-left ``x, y`` plus ``w, h``)::
    {"schema_version": "1.2", "image": "<identity: path relative to the input root>", "width": W, "height": H,
     "pixel_spacing_mm": [row_mm, col_mm] | null,
     "classifier": {"name", "description", "labels", "provenance": {...}} | null,       # null: none was run
     "probabilities": {finding: p}, "boxes": [{"finding", "x", "y", "w", "h", "score"}],   # as `cxrkit predict`
     "segmentation": {"model": name, "provenance": {...}, "landmarks": [[x, y] x 120] (right lung 0-43, left
                      lung 44-93, heart 94-119), "masks": {"right_lung", "left_lung", "heart": CheXmask RLE}},
     "qc": {"dice_rca_mean", "dice_rca_max", "dice_rca_calibrated", "per_structure": {...},
            "reference": {"reference_set", "references", "method", "calibrated"}} | null,   # reference: 1.2
     "qc_note": "<why qc is null>" (only when it is),
     "measurements": {"ctr", "heart_width_px", "thorax_width_px", "area_*_px", and *_mm / *_mm2 with spacing},
     "heatmaps": {"method": "cam", "width": w, "height": h,                  # only when asked for (1.1)
                  "maps": {finding: {"min": m0, "max": m1, "png": "data:image/png;base64,..."}}}}

Without a classifier (the default: no classifier trained on real labels ships with cxrkit; name one with
``--model``), ``classifier`` is null, ``probabilities`` is ``{}`` and ``boxes`` is ``[]`` (1.2).
``classifier.provenance`` / ``segmentation.provenance`` (1.2): the model card's training data, metrics,
license and intended use (:class:`cxrkit.models.Provenance`); ``synthetic: true`` marks a model trained on
synthetic findings, whose outputs are not findings on real images.

``heatmaps`` (added in 1.1, optional; ``cxrkit analyze --heatmaps``, ``POST /v1/analyze?heatmaps=true``):
each finding's class activation map at reduced resolution, an 8-bit grayscale PNG of ``w`` x ``h`` pixels
(the longer side :data:`HEATMAP_SIDE`, the aspect ratio of the image) that covers the whole original image:
stretch it to ``W`` x ``H`` to overlay it. Each map is min-max normalized over its own range (1.2): a pixel
value ``v`` stands for the heat ``min + v / 255 * (max - min)`` in the model's CAM units (logit units before
pooling, any sign), so every map is visible whatever its range; ``min`` = ``max`` for a constant map (then
all pixels are 0). 1.1 documents had no ``min`` (the maps were clipped at 0 and scaled by ``max``; read a
missing ``min`` as 0). Every 1.0 field keeps its meaning, so consumers should accept any ``1.x``.

The HTML report is self-contained (overlays embedded as PNG data URIs). :func:`analyze_files` can also
write ``<stem>.preview.png``, a downscaled 8-bit copy of the image (longer side at most
:data:`PREVIEW_SIDE`), which the service's browse mode (``cxrkit serve --results DIR``) shows under the
overlays without reading the original image's path.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from cxrkit.errors import InputError, UsageError
from cxrkit.io.images import encode_png, to_uint8

SCHEMA_VERSION = "1.2"
HEATMAP_SIDE = 128
PREVIEW_SIDE = 1024
PREVIEW_SUFFIX = ".preview.png"


def card_summary(card) -> dict:
    """The part of a model card that analysis JSON, the HTML report and the viewer show."""
    return {"name": card.name, "description": card.description, "labels": list(card.labels),
            "provenance": card.provenance.to_dict()}


def encode_heatmaps(maps: np.ndarray | None, labels: Sequence[str], side: int = HEATMAP_SIDE) -> dict:
    """The JSON ``heatmaps`` object of float heatmaps ``maps`` (K, H, W) at original resolution, one per label.

    Each map is shrunk (area averaging) so that its longer side is at most ``side``, min-max scaled to 0..255
    over its own range and stored as a grayscale PNG data URI along with that range (``min``, ``max``).
    """
    if maps is None:
        raise InputError("the classifier returned no heatmaps to encode (predict with keep_heatmaps=True)")
    if maps.ndim != 3 or maps.shape[0] != len(labels):
        raise InputError(f"heatmaps of shape {maps.shape} do not match {len(labels)} labels {list(labels)}")
    if side < 1:
        raise UsageError(f"heatmap side must be positive, got {side}")
    h, w = maps.shape[1:]
    s = min(1.0, side / max(h, w))
    gw, gh = max(1, round(w * s)), max(1, round(h * s))
    out = {}
    for finding, m in zip(labels, maps):
        m = np.nan_to_num(np.asarray(m, np.float32), nan=0.0, posinf=0.0, neginf=0.0)
        if (gh, gw) != m.shape:
            m = cv2.resize(m, (gw, gh), interpolation=cv2.INTER_AREA)
        lo, hi = float(m.min()), float(m.max())
        q = (np.zeros((gh, gw), np.uint8) if hi <= lo
             else np.clip((m - lo) * (255.0 / (hi - lo)) + 0.5, 0, 255).astype(np.uint8))
        out[finding] = {"min": round(lo, 6), "max": round(hi, 6), "png": data_uri(encode_png(q))}
    return {"method": "cam", "width": gw, "height": gh, "maps": out}


def decode_heatmap(entry: dict) -> np.ndarray:
    """One ``heatmaps["maps"][finding]`` entry back to float32 heat values (h, w) in the model's units
    (``min + v / 255 * (max - min)``; a 1.1 entry without ``min`` reads as ``min = 0``)."""
    uri = entry.get("png", "") if isinstance(entry, dict) else ""
    prefix = "data:image/png;base64,"
    if not uri.startswith(prefix):
        raise InputError(f"heatmap entry is not a PNG data URI: {str(uri)[:40]!r}")
    q = cv2.imdecode(np.frombuffer(base64.b64decode(uri[len(prefix):]), np.uint8), cv2.IMREAD_GRAYSCALE)
    if q is None:
        raise InputError("heatmap PNG could not be decoded")
    lo = float(entry.get("min", 0.0))
    return lo + q.astype(np.float32) * ((float(entry.get("max", 0.0)) - lo) / 255.0)


def preview_png(pixels: np.ndarray, side: int = PREVIEW_SIDE) -> bytes:
    """A downscaled 8-bit grayscale PNG of ``pixels`` (longer side at most ``side``) for browse mode."""
    return encode_png(to_uint8(pixels), side)


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def refuse_foreign(json_path: Path, image_id: str) -> None:
    """An output JSON already there for another image (an earlier run over another input root) is kept."""
    if not json_path.is_file():
        return
    try:
        other = json.loads(json_path.read_text(encoding="utf-8")).get("image")
    except (OSError, ValueError, AttributeError):
        other = None
    if other != image_id:
        raise InputError(f"{json_path}: exists and belongs to {other!r}, not {image_id!r}; use another --out")

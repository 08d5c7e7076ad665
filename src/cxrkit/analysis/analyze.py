"""One-image analysis (``cxrkit analyze``): every model on one radiograph, one JSON and one HTML report.

JSON schema (``schema_version`` "1.2"; coordinates in pixels of the original image, x right, y down,
0-based; boxes as top-left ``x, y`` plus ``w, h``)::

    {"schema_version": "1.2", "image": "<identity: path relative to the input root>", "width": W, "height": H,
     "pixel_spacing_mm": [row_mm, col_mm] | null,
     "classifier": {"name", "description", "labels", "provenance": {...}} | null,       # null: none was run
     "probabilities": {finding: p}, "boxes": [{"finding", "x", "y", "w", "h", "score"}],   # as `cxrkit predict`
     "segmentation": {"model": name, "provenance": {...}, "landmarks": [[x, y] x 120] (right lung 0-43, left
                      lung 44-93, heart 94-119), "masks": {"right_lung", "left_lung", "heart": CheXmask RLE}},
     "qc": {"dice_rca_mean", "dice_rca_max", "dice_rca_calibrated", "per_structure": {...}} | null,
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
import html
import json
import logging
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from cxrkit.errors import CxrkitError, InputError, UsageError
from cxrkit.io.images import encode_png
from cxrkit.io.inputs import ImageInput

log = logging.getLogger(__name__)

SCHEMA_VERSION = "1.2"
HEATMAP_SIDE = 128
PREVIEW_SIDE = 1024
PREVIEW_SUFFIX = ".preview.png"


def card_summary(card) -> dict:
    """The part of a model card that analysis JSON, the HTML report and the viewer show."""
    return {"name": card.name, "description": card.description, "labels": list(card.labels),
            "provenance": card.provenance.to_dict()}


class Analyzer:
    """Models loaded once, applied per image.

    Args:
        classifier: a cxrkit classifier, or None (the default) to run no classification: cxrkit ships no
            classifier trained on real labels (``resnet_lite_lesions`` is a benchmark model for synthetic
            findings); pass one trained with ``cxrkit train`` or imported with ``cxrkit models import``.
        segmenter: a landmark model (default: the shipped ``hybridgnet``).
        qc: an :class:`cxrkit.qc.rca.RcaEstimator`, or None to skip quality control.
    """

    def __init__(self, classifier=None, segmenter=None, qc=None, qc_note: str = "") -> None:
        from cxrkit.models import load_model

        self.classifier = classifier
        self.segmenter = segmenter if segmenter is not None else load_model(None, default="hybridgnet")
        self.qc = qc
        self.qc_note = qc_note or ("" if qc is not None else "quality control not run")

    def job(self, *, heatmaps: bool = False, out_dir: str | os.PathLike | None = None, preview: bool = False,
            html: bool = True, precision: str = "auto"):
        """This analyzer's models as an engine job (:class:`cxrkit.analysis.job.AnalyzeJob`)."""
        from cxrkit.analysis.job import AnalyzeJob

        return AnalyzeJob(self.segmenter, self.classifier, self.qc, self.qc_note, heatmaps=heatmaps,
                          out_dir=out_dir, preview=preview, html=html, precision=precision)

    def analyze(self, pixels: np.ndarray, name: str, spacing: tuple[float, float] | None = None, *,
                heatmaps: bool = False, overlays: bool = True) -> tuple[dict, dict | None]:
        """(analysis JSON, overlays {"segmentation", "heatmap"} as BGR arrays) of one image (H, W), in this
        process: the same job halves the engine runs.

        ``heatmaps``: also put each finding's heatmap into the JSON (the optional ``heatmaps`` object, see the
        module docstring). ``overlays=False``: skip drawing them (None is returned in their place), for callers
        that only need the JSON (the service, batch jobs).
        """
        from cxrkit.analysis.job import AnalyzeItem

        job = self.job(heatmaps=heatmaps, html=overlays)
        item = AnalyzeItem(None, name, pixels=pixels, spacing=spacing)
        meta, inputs = job.work.prepare(item)
        (output,) = job.forward([inputs], [meta])
        return job.work.document(item, meta, output)


def encode_heatmaps(maps: np.ndarray | None, labels: Sequence[str], side: int = HEATMAP_SIDE) -> dict:
    """The JSON ``heatmaps`` object of float heatmaps ``maps`` (K, H, W) at original resolution, one per label.

    Each map is shrunk (area averaging) so that its longer side is at most ``side``, min-max scaled to 0..255
    over its own range and stored as a grayscale PNG data URI along with that range (``min``, ``max``).
    """
    import cv2

    if maps is None:
        raise CxrkitError("the classifier returned no heatmaps to encode (predict with keep_heatmaps=True)")
    if maps.ndim != 3 or maps.shape[0] != len(labels):
        raise CxrkitError(f"heatmaps of shape {maps.shape} do not match {len(labels)} labels {list(labels)}")
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
        out[finding] = {"min": round(lo, 6), "max": round(hi, 6), "png": _data_uri(encode_png(q))}
    return {"method": "cam", "width": gw, "height": gh, "maps": out}


def decode_heatmap(entry: dict) -> np.ndarray:
    """One ``heatmaps["maps"][finding]`` entry back to float32 heat values (h, w) in the model's units
    (``min + v / 255 * (max - min)``; a 1.1 entry without ``min`` reads as ``min = 0``)."""
    import cv2

    uri = entry.get("png", "") if isinstance(entry, dict) else ""
    prefix = "data:image/png;base64,"
    if not uri.startswith(prefix):
        raise CxrkitError(f"heatmap entry is not a PNG data URI: {str(uri)[:40]!r}")
    q = cv2.imdecode(np.frombuffer(base64.b64decode(uri[len(prefix):]), np.uint8), cv2.IMREAD_GRAYSCALE)
    if q is None:
        raise CxrkitError("heatmap PNG could not be decoded")
    lo = float(entry.get("min", 0.0))
    return lo + q.astype(np.float32) * ((float(entry.get("max", 0.0)) - lo) / 255.0)


def preview_png(pixels: np.ndarray, side: int = PREVIEW_SIDE) -> bytes:
    """A downscaled 8-bit grayscale PNG of ``pixels`` (longer side at most ``side``) for browse mode."""
    from cxrkit.io.images import to_uint8

    return encode_png(to_uint8(pixels), side)


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _provenance_html(title: str, card: dict | None, e) -> str:
    if card is None:
        return (f"<h2>{e(title)}</h2><p>No classifier was run: cxrkit ships none trained on real labels. Name one "
                "with <code>--model</code> (trained with <code>cxrkit train</code> or imported with <code>cxrkit "
                "models import</code>).</p>")
    p = card.get("provenance") or {}
    warn = ("<p class=\"warn\">Trained on <b>synthetic</b> findings: these outputs are not findings on real "
            "radiographs.</p>") if p.get("synthetic") else ""
    rows = "".join(f"<tr><td>{e(k.replace('_', ' '))}</td><td>{e(str(v))}</td></tr>"
                   for k, v in (("training_data", p.get("training_data")), ("intended_use", p.get("intended_use")),
                                ("license", p.get("license")),
                                ("metrics", ", ".join(f"{k} {v}" for k, v in (p.get("metrics") or {}).items())))
                   if v)
    return f"<h2>{e(title)}: {e(card['name'])}</h2><p>{e(card.get('description', ''))}</p>{warn}<table>{rows}</table>"


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
    heat = (f'<img src="{_data_uri(encode_png(overlays["heatmap"], 768))}" alt="heatmap and boxes">'
            if overlays.get("heatmap") is not None else "")
    seg = doc["segmentation"]
    seg_card = {"name": seg["model"], "description": "", "provenance": seg.get("provenance") or {}}
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>cxrkit analysis: {e(doc['image'])}</title>
<style>body{{font-family:system-ui,sans-serif;margin:1.5em;color:#222}} img{{max-width:48%;margin-right:1%}}
table{{border-collapse:collapse;font-size:13px}} td{{padding:2px 6px;border-bottom:1px solid #eee}}
.bar{{height:10px;background:#3a7bd5}} .badge{{display:inline-block;padding:3px 8px;border-radius:4px;background:#eef;margin-right:8px}}
.warn{{background:#fff3cd;border:1px solid #e0c060;padding:6px 10px}}
</style></head><body>
<h1>{e(doc['image'])}</h1>
<p>{doc['width']} x {doc['height']} px; schema {e(doc['schema_version'])}</p>
<p><span class="badge">CTR {'' if ctr is None else f'{ctr:.3f}'}</span><span class="badge">QC: {qc}</span></p>
<p><img src="{_data_uri(encode_png(overlays['segmentation'], 768))}" alt="landmarks and masks">
{heat}</p>
{_provenance_html("Classifier", doc["classifier"], e)}
<table>{bars}</table>
{_provenance_html("Segmentation", seg_card, e)}
<h2>Measurements</h2><table>{meas}</table>
</body></html>
"""


def analyze_files(analyzer: Analyzer, inputs: Sequence[ImageInput], out: str | os.PathLike,
                  progress: bool = True, *, heatmaps: bool = False, preview: bool = False,
                  workers: int | None = None, batch_size: int = 8, precision: str = "auto") -> list[tuple[str, str]]:
    """Write ``<stem>.json`` and ``<stem>.html`` per image into ``out``, mirroring the input tree
    (``OUT/<relative folder>/<stem>.json``, stems by :func:`cxrkit.io.inputs.output_stems`); returns the
    (path, error) failures. An existing output of another image (its JSON names another ``image``) is never
    overwritten: that input fails instead. Runs on the engine: decoding and post-processing (masks, RLE,
    heatmaps, boxes, HTML) in ``workers`` processes, the models ``batch_size`` images at a time on their device.

    ``heatmaps``: include the optional ``heatmaps`` object in each JSON. ``preview``: also write
    ``<stem>.preview.png`` (see :func:`preview_png`), the image browse mode shows.
    """
    from tqdm.auto import tqdm

    from cxrkit.analysis.job import AnalyzeItem
    from cxrkit.engine import Failure, run_pipeline
    from cxrkit.io.inputs import output_stems
    from cxrkit.segmentation.infer import _workers_for

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stems = output_stems([i.id for i in inputs])
    items = [AnalyzeItem(i.path, i.id, stems[i.id]) for i in inputs]
    failures: list[tuple[str, str]] = []
    bar = tqdm(total=len(items), desc="analyze", disable=not progress)

    def emit(item: AnalyzeItem, result) -> None:
        if isinstance(result, Failure):
            log.error("%s", result.message)
            failures.append((str(item.path), result.message))
        bar.update(1)

    try:
        run_pipeline(analyzer.job(heatmaps=heatmaps, out_dir=out, preview=preview, precision=precision), items, emit,
                     workers=_workers_for(workers, len(items)), batch_size=batch_size)
    finally:
        bar.close()
    return failures


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

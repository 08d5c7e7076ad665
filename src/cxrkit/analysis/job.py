"""``cxrkit analyze`` as an engine job: every model on each image, the JSON document (and files) per image.

Worker side (:class:`AnalyzeWork`): ``prepare`` reads the image once and gives each model its input square
(the cards' geometry) plus what post-processing needs (size, spacing, the 8-bit image for overlays and the
preview, RCA's query image); ``finish`` builds the analysis document (:mod:`cxrkit.analysis.analyze`'s schema)
from the models' outputs -- landmarks to masks at the original size, RLE, measurements, the classifier's
probabilities, heatmaps and boxes, the RCA estimate -- and, with an output folder, writes ``<stem>.json``,
``<stem>.html`` and ``<stem>.preview.png`` atomically. Model side (:class:`AnalyzeJob`): the landmark model, the
optional classifier and the optional RCA estimator, batched on their device.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cxrkit.analysis.document import (
    PREVIEW_SUFFIX,
    SCHEMA_VERSION,
    card_summary,
    encode_heatmaps,
    preview_png,
    refuse_foreign,
)
from cxrkit.analysis.report import render_html
from cxrkit.anatomy.measure import measure_masks
from cxrkit.classification.predict import classify_batch, overlay, prediction_from_maps
from cxrkit.errors import InputError
from cxrkit.io.atomic import write_bytes, write_text
from cxrkit.io.geometry import SquareResize
from cxrkit.io.images import read_image, to_uint8
from cxrkit.io.landmarks import ORGANS, organ_masks
from cxrkit.models.device import resolve_precision
from cxrkit.models.preprocess import finish_input, square_input
from cxrkit.segmentation.job import autocast
from cxrkit.segmentation.rows import chexmask_row, snap_landmarks
from cxrkit.viz import render_overlay


@dataclass(frozen=True)
class AnalyzeItem:
    """One image: where it is (``path``; None when ``pixels`` are given), its identity and output stem."""

    path: Path | None
    image_id: str
    stem: str | None = None  # relative output stem (None: no files written)
    pixels: Any = None  # an in-memory image (H, W) instead of a file (the service, the Python API)
    spacing: tuple[float, float] | None = None


@dataclass(frozen=True)
class AnalyzeWork:
    """Worker side of :class:`AnalyzeJob` (picklable settings and cards)."""

    segmenter_card: Any
    classifier_card: Any | None
    qc_image_size: int | None
    qc_note: str = ""
    heatmaps: bool = False
    out_dir: str | None = None
    preview: bool = False
    html: bool = True

    def prepare(self, item: AnalyzeItem) -> tuple[dict, dict]:
        if item.pixels is not None:
            pixels, spacing = np.asarray(item.pixels), item.spacing
        else:
            xray = read_image(item.path)
            pixels, spacing = xray.pixels, xray.spacing
        if pixels.ndim != 2:
            raise InputError(f"{item.image_id}: expected a 2-D grayscale image, got shape {pixels.shape}")
        img8 = to_uint8(pixels)
        seg, seg_stats, geom = square_input(img8, self.segmenter_card.input_size,
                                            self.segmenter_card.normalization.per_image)
        inputs: dict[str, Any] = {"seg": seg}
        meta: dict[str, Any] = {"height": geom.height, "width": geom.width, "spacing": spacing,
                                "seg_stats": seg_stats}
        if self.classifier_card is not None:
            c = self.classifier_card
            inputs["clf"], meta["clf_stats"], _ = square_input(img8, c.input_size, c.normalization.per_image)
        if self.qc_image_size:
            inputs["qc"] = SquareResize(geom.height, geom.width, self.qc_image_size).image_to_square(img8)
        if self.html or self.preview:
            meta["gray8"] = img8
        return meta, inputs

    def finish(self, item: AnalyzeItem, meta: dict, output: dict) -> dict:
        doc, overlays = self.document(item, meta, output)
        if self.out_dir is not None and item.stem is not None:
            self.write(item, meta, doc, overlays)
        return doc

    def document(self, item: AnalyzeItem, meta: dict, output: dict) -> tuple[dict, dict | None]:
        """The analysis JSON and, when HTML is wanted, its overlays (BGR arrays)."""
        h, w, spacing = meta["height"], meta["width"], meta["spacing"]
        sc = self.segmenter_card
        points = SquareResize(h, w, sc.input_size).points_to_original(output["landmarks"])
        ipts, masks = snap_landmarks(points, h, w)
        row = chexmask_row(item.image_id, ipts, masks, h, w)
        pred = None
        if self.classifier_card is not None:
            c = self.classifier_card
            pred = prediction_from_maps(c, item.image_id, SquareResize(h, w, c.input_size), output["probs"],
                                        output["maps"])
        predicted = pred.to_json() if pred is not None else {"probabilities": {}, "boxes": []}
        m = measure_masks(masks["right_lung"], masks["left_lung"], masks["heart"], spacing)
        doc: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION, "image": item.image_id, "width": int(w), "height": int(h),
            "pixel_spacing_mm": list(spacing) if spacing else None,
            "classifier": card_summary(self.classifier_card) if self.classifier_card is not None else None,
            "probabilities": predicted["probabilities"], "boxes": predicted["boxes"],
            "segmentation": {"model": sc.name, "provenance": sc.provenance.to_dict(), "landmarks": ipts.tolist(),
                             "masks": {"right_lung": row["Right Lung"], "left_lung": row["Left Lung"],
                                       "heart": row["Heart"]}},
            "qc": None,
            "measurements": {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in asdict(m).items()
                             if v is not None},
        }
        if output.get("rca") is not None:
            est = output["rca"]
            doc["qc"] = {"dice_rca_mean": round(est.mean, 6), "dice_rca_max": round(est.max, 6),
                         "dice_rca_calibrated": None if est.calibrated is None else round(est.calibrated["all"], 6),
                         "per_structure": {s: {"mean": round(est.per_structure_mean[s], 6),
                                               "max": round(est.per_structure_max[s], 6),
                                               "calibrated": None if est.calibrated is None
                                               else round(est.calibrated[s], 6)}
                                           for s in est.per_structure_mean},
                         **({"reference": output["rca_reference"]} if output.get("rca_reference") else {})}
        else:
            doc["qc_note"] = self.qc_note or "quality control not run"
        if self.heatmaps and pred is not None:
            doc["heatmaps"] = encode_heatmaps(pred.heatmaps, list(self.classifier_card.labels))
        if "gray8" not in meta:
            return doc, None

        gray8 = meta["gray8"]
        return doc, {"segmentation": render_overlay(masks, ipts.astype(np.float64), gray8),
                     "heatmap": overlay(gray8, pred) if pred is not None else None}

    def write(self, item: AnalyzeItem, meta: dict, doc: dict, overlays: dict | None) -> None:
        base = Path(self.out_dir) / item.stem
        refuse_foreign(base.with_name(base.name + ".json"), item.image_id)
        if self.preview:
            write_bytes(base.with_name(base.name + PREVIEW_SUFFIX), preview_png(meta["gray8"]))
        write_text(base.with_name(base.name + ".json"), json.dumps(doc, indent=1) + "\n")
        if self.html and overlays is not None:
            write_text(base.with_name(base.name + ".html"), render_html(doc, overlays))


class AnalyzeJob:
    """The models of an :class:`~cxrkit.analysis.analyze.Analyzer` on their devices, batched."""

    def __init__(self, segmenter, classifier=None, qc=None, qc_note: str = "", *, heatmaps: bool = False,
                 out_dir: str | None = None, preview: bool = False, html: bool = True,
                 precision: str = "auto") -> None:

        self.segmenter, self.classifier, self.qc = segmenter, classifier, qc
        self.qc_reference = None if qc is None else {
            "reference_set": Path(str(qc.reference.source)).name or str(qc.reference.source),
            "references": len(qc.reference), "method": qc.method,
            "calibrated": qc.calibration is not None}
        dev = next(segmenter.parameters()).device
        self.seg_precision = resolve_precision(precision, segmenter.card, dev)
        self.clf_precision = (None if classifier is None else
                              resolve_precision(precision, classifier.card, next(classifier.parameters()).device))
        self.work = AnalyzeWork(segmenter.card, None if classifier is None else classifier.card,
                                None if qc is None else qc.image_size, qc_note, heatmaps,
                                None if out_dir is None else str(out_dir), preview, html)

    def forward(self, inputs: list[dict], metas: list[dict]) -> list[dict]:
        import torch

        sc = self.segmenter.card
        dev = next(self.segmenter.parameters()).device
        x = torch.from_numpy(np.stack([finish_input(i["seg"], m["seg_stats"], sc) for i, m in zip(inputs, metas)]))
        with torch.inference_mode(), autocast(dev, self.seg_precision):
            pts = self.segmenter.infer(x.to(dev))["landmarks"].float().cpu().numpy() * sc.input_size
        outputs: list[dict] = [{"landmarks": p} for p in pts]
        if self.classifier is not None:
            cc = self.classifier.card
            xc = torch.from_numpy(np.stack([finish_input(i["clf"], m["clf_stats"], cc) for i, m in zip(inputs, metas)]))
            probs, maps = classify_batch(self.classifier, xc, "cam", self.clf_precision)
            for out, p, mp in zip(outputs, probs, maps):
                out["probs"], out["maps"] = p, mp
        if self.qc is not None:
            ms = self.qc.mask_size
            masks = np.stack([np.stack([organ_masks(p * (ms / sc.input_size), ms, ms)[s] for s in ORGANS])
                              for p in pts])
            tables = self.qc.score_batch(np.stack([i["qc"] for i in inputs]), masks)
            for out, t in zip(outputs, tables):
                out["rca"] = self.qc.summarize(t)
                out["rca_reference"] = self.qc_reference
        return outputs

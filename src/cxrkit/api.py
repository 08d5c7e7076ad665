"""cxrkit's Python API: the commands as typed functions over arrays and files.

>>> import cxrkit
>>> xray = cxrkit.read_image("00000001_000.png")                 # doctest: +SKIP
>>> seg = cxrkit.segment(xray.pixels, qc=True)[0]                # doctest: +SKIP
>>> seg.masks["heart"].shape, seg.rca.mean, seg.measurements.ctr  # doctest: +SKIP
>>> doc = cxrkit.analyze("chest.dcm")                            # the `cxrkit analyze` JSON  # doctest: +SKIP
>>> labels = cxrkit.label_reports(["No effusion. Mild cardiomegaly."])  # doctest: +SKIP

Conventions, as everywhere in cxrkit: images are 2-D arrays ``(rows, cols)`` of any dtype (bright = dense);
points are ``(x, y)`` = (column, row) in pixels of the original image, 0-based; boxes ``(x, y, w, h)`` with
``(x, y)`` the top-left corner; masks are bool arrays of the image's shape. A model is a registry name with
weights shipped in the package (``cxrkit.list_models()``) or a checkpoint path. These functions run in this
process; for thousands of images use the CLI or :func:`cxrkit.segmentation.infer.segment_files`, which run on
the pipelined engine with worker processes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence, Union

import numpy as np
import pandas as pd

from cxrkit.analysis.analyze import Analyzer
from cxrkit.anatomy.measure import Measurements, measure_masks
from cxrkit.classification.predict import Prediction, predict_images
from cxrkit.findings import FINDINGS, NO_FINDING
from cxrkit.io.images import XRay, read_image
from cxrkit.models import load_model
from cxrkit.qc.rca import RcaEstimate, make_estimator
from cxrkit.qc.reference import query_image, query_masks
from cxrkit.reports import Labeler
from cxrkit.segmentation.infer import predict_landmarks
from cxrkit.segmentation.rows import chexmask_row, snap_landmarks

ImageLike = Union[str, os.PathLike, np.ndarray, XRay]


@dataclass(frozen=True)
class Segmentation:
    """Lungs and heart of one image.

    Attributes:
        image_id: the file name, or ``image<k>`` for an array.
        height, width: the image size in pixels.
        landmarks: (120, 2) int ``(x, y)`` in original pixels (right lung 0-43, left lung 44-93, heart 94-119).
        masks: ``right_lung``, ``left_lung``, ``heart``: bool (height, width), the filled landmark contours.
        measurements: cardiothoracic ratio and areas (mm with ``spacing``).
        rca: the RCA quality estimate, or None without ``qc=True``.
    """

    image_id: str
    height: int
    width: int
    landmarks: np.ndarray
    masks: dict[str, np.ndarray]
    measurements: Measurements
    rca: RcaEstimate | None = None

    def row(self, id_column: str = "ImageID") -> dict[str, str]:
        """This segmentation as a CheXmask-format CSV row (RLE masks, landmarks, Dice RCA columns)."""
        return chexmask_row(self.image_id, self.landmarks, self.masks, self.height, self.width, self.rca,
                            id_column=id_column)


def _images(images: ImageLike | Sequence[ImageLike]) -> list[tuple[str, np.ndarray, tuple[float, float] | None]]:
    items = [images] if isinstance(images, (str, os.PathLike, np.ndarray, XRay)) else list(images)
    out = []
    for k, im in enumerate(items):
        if isinstance(im, XRay):
            out.append((Path(im.path).name, im.pixels, im.spacing))
        elif isinstance(im, np.ndarray):
            out.append((f"image{k}", im, None))
        else:
            x = read_image(im)
            out.append((Path(im).name, x.pixels, x.spacing))
    return out


def segment(images: ImageLike | Sequence[ImageLike], *, model: str | os.PathLike = "hybridgnet", qc: bool = False,
            reference: str | os.PathLike | None = None, device: str = "auto", batch_size: int = 16,
            precision: str = "auto") -> list[Segmentation]:
    """Landmarks, masks, measurements (and, with ``qc``, the RCA estimate against ``reference``: default the
    set shipped in the package) of each image: a path, an array ``(H, W)`` or an :class:`~cxrkit.io.images.XRay`,
    or a sequence of them. ``precision``: ``auto`` (the model card's measured-safe default on this device, as
    ``cxrkit segment``), ``fp32`` or ``bf16``."""
    seg = load_model(model, task="segmentation", needs="landmarks", device=device)
    est = make_estimator(reference, device=next(seg.parameters()).device) if qc else None
    items = _images(images)
    out: list[Segmentation] = []
    for start in range(0, len(items), batch_size):
        chunk = items[start:start + batch_size]
        points = predict_landmarks(seg, [px for _, px, _ in chunk], precision)
        snapped = [snap_landmarks(p, *px.shape) for (_, px, _), p in zip(chunk, points)]
        estimates: list[RcaEstimate | None] = [None] * len(chunk)
        if est is not None:
            qi = np.stack([(query_image(px, est.image_size)[0, 0].numpy() * 255).round().astype(np.uint8)
                           for _, px, _ in chunk])
            qm = np.stack([query_masks(m, px.shape, est.mask_size)[0].numpy() for (_, px, _), (_, m) in zip(chunk, snapped)])
            estimates = [est.summarize(t) for t in est.score_batch(qi, qm)]
        for (name, px, spacing), (pts, masks), e in zip(chunk, snapped, estimates):
            out.append(Segmentation(name, px.shape[0], px.shape[1], pts, masks,
                                    measure_masks(masks["right_lung"], masks["left_lung"], masks["heart"], spacing), e))
    return out


def predict(images: ImageLike | Sequence[ImageLike], model: str | os.PathLike, *, device: str = "auto",
            precision: str = "auto", heatmap_method: str = "cam", box_method: str = "card",
            box_policy: str = "positive") -> list[Prediction]:
    """The classifier ``model``'s probabilities, heatmaps (original resolution) and boxes (original pixels) per
    image. Boxes are drawn with the box rules of the model's card (``box_method="card"``, the default; the
    ``paper`` method for a card without rules) or with ``box_method`` ``paper``, ``adaptive`` or ``threshold``.
    cxrkit ships no classifier trained on real labels: name one (a checkpoint from ``cxrkit train`` or
    ``cxrkit models import``)."""
    clf = load_model(model, task="classification", needs="logits", device=device)
    items = _images(images)
    return predict_images(clf, [px for _, px, _ in items], [n for n, _, _ in items], heatmap_method=heatmap_method,
                          box_method=box_method, box_policy=box_policy, precision=precision)


def analyze(image: ImageLike, *, model: str | os.PathLike | None = None,
            segmentation_model: str | os.PathLike = "hybridgnet", qc: bool = True, heatmaps: bool = False,
            device: str = "auto") -> dict:
    """The ``cxrkit analyze`` JSON document of one image (schema in :mod:`cxrkit.analysis.document`): landmarks,
    masks, measurements, the RCA estimate (``qc``) and, when ``model`` names a classifier, its findings."""
    seg = load_model(segmentation_model, task="segmentation", needs="landmarks", device=device)
    clf = load_model(model, task="classification", needs="logits", device=device) if model else None
    est = make_estimator(device=next(seg.parameters()).device) if qc else None
    ((name, px, spacing),) = _images(image)
    doc, _ = Analyzer(clf, seg, est, "" if qc else "quality control not run (qc=False)").analyze(
        px, name, spacing, heatmaps=heatmaps, overlays=False)
    return doc


def estimate_rca(image: np.ndarray, masks: Mapping[str, np.ndarray], *, reference: str | os.PathLike | None = None,
                 method: str = "learned", device: str = "cpu") -> RcaEstimate:
    """RCA estimate of the Dice of ``masks`` (bool, the image's shape: ``right_lung``, ``left_lung``, ``heart``)
    on ``image`` (2-D), against ``reference`` (default: the set shipped in the package)."""
    return make_estimator(reference, method, device=device).estimate(image, masks)


def label_reports(reports: Iterable[str] | Mapping[str, str], *, style: str = "chexpert") -> pd.DataFrame:
    """Label radiology reports (texts, or ``{id: text}``): one row per report, in order. ``style="chexpert"``:
    the 14 findings and ``No Finding`` as 1 / 0 / -1 (uncertain) / None (not mentioned); ``style="nih"``: the
    ``Finding Labels`` string. A report that could not be labeled has a reason in ``status``."""
    if style not in ("chexpert", "nih"):
        from cxrkit.errors import UsageError  # noqa: PLC0415  # lazy: only on a bad argument

        raise UsageError(f"unknown style {style!r}; expected chexpert or nih")
    items = list(reports.items()) if isinstance(reports, Mapping) else [(str(k), t) for k, t in enumerate(reports)]
    labeler = Labeler()
    rows = []
    for rid, text in items:
        r = labeler.label(text, rid)
        if style == "nih":
            rows.append({"id": r.id, "Finding Labels": r.nih_labels(), "status": r.status})
        else:
            rows.append({"id": r.id, **{f: r.labels.get(f) for f in (*FINDINGS, NO_FINDING)}, "status": r.status})
    return pd.DataFrame(rows)


__all__ = ["Segmentation", "analyze", "estimate_rca", "label_reports", "predict", "segment"]

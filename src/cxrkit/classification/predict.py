"""Single-image inference: probabilities, heatmaps at original resolution, boxes, overlays.

Array functions take grayscale images (H, W) of any size and dtype; coordinates in the results are in
pixels of the original image (x right, y down, 0-based; boxes as top-left x, y plus w, h).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from cxrkit.classification.boxes import METHODS as BOX_METHODS
from cxrkit.classification.boxes import Box, heatmap_to_boxes
from cxrkit.classification.cam import heatmaps as compute_heatmaps
from cxrkit.classification.cam import upsample
from cxrkit.errors import UsageError
from cxrkit.io.images import to_uint8
from cxrkit.metrics.localization import iobb
from cxrkit.models.device import resolve_precision
from cxrkit.viz import BLUE, GREEN, RED, draw_boxes, heat_overlay, to_bgr

log = logging.getLogger(__name__)

BOX_POLICIES = ("positive", "all")
# ``box_method`` values: "card" (default) draws each label's boxes with the rule its model card carries
# (``ModelCard.box_rules``, e.g. chosen on the lesion benchmark's validation images), the paper's method for labels
# without one; or one method of cxrkit.classification.boxes for every label, with its default options.
CARD_RULES = "card"
PREDICT_BOX_METHODS = (CARD_RULES, *BOX_METHODS)


def finding_boxes(card, label: str, raw_map: np.ndarray, clipped_map: np.ndarray,
                  box_method: str = CARD_RULES) -> list[Box]:
    """Boxes of ``label`` from its class map at the original resolution, best first (pixels of that image; x, y
    top-left). ``box_method`` ``card``: the card's rule for ``label`` on the raw map ``raw_map`` (where the rule was
    chosen), or ``paper`` on ``clipped_map`` when the card has none; a method name: that method on ``clipped_map``
    (the ReLU'd map, as before rules existed)."""
    if box_method == CARD_RULES:
        rule = card.box_rule(label)
        if rule is not None:
            method, options = rule
            return heatmap_to_boxes(raw_map, method=method, **options)
        return heatmap_to_boxes(clipped_map, method="paper")
    if box_method not in BOX_METHODS:
        raise UsageError(f"box method {box_method!r} is not one of {PREDICT_BOX_METHODS}")
    return heatmap_to_boxes(clipped_map, method=box_method)


@dataclass
class Prediction:
    """What the model says about one image. ``heatmaps``: each label's class map at the original resolution,
    raw (CAM: the per-location class score in logit units, any sign; Grad-CAM: ReLU'd) -- display them with a
    min-max normalization over each map's own range, as :func:`cxrkit.viz.heat_overlay` and the analysis JSON
    do; boxes come from the card's box rules on the raw map (:func:`finding_boxes`) or, for the ``paper`` and
    ``adaptive`` methods, from the ReLU'd map, upsampled (the paper's rule)."""

    image: str
    width: int
    height: int
    model: str
    probabilities: dict[str, float]
    boxes: list[dict] = field(default_factory=list)
    heatmaps: np.ndarray | None = None  # float32 (K, height, width), original resolution, raw
    box_heatmaps: np.ndarray | None = None  # the ReLU'd maps boxes come from (None: same as heatmaps)

    def box_map(self, k: int) -> np.ndarray:
        """The map of label ``k`` that boxes are drawn from (ReLU'd before upsampling)."""
        return (self.box_heatmaps if self.box_heatmaps is not None else self.heatmaps)[k]

    def to_json(self) -> dict:
        """The ``cxrkit predict`` JSON object (see CONTRACTS.md)."""
        return {"image": self.image, "width": self.width, "height": self.height, "model": self.model,
                "probabilities": {k: round(float(v), 6) for k, v in self.probabilities.items()},
                "boxes": [dict(b) for b in self.boxes]}


def _thresholds(card) -> tuple[float, ...]:
    return card.thresholds if card.thresholds is not None else tuple(0.5 for _ in card.labels)


def classify_batch(model, x: torch.Tensor, heatmap_method: str = "cam", precision: str = "fp32"
                   ) -> tuple[np.ndarray, np.ndarray]:
    """The model half of prediction: probabilities (N, K) and class maps (N, K, h, w) at the feature
    resolution (CAM: raw per-location class scores; Grad-CAM: ReLU'd), for a normalized batch ``x`` on the
    model's device, in ``precision`` (``fp32`` or ``bf16``)."""
    device = next(model.parameters()).device
    x = x.to(device).contiguous(memory_format=torch.channels_last)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
        if heatmap_method == "gradcam":
            probs, maps = compute_heatmaps(model, x.clone(), heatmap_method)
        else:
            with torch.inference_mode():
                probs, maps = compute_heatmaps(model, x, heatmap_method, clip=False)
    return probs.float().cpu().numpy(), maps.float().cpu().numpy()


def prediction_from_maps(card, name: str, geom, probs: np.ndarray, maps: np.ndarray, heatmap_method: str = "cam",
                         box_method: str = CARD_RULES, box_policy: str = "positive", keep_heatmaps: bool = True,
                         max_boxes: int = 3) -> Prediction:
    """The post-processing half: one image's probabilities (K,) and feature-resolution maps (K, h, w) -> a
    :class:`Prediction` with heatmaps at the original resolution (``geom``, a :class:`~cxrkit.io.geometry.
    SquareResize`) and boxes in original pixels. ``box_policy``: ``positive`` gives boxes only for findings at or
    above the card's threshold (0.5 when the card has none); ``all`` gives the best boxes of every finding. At
    most ``max_boxes`` per finding, best score first; each box's ``score`` is the finding's probability times the
    box's heatmap score. ``box_method``: ``card`` (the card's per-label box rules, see :func:`finding_boxes`) or
    one of :data:`cxrkit.classification.boxes.METHODS` for every label."""
    if box_policy not in BOX_POLICIES:
        raise UsageError(f"box policy {box_policy!r} is not one of {BOX_POLICIES}")
    raw = torch.from_numpy(np.ascontiguousarray(maps, dtype=np.float32))[None]
    maps_np = upsample(raw, card.input_size)[0].numpy()  # raw: for display
    box_maps = maps_np if heatmap_method == "gradcam" else upsample(torch.relu(raw), card.input_size)[0].numpy()
    full = np.stack([geom.map_to_original(m) for m in maps_np])
    box_full = full if box_maps is maps_np else np.stack([geom.map_to_original(m) for m in box_maps])
    thr = _thresholds(card)
    boxes = []
    for k, finding in enumerate(card.labels):
        p = float(probs[k])
        if box_policy == "positive" and p < thr[k]:
            continue
        found = sorted(finding_boxes(card, finding, full[k], box_full[k], box_method), key=lambda b: -b.score)[:max_boxes]
        boxes.extend({"finding": finding, "x": float(b.x), "y": float(b.y), "w": float(b.w), "h": float(b.h),
                      "score": float(p * b.score)} for b in found)
    return Prediction(image=name, width=geom.width, height=geom.height, model=card.name,
                      probabilities={f: float(probs[k]) for k, f in enumerate(card.labels)},
                      boxes=boxes, heatmaps=full if keep_heatmaps else None,
                      box_heatmaps=None if box_full is full or not keep_heatmaps else box_full)


def predict_images(
    model,
    images: Sequence[np.ndarray],
    names: Sequence[str] | None = None,
    heatmap_method: str = "cam",
    box_method: str = CARD_RULES,
    box_policy: str = "positive",
    keep_heatmaps: bool = True,
    precision: str = "auto",
    max_boxes: int = 3,
) -> list[Prediction]:
    """Run ``model`` (a cxrkit classifier) on grayscale ``images`` (any size and dtype): :func:`classify_batch`
    then :func:`prediction_from_maps` per image, in this process (the engine runs the same two halves with the
    second in worker processes). ``precision``: ``auto`` (the card's measured-safe default), ``fp32`` or ``bf16``.
    ``box_method``: ``card`` (default: the card's box rules) or a method of :mod:`cxrkit.classification.boxes`.
    """
    card = model.card
    names = list(names) if names is not None else [f"image{i}" for i in range(len(images))]
    x, geoms = model.preprocess(images)
    prec = resolve_precision(precision, card, next(model.parameters()).device)
    probs, maps = classify_batch(model, x, heatmap_method, prec)
    return [prediction_from_maps(card, name, geom, probs[i], maps[i], heatmap_method, box_method, box_policy,
                                 keep_heatmaps, max_boxes) for i, (name, geom) in enumerate(zip(names, geoms))]


def overlay(gray: np.ndarray, pred: Prediction, finding: str | None = None,
            truth: Sequence[tuple[str, tuple[float, float, float, float]]] = ()) -> np.ndarray:
    """BGR overlay: the heatmap of ``finding`` (default: the most probable), predicted boxes (green when
    they overlap a ground-truth box of their finding by IoBB >= 0.5 or there is no ground truth, red
    otherwise), ground truth boxes in blue, each labelled."""

    g8 = gray if gray.dtype == np.uint8 else to_uint8(gray)
    if finding is None:
        finding = max(pred.probabilities, key=pred.probabilities.get)
    labels = list(pred.probabilities)
    canvas = heat_overlay(g8, pred.heatmaps[labels.index(finding)]) if pred.heatmaps is not None else to_bgr(g8)
    for f, box in truth:
        draw_boxes(canvas, np.array([box]), [f"{f} (truth)"], BLUE)
    for b in pred.boxes:
        pb = (b["x"], b["y"], b["w"], b["h"])
        gts = [t for f, t in truth if f == b["finding"]]
        hit = not truth or any(iobb(t, pb) >= 0.5 for t in gts)
        draw_boxes(canvas, np.array([pb]), [f"{b['finding']} {pred.probabilities[b['finding']]:.2f}"], GREEN if hit else RED)
    return canvas

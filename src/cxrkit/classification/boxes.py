"""Heatmap -> boxes.

Input: a heatmap (H, W) at the original image's resolution, any float range (CAM / Grad-CAM). Output:
:class:`Box` list in pixels of that image (x, y = top-left corner, 0-based, w/h in pixels), best first.

* ``paper`` (Wang et al., ChestX-ray8, CVPR 2017, "Bounding Box Generation": "The intensities in heatmaps
  are first normalized to [0, 255] and then thresholded by {60, 180} individually. Finally, B-Boxes are
  generated to cover the isolated regions in the resulting binary maps."). Implemented as: min-max
  normalize to [0, 255]; for each threshold T the binary map ``value >= T``; one box per 8-connected
  region (its exact pixel extent). The paper does not say how boxes are ranked; here score = the region's
  peak / 255 in [0, 1], ties (the same blob at both thresholds) broken in favour of the tighter box of the
  higher threshold.
* ``adaptive`` (cxrkit): per peak instead of per global threshold. Find local maxima of the heatmap
  (above ``min_peak`` of the global range, non-maximum suppressed within ``peak_distance`` of the longer
  side), and around each grow the region of pixels connected to it above ``rel_threshold`` of *that
  peak's* value; box it. A weak second lesion therefore gets its own box instead of vanishing under a
  global threshold, and a strong one is not inflated by a low threshold. Score = peak / global peak.
  Boxes overlapping a better one by IoU > ``nms_iou`` are dropped, as are boxes smaller than
  ``min_area`` (a fraction of the image area); at most ``max_boxes``. Regions are found on a copy of the
  heatmap reduced to at most 256 px (CAMs are smooth upsamplings of coarse maps) and scaled back.
* ``threshold`` (the paper's normalization, one threshold, a choice of region rule): min-max normalize to
  [0, 1]; the binary map ``value >= threshold``; then ``component="each"``: one box per 8-connected region,
  ranked by the region's peak (the paper's rule at a single threshold: ``threshold=60/255`` gives exactly
  the paper's T=60 boxes), ``"largest"``: the same boxes ranked by region area, or ``"union"``: one box
  around every pixel above the threshold. Score = the region's peak (``each``, ``union``) or its area as a
  fraction of the image (``largest``), in [0, 1]. The lesion benchmark chooses threshold and rule on its
  validation images (:data:`cxrkit.classification.lesion_bench.BOX_CANDIDATES`).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from cxrkit.errors import CxrkitError
from cxrkit.metrics.localization import iou

METHODS = ("paper", "adaptive", "threshold")
COMPONENT_RULES = ("each", "largest", "union")


@dataclass(frozen=True)
class Box:
    """A box in image pixels: top-left (x, y), width, height, and a score in [0, 1]."""

    x: float
    y: float
    w: float
    h: float
    score: float

    def as_tuple(self) -> tuple[float, float, float, float]:
        return (self.x, self.y, self.w, self.h)


def _normalize255(heatmap: np.ndarray) -> np.ndarray | None:
    h = np.asarray(heatmap, dtype=np.float32)
    if h.ndim != 2:
        raise CxrkitError(f"heatmap must be 2-D (H, W), got shape {h.shape}")
    if not np.isfinite(h).all():
        raise CxrkitError("heatmap has NaN or infinite values")
    lo, hi = float(h.min()), float(h.max())
    if hi <= lo:
        return None
    return (h - lo) / (hi - lo) * 255.0


def paper_boxes(heatmap: np.ndarray, thresholds: tuple[float, ...] = (60, 180)) -> list[Box]:
    """The ChestX-ray8 protocol: boxes around connected regions at each threshold of the [0, 255] map.

    Returns all boxes of all thresholds, best score first (see the module doc); ``[]`` for a constant map.
    """
    n = _normalize255(heatmap)
    if n is None:
        return []
    ranked: list[tuple[float, float, Box]] = []
    for t in thresholds:
        if not 0 <= float(t) <= 255:
            raise CxrkitError(f"paper_boxes threshold {t!r} is outside [0, 255]")
        count, labels, stats, _ = cv2.connectedComponentsWithStats((n >= t).astype(np.uint8), connectivity=8)
        for k in range(1, count):
            x, y, w, h, _area = (int(v) for v in stats[k])
            roi = n[y : y + h, x : x + w]
            peak = float(roi[labels[y : y + h, x : x + w] == k].max()) / 255.0
            ranked.append((peak, float(t), Box(float(x), float(y), float(w), float(h), min(1.0, peak))))
    ranked.sort(key=lambda r: (-r[0], -r[1]))
    return [b for _, _, b in ranked]


def threshold_boxes(heatmap: np.ndarray, threshold: float = 60 / 255, component: str = "each") -> list[Box]:
    """Boxes of the regions of the min-max normalized map at or above ``threshold`` (a fraction in (0, 1]),
    best first under the ``component`` rule (see the module doc); ``[]`` for a constant map."""
    if not 0 < float(threshold) <= 1:
        raise CxrkitError(f"threshold_boxes threshold must be in (0, 1] (a fraction of the map's range), got {threshold!r}")
    if component not in COMPONENT_RULES:
        raise CxrkitError(f"threshold_boxes component {component!r} is not one of {COMPONENT_RULES}")
    n = _normalize255(heatmap)
    if n is None:
        return []
    binary = (n >= float(threshold) * 255.0).astype(np.uint8)
    if component == "union":
        ys, xs = np.nonzero(binary)
        return [Box(float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1),
                    1.0)]
    count, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    ranked: list[tuple[float, Box]] = []
    for k in range(1, count):
        x, y, w, h, area = (int(v) for v in stats[k])
        if component == "largest":
            score = area / float(binary.size)
        else:
            score = float(n[y : y + h, x : x + w][labels[y : y + h, x : x + w] == k].max()) / 255.0
        ranked.append((score, Box(float(x), float(y), float(w), float(h), min(1.0, score))))
    ranked.sort(key=lambda r: -r[0])
    return [b for _, b in ranked]


def top_threshold_boxes(heatmap: np.ndarray, thresholds: tuple[float, ...],
                        components: tuple[str, ...] = COMPONENT_RULES) -> dict[tuple[float, str], Box | None]:
    """The best box of :func:`threshold_boxes` for every (threshold, component rule), computed together.

    One normalization and one connected-component pass per threshold; each value equals
    ``threshold_boxes(heatmap, t, c)[0]`` (``None`` for a constant map). Under ``each`` the best region is
    the one holding the global maximum (its peak is 1), so the paper's top box is ``(180 / 255, "each")``.
    """
    bad = [c for c in components if c not in COMPONENT_RULES]
    if bad:
        raise CxrkitError(f"top_threshold_boxes component {bad[0]!r} is not one of {COMPONENT_RULES}")
    n = _normalize255(heatmap)
    out: dict[tuple[float, str], Box | None] = {}
    if n is None:
        return {(float(t), c): None for t in thresholds for c in components}
    py, px = np.unravel_index(int(np.argmax(n)), n.shape)
    for t in thresholds:
        if not 0 < float(t) <= 1:
            raise CxrkitError(f"top_threshold_boxes threshold must be in (0, 1], got {t!r}")
        binary = (n >= float(t) * 255.0).astype(np.uint8)
        _, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
        regions = stats[1:]
        for c in components:
            if c == "union":
                x0, y0 = regions[:, 0].min(), regions[:, 1].min()
                x1, y1 = (regions[:, 0] + regions[:, 2]).max(), (regions[:, 1] + regions[:, 3]).max()
                box = Box(float(x0), float(y0), float(x1 - x0), float(y1 - y0), 1.0)
            else:
                k = int(labels[py, px]) if c == "each" else 1 + int(np.argmax(regions[:, 4]))
                x, y, w, h, area = (int(v) for v in stats[k])
                if c == "each":
                    score = 1.0
                else:  # ties in area: the first region in scan order, as threshold_boxes' stable sort
                    score = area / float(binary.size)
                box = Box(float(x), float(y), float(w), float(h), score)
            out[(float(t), c)] = box
    return out


def adaptive_boxes(heatmap: np.ndarray, rel_threshold: float = 0.5, min_peak: float = 0.3,
                   peak_distance: float = 0.06, nms_iou: float = 0.3, max_boxes: int = 5,
                   min_area: float = 0.0) -> list[Box]:
    """Per-peak regions (see module doc). ``peak_distance`` is a fraction of the image's longer side,
    ``min_area`` a fraction of the image's area; ``rel_threshold`` and ``min_peak`` fractions in (0, 1]."""
    for name, v in (("rel_threshold", rel_threshold), ("min_peak", min_peak)):
        if not 0 < v <= 1:
            raise CxrkitError(f"adaptive_boxes {name} must be in (0, 1], got {v!r}")
    n = _normalize255(heatmap)
    if n is None:
        return []
    full_h, full_w = n.shape
    min_pixels = float(min_area) * full_h * full_w
    work = 256  # heatmaps are smooth upsamplings of coarse maps: find regions at <= 256 px, scale back
    if max(n.shape) > work:
        f = work / max(n.shape)
        n = cv2.resize(n, (max(1, round(full_w * f)), max(1, round(full_h * f))), interpolation=cv2.INTER_AREA)
    sx, sy = full_w / n.shape[1], full_h / n.shape[0]
    side = max(n.shape)
    r = max(1, int(round(peak_distance * side)))
    dil = cv2.dilate(n, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1)))
    peaks = np.argwhere((n >= dil) & (n >= min_peak * 255.0))
    # Plateaus give several equal maxima: keep one per connected plateau, strongest first.
    order = np.argsort(-n[peaks[:, 0], peaks[:, 1]], kind="stable")
    boxes: list[Box] = []
    for py, px in peaks[order]:
        value = n[py, px]
        mask = (n >= rel_threshold * value).astype(np.uint8)
        _, labels = cv2.connectedComponents(mask, connectivity=8)
        region = labels == labels[py, px]
        ys, xs = np.nonzero(region)
        box = Box(float(xs.min() * sx), float(ys.min() * sy), float((xs.max() - xs.min() + 1) * sx),
                  float((ys.max() - ys.min() + 1) * sy), float(value) / 255.0)
        if box.w * box.h < min_pixels:
            continue
        if all(iou(box.as_tuple(), b.as_tuple()) <= nms_iou for b in boxes):
            boxes.append(box)
        if len(boxes) >= max_boxes:
            break
    return boxes


def heatmap_to_boxes(heatmap: np.ndarray, method: str = "paper", **kwargs) -> list[Box]:
    """Dispatch to :func:`paper_boxes`, :func:`adaptive_boxes` or :func:`threshold_boxes` (keyword arguments
    passed on).

    An unknown ``method`` or keyword is a :class:`CxrkitError` listing the valid choices.
    """
    funcs = {"paper": paper_boxes, "adaptive": adaptive_boxes, "threshold": threshold_boxes}
    if method not in funcs:
        raise CxrkitError(f"unknown box method {method!r}; choose one of {METHODS}")
    import inspect

    valid = [p for p in inspect.signature(funcs[method]).parameters if p != "heatmap"]
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        raise CxrkitError(f"unknown option(s) {unknown} for box method {method!r}; valid: {valid}")
    return funcs[method](heatmap, **kwargs)

"""Class activation maps: CAM for GAP + linear heads, Grad-CAM for any network.

All functions take a normalized input batch ``x`` (N, C, S, S) (see ``model.preprocess``) and return
non-negative heatmaps (N, K, h, w) at the feature-map resolution, one per label; :func:`upsample` brings
them to model-input or original-image resolution (bilinear). Heatmap value units are arbitrary; the box
extraction normalizes each map to [0, 255] as the ChestX-ray8 paper does.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from cxrkit.errors import CxrkitError
from cxrkit.io.geometry import SquareResize
from cxrkit.models.families.classifiers import (
    CAM_FLIPS,
    align_mirrored_views,
    upsample_cams,
    view_sign,
)

METHODS = ("cam", "gradcam")


def cam(model, x: torch.Tensor, clip: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Probabilities (N, K) and CAMs (N, K, h, w): ``sum_c w_kc f_c`` (Zhou et al. 2016), ReLU'd unless
    ``clip=False`` (the raw per-location class scores, in logit units, for display)."""
    if not hasattr(model, "forward_with_cams"):
        raise CxrkitError(f"model {type(model).__name__} has no GAP + linear head; use method='gradcam'")
    with torch.inference_mode():
        logits, maps = model.forward_with_cams(x)
    return torch.sigmoid(logits.float()), torch.relu(maps.float()) if clip else maps.float()


def grad_cam(model, x: torch.Tensor, target_layer: torch.nn.Module | None = None,
             classes: Sequence[int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Probabilities (N, K) and Grad-CAM maps (N, len(classes), h, w) (Selvaraju et al. 2017).

    ``target_layer`` defaults to ``model.target_layer`` (the last feature map). Each map is
    ``ReLU(sum_c alpha_kc A_c)`` with ``alpha_kc`` the spatial mean of d logit_k / d A_c.
    """
    if getattr(model, "flip_averaging", False):
        raise CxrkitError("grad_cam: this model averages the class maps of flipped inputs (cam_flips); use method='cam'")
    layer = target_layer if target_layer is not None else getattr(model, "target_layer", None)
    if layer is None:
        raise CxrkitError("grad_cam needs target_layer= for a model without .target_layer")
    store: dict[str, torch.Tensor] = {}

    def hook(_m, _inp, out):
        out.retain_grad()
        store["a"] = out

    handle = layer.register_forward_hook(hook)
    try:
        with torch.enable_grad():
            xx = x.detach().requires_grad_(False)
            logits = model(xx).float()
            k_all = range(logits.shape[1]) if classes is None else list(classes)
            maps = []
            for j, k in enumerate(k_all):
                model.zero_grad(set_to_none=True)
                if store["a"].grad is not None:
                    store["a"].grad = None
                logits[:, k].sum().backward(retain_graph=j + 1 < len(k_all))
                a, g = store["a"].detach().float(), store["a"].grad.detach().float()
                weights = g.mean(dim=(2, 3), keepdim=True)
                maps.append(torch.relu((weights * a).sum(dim=1)))
    finally:
        handle.remove()
    return torch.sigmoid(logits.detach()), torch.stack(maps, dim=1)


def heatmaps(model, x: torch.Tensor, method: str = "cam", clip: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Dispatch to :func:`cam` (``clip=False``: raw CAMs) or :func:`grad_cam` (always ReLU'd, by definition)."""
    if method == "cam":
        return cam(model, x, clip=clip)
    if method == "gradcam":
        return grad_cam(model, x)
    raise CxrkitError(f"unknown heatmap method {method!r}; choose one of {METHODS}")


# Class maps to model-input resolution with feature cell k centred on input pixel k * stride (see upsample_cams).
upsample = upsample_cams


def original_maps(model, images: Sequence[np.ndarray], method: str = "cam", bf16: bool = True,
                  clip: bool = True) -> tuple[np.ndarray, list[np.ndarray]]:
    """Probabilities (N, K) and, per image, heatmaps (K, H, W) at that image's original resolution.

    ``images``: grayscale arrays (H, W), any size and dtype (``model.preprocess`` pads each to a centred square
    and resizes it). The maps are :func:`heatmaps` (``clip`` as there) brought to model-input resolution by
    :func:`upsample` and mapped back to the original pixels (undo resize and pad); values in the CAM's units
    (>= 0 when clipped). For boxes by min-max normalization use ``clip=False``: where a finding's map is negative
    almost everywhere (LSE pooling plus the head's bias allows it), the clipped map is flat and holds no box.
    """
    x, geoms = model.preprocess(list(images))
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        if method == "gradcam":
            probs, maps = heatmaps(model, x.clone(), method)
        else:
            with torch.inference_mode():
                probs, maps = heatmaps(model, x, method, clip=clip)
    up = upsample(maps, model.card.input_size).numpy()
    full = [np.stack([g.map_to_original(m) for m in up[i]]) for i, g in enumerate(geoms)]
    return probs.float().numpy(), full


def estimate_view_shift(model, images, min_prob: float = 0.5, bf16: bool = True) -> dict:
    """Per label, the displacement ``d = (dx, dy)`` (input pixels) at which a flip-averaging classifier
    (``cam_flips``) responds away from what it detects, from its mirrored views alone (no boxes, no labels).

    The view mirrored by ``g`` peaks at ``c + g(d)`` (``c``: the lesion), so with the mirror signs ``s_g`` of
    :func:`~cxrkit.models.families.classifiers.view_sign`, ``d_x = sum_g s_gx x_g / V`` (likewise ``d_y``; 0 on an
    axis the views do not mirror, e.g. ``y`` for ``cam_flips="h"``): the median over the images (an iterable of
    grayscale arrays) whose probability for the label is at least ``min_prob``. The estimate is kept only if it
    makes the views agree better than no shift: the mean over those images of the averaged map's maximum is
    higher with it (a response that is not one rigid displacement, e.g. one that jumps between two places,
    gives a median that misaligns the views, and is dropped).

    Returns ``{"shift": ((dx, dy), ...) per label (what ``cam_view_shift`` takes), "estimate": the medians,
    "images": counts, "mean_peak": ((without, with), ...)}``.
    """
    flips = getattr(model, "cam_flips", "none")
    if flips == "none":
        raise CxrkitError("estimate_view_shift needs a classifier with flip-averaged class maps (cam_flips 'h' or 'hv')")
    dims = CAM_FLIPS[flips]
    signs = np.array([view_sign(d) for d in dims], float)  # (V, 2)
    usable = np.abs(signs.sum(0)) == 0  # an axis the views mirror
    labels = list(model.card.labels)
    found: list[list[np.ndarray]] = [[] for _ in labels]
    kept: list[list[torch.Tensor]] = [[] for _ in labels]  # each qualifying image's views, (V, S, S)
    for image in images:
        x, _ = model.preprocess([image])
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits, _ = model.forward_with_cams(x)
            views = model.view_maps(x).float()[:, 0]  # (V, K, S, S)
        probs = torch.sigmoid(logits.float())[0].numpy()
        v, k, size, _ = views.shape
        flat = views.reshape(v, k, -1).argmax(-1).numpy()
        peaks = np.stack([flat % size, flat // size], -1).astype(float)  # (V, K, 2) as (x, y)
        for j in range(k):
            if probs[j] >= min_prob:
                found[j].append((signs * peaks[:, j]).sum(0) / v)
                kept[j].append(views[:, j].to(torch.float16))
    estimate = [tuple(float(a) for a in np.median(f, 0) * usable) if f else (0.0, 0.0) for f in found]
    shift, peaks_with = [], []
    for j, d in enumerate(estimate):
        if not kept[j]:
            shift.append((0.0, 0.0))
            peaks_with.append((float("nan"), float("nan")))
            continue
        stack = torch.stack(kept[j], 1).float()[:, :, None]  # (V, N, 1, S, S)
        plain = float(stack.mean(0).flatten(1).amax(1).mean())
        moved = float(align_mirrored_views(stack, dims, (d,)).mean(0).flatten(1).amax(1).mean())
        shift.append(d if moved > plain else (0.0, 0.0))
        peaks_with.append((plain, moved))
    return {"shift": tuple(shift), "estimate": tuple(estimate), "images": tuple(len(f) for f in found),
            "mean_peak": tuple(peaks_with)}


def to_original(heatmap: np.ndarray, geom: SquareResize) -> np.ndarray:
    """A model-input-resolution heatmap (S, S) -> original image resolution (H, W) (undo pad + resize)."""
    return geom.map_to_original(heatmap)

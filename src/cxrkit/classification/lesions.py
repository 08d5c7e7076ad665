"""Synthetic findings inserted into real radiographs, with exact ground truth.

Array functions on float32 images in [0, 1] (bright = dense), any resolution; sizes are given in pixels of
a 1024-pixel image and scaled by ``scale = side / 1024``. Every function takes a ``numpy.random.Generator``
and returns the new image plus the inserted lesion's bounding box ``(x, y, w, h)`` in pixels of the image
it was given (x, y = top-left corner, 0-based).

Physics, roughly: a lesion adds attenuation, so transmitted intensity drops and the radiograph gets
brighter. With ``I`` the pixel (bright = dense) and ``t`` the lesion's projected thickness (0..1) we use
``I' = 1 - (1 - I) * exp(-k t)``: a faint haze over dark lung, little change over bone or heart, which is
what real nodules look like. Edges are blurred by a small Gaussian (focal-spot and detector blur) and the
lesion carries a little texture so it is not a perfect disc.

* Nodule: near-spherical (projected thickness ``sqrt(1 - r^2)``), diameter 26-70 px at 1024 (~1-2.7 cm at
  NIH's ~0.39 mm per pixel at 1024; smaller ones are a pixel or two at the 256 px model input).
* Mass: lobulated (radius modulated by low harmonics), diameter ~ 90-190 px at 1024 (> 3 cm).
* Effusion: fluid in the dependent part of one pleural space: the lung field below a meniscus that rises
  laterally (the costophrenic angle is blunted first), density increasing downward.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

LESION_FINDINGS: tuple[str, ...] = ("Effusion", "Mass", "Nodule")


@dataclass(frozen=True)
class LesionConfig:
    """Size (pixels at 1024) and strength ranges of the inserted findings."""

    nodule_radius: tuple[float, float] = (13.0, 35.0)
    nodule_k: tuple[float, float] = (0.7, 1.4)
    mass_radius: tuple[float, float] = (45.0, 95.0)
    mass_k: tuple[float, float] = (0.6, 1.4)
    effusion_height: tuple[float, float] = (0.15, 0.35)  # fraction of the lung's height
    effusion_k: tuple[float, float] = (1.0, 2.0)
    blur: float = 1.5  # Gaussian sigma, pixels at 1024


def _attenuate(image: np.ndarray, thickness: np.ndarray, k: float) -> np.ndarray:
    return 1.0 - (1.0 - image) * np.exp(-k * thickness)


def _blur(a: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(a, (0, 0), sigmaX=max(sigma, 0.3)) if sigma > 0 else a


def _texture(shape: tuple[int, int], rng: np.random.Generator, scale: float) -> np.ndarray:
    noise = rng.standard_normal(shape).astype(np.float32)
    noise = _blur(noise, 4.0 * max(scale, 0.5))
    return 1.0 + 0.12 * noise / (noise.std() + 1e-6)


def _pick_centre(allowed: np.ndarray, rng: np.random.Generator) -> tuple[int, int] | None:
    ys, xs = np.nonzero(allowed)
    if len(ys) == 0:
        return None
    i = rng.integers(len(ys))
    return int(xs[i]), int(ys[i])


def _blob(image: np.ndarray, allowed: np.ndarray, radius: float, k: float, lobes: float,
          rng: np.random.Generator, blur: float) -> tuple[np.ndarray, tuple[float, float, float, float]] | None:
    """Insert a (lobulated) sphere whose centre lies in ``allowed`` (already eroded by the radius)."""
    centre = _pick_centre(allowed, rng)
    if centre is None:
        return None
    cx, cy = centre
    h, w = image.shape
    pad = int(np.ceil(radius * (1 + 3 * lobes) + 4 * blur)) + 2
    x0, x1 = max(cx - pad, 0), min(cx + pad + 1, w)
    y0, y1 = max(cy - pad, 0), min(cy + pad + 1, h)
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    dx, dy = xx - cx, yy - cy
    theta = np.arctan2(dy, dx)
    r_edge = np.full_like(theta, radius)
    if lobes > 0:
        for harmonic in (2, 3, 4, 5):
            r_edge *= 1 + lobes * rng.uniform(0, 1) * np.cos(harmonic * theta + rng.uniform(0, 2 * np.pi)) / harmonic
    rho = np.sqrt(dx * dx + dy * dy) / r_edge
    thick = np.sqrt(np.clip(1.0 - rho * rho, 0.0, 1.0)).astype(np.float32)
    thick = _blur(thick * _texture(thick.shape, rng, blur / 1.5).astype(np.float32), blur)
    out = image.copy()
    out[y0:y1, x0:x1] = _attenuate(image[y0:y1, x0:x1], thick, k)
    inside = rho <= 1.0
    ys, xs = np.nonzero(inside)
    box = (float(xs.min() + x0), float(ys.min() + y0), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1))
    return out, box


def _eroded(mask: np.ndarray, radius: float) -> np.ndarray:
    r = max(int(round(radius)), 1)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    return cv2.erode(mask.astype(np.uint8), kernel) > 0


def insert_nodule(image: np.ndarray, lungs: np.ndarray, rng: np.random.Generator,
                  cfg: LesionConfig = LesionConfig(), avoid: np.ndarray | None = None):
    """Insert a nodule fully inside ``lungs`` (bool mask, both lungs); returns (image, box) or None."""
    s = image.shape[0] / 1024
    radius = rng.uniform(*cfg.nodule_radius) * s
    allowed = _eroded(lungs, radius * 1.2)
    if avoid is not None:
        allowed &= ~avoid
    return _blob(image, allowed, radius, rng.uniform(*cfg.nodule_k), 0.05, rng, cfg.blur * s)


def insert_mass(image: np.ndarray, lungs: np.ndarray, rng: np.random.Generator,
                cfg: LesionConfig = LesionConfig(), avoid: np.ndarray | None = None):
    """Insert a lobulated mass centred deep inside ``lungs``; returns (image, box) or None."""
    s = image.shape[0] / 1024
    radius = rng.uniform(*cfg.mass_radius) * s
    allowed = _eroded(lungs, radius * 0.8)
    if avoid is not None:
        allowed &= ~avoid
    if not allowed.any():
        allowed = _eroded(lungs, radius * 0.4)
    return _blob(image, allowed, radius, rng.uniform(*cfg.mass_k), 0.25, rng, cfg.blur * s)


def insert_effusion(image: np.ndarray, lung: np.ndarray, rng: np.random.Generator, lateral_side: str,
                    cfg: LesionConfig = LesionConfig()):
    """Fill the dependent part of one lung field (``lung``: that lung's bool mask) with fluid.

    ``lateral_side`` is ``"left"`` or ``"right"`` in *image* coordinates: the side of the lung away from
    the mediastinum (for the patient's right lung, the image left). Returns (image, box) or None.
    """
    ys, xs = np.nonzero(lung)
    if len(ys) < 50:
        return None
    s = image.shape[0] / 1024
    top, bottom = ys.min(), ys.max()
    x_min, x_max = xs.min(), xs.max()
    height = (bottom - top) * rng.uniform(*cfg.effusion_height)
    h, w = image.shape
    xx = np.arange(w, dtype=np.float32)
    lateral = (x_max - xx) / max(x_max - x_min, 1) if lateral_side == "left" else (xx - x_min) / max(x_max - x_min, 1)
    lateral = np.clip(lateral, 0, 1)
    # Lowest lung pixel per column: the fluid sits on the diaphragm, the meniscus climbs laterally.
    col_bottom = np.full(w, -1.0, dtype=np.float32)
    np.maximum.at(col_bottom, xs, ys.astype(np.float32))
    level = bottom - height * (0.55 + 0.45 * lateral ** 1.5)
    yy = np.arange(h, dtype=np.float32)[:, None]
    depth = (yy - level[None, :]) / max(height, 1.0)  # 0 at the meniscus, ~1 at the base
    fluid = lung & (depth > 0)
    if fluid.sum() < 20:
        return None
    thick = np.clip(depth * 2.5, 0, 1) * fluid
    thick = _blur(thick.astype(np.float32), 3.0 * s + cfg.blur * s)
    out = _attenuate(image, thick, rng.uniform(*cfg.effusion_k))
    fy, fx = np.nonzero(fluid)
    box = (float(fx.min()), float(fy.min()), float(fx.max() - fx.min() + 1), float(fy.max() - fy.min() + 1))
    return out, box


def insert_findings(image: np.ndarray, right_lung: np.ndarray, left_lung: np.ndarray, present: dict[str, bool],
                    rng: np.random.Generator, cfg: LesionConfig = LesionConfig()):
    """Insert each finding of ``present`` that is True; returns (image, {finding: box}).

    ``right_lung`` is the patient's right lung (image left). A finding that cannot be placed (a lung mask
    too small) is left out of the returned boxes, so callers label it negative.
    """
    lungs = right_lung | left_lung
    out = image.astype(np.float32, copy=True)
    boxes: dict[str, tuple[float, float, float, float]] = {}
    if present.get("Effusion"):
        side_right = rng.uniform() < 0.5
        lung, lateral = (right_lung, "left") if side_right else (left_lung, "right")
        res = insert_effusion(out, lung, rng, lateral, cfg)
        if res is not None:
            out, boxes["Effusion"] = res
    occupied = np.zeros_like(lungs)
    for finding, fn in (("Mass", insert_mass), ("Nodule", insert_nodule)):
        if present.get(finding):
            res = fn(out, lungs, rng, cfg, avoid=occupied)
            if res is not None:
                out, box = res
                boxes[finding] = box
                x, y, bw, bh = (int(v) for v in box)
                m = max(bw, bh)  # keep the next blob away from this one
                occupied[max(y - m, 0): y + bh + m, max(x - m, 0): x + bw + m] = True
    return np.clip(out, 0, 1), boxes

"""Data for the lesion-insertion benchmark: lung fields on real radiographs and a dataset that inserts
synthetic findings (:mod:`cxrkit.classification.lesions`) with exact boxes.

Lung fields come from a mean lung shape (JSRT landmark contours, ``data/lung_template.csv``) fitted to each
image by a small search over scale and shift that makes the template's inside as dark as possible relative
to its surroundings (lungs are the large dark regions of a radiograph). Or pass masks of your own, e.g. a
segmentation model's.
"""

from __future__ import annotations

import io
import json
import logging
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import torch

from cxrkit.classification.lesions import LESION_FINDINGS, LesionConfig, insert_findings
from cxrkit.errors import InputError
from cxrkit.io.atomic import write_bytes
from cxrkit.io.geometry import resize_area
from cxrkit.io.images import load_gray8

log = logging.getLogger(__name__)


def lung_template() -> tuple[np.ndarray, np.ndarray]:
    """Mean right and left lung contours, (44, 2) and (50, 2), (x, y) as fractions of the image side."""
    text = resources.files("cxrkit.classification").joinpath("data", "lung_template.csv").read_text()
    rows = [line.split(",") for line in text.splitlines() if line and not line.startswith(("#", "organ"))]
    pts = np.array([[float(x), float(y)] for _, x, y in rows], dtype=np.float32)
    organs = [o for o, _, _ in rows]
    return pts[[o == "right_lung" for o in organs]], pts[[o == "left_lung" for o in organs]]


def _fill(points: np.ndarray, size: int) -> np.ndarray:
    m = np.zeros((size, size), np.uint8)
    cv2.fillPoly(m, [np.round(points * size).astype(np.int32)], 1)
    return m.astype(bool)


def fit_lung_template(image: np.ndarray, work: int = 128) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    """Fit the mean lung shape to ``image`` (uint8 or float, square-ish); returns the right and left lung
    masks at the image's resolution and the fitted (scale, dx, dy) (shifts as fractions of the side).

    Score = mean intensity of a ring around the lungs minus mean intensity inside them (higher = darker
    lungs against brighter mediastinum/ribs/soft tissue).
    """
    small = resize_area(image if image.dtype == np.uint8 else (np.clip(image, 0, 1) * 255).astype(np.uint8), work)
    small = small.astype(np.float32)
    rl, ll = lung_template()
    centre = np.concatenate([rl, ll]).mean(0)
    best = (-np.inf, (1.0, 0.0, 0.0))
    kernel = np.ones((9, 9), np.uint8)
    for scale in (0.85, 0.92, 1.0, 1.08):
        for dx in np.linspace(-0.08, 0.08, 7):
            for dy in np.linspace(-0.1, 0.06, 7):
                m = _fill((rl - centre) * scale + centre + (dx, dy), work) | _fill((ll - centre) * scale + centre + (dx, dy), work)
                if m.sum() < 50:
                    continue
                ring = cv2.dilate(m.astype(np.uint8), kernel).astype(bool) & ~m
                score = small[ring].mean() - small[m].mean()
                if score > best[0]:
                    best = (score, (scale, float(dx), float(dy)))
    scale, dx, dy = best[1]
    size = image.shape[0]
    place = lambda p: (p - centre) * scale + centre + (dx, dy)  # noqa: E731
    right, left = _fill(place(rl), size), _fill(place(ll), size)
    if image.shape[1] != size:
        right = cv2.resize(right.astype(np.uint8), image.shape[::-1], interpolation=cv2.INTER_NEAREST) > 0
        left = cv2.resize(left.astype(np.uint8), image.shape[::-1], interpolation=cv2.INTER_NEAREST) > 0
    return right, left, (scale, dx, dy)


@dataclass
class BaseImages:
    """Real radiographs at the working resolution with their lung fields."""

    names: list[str]
    images: np.ndarray  # float32 (N, S, S) in [0, 1]
    right: np.ndarray  # bool (N, S, S), patient's right lung (image left)
    left: np.ndarray
    original_size: list[tuple[int, int]]  # (height, width) of each original image

    def subset(self, index: Sequence[int]) -> "BaseImages":
        """The images at positions ``index``, in that order."""
        idx = list(index)
        return BaseImages([self.names[i] for i in idx], self.images[idx], self.right[idx], self.left[idx],
                          [self.original_size[i] for i in idx])


def save_base_images(path, base: BaseImages, excluded: Sequence[str], made_for: dict) -> None:
    """Write ``base`` (images as uint8, lung fields bit-packed), the names left out and the settings it was made
    for (``made_for``, a JSON-able dict) to the ``.npz`` file ``path``, atomically."""
    buf = io.BytesIO()
    np.savez_compressed(buf, names=np.array(base.names), excluded=np.array(list(excluded), dtype=str),
                        images=np.round(base.images * 255).astype(np.uint8), shape=np.array(base.right.shape),
                        right=np.packbits(base.right), left=np.packbits(base.left),
                        original_size=np.array(base.original_size, dtype=np.int64).reshape(-1, 2),
                        made_for=np.array(json.dumps(made_for, sort_keys=True)))
    write_bytes(path, buf.getvalue())


def read_base_images(path) -> tuple[BaseImages, list[str], dict]:
    """Read a :func:`save_base_images` file: (images, names left out, the settings it was made for)."""
    try:
        with np.load(path) as z:
            shape = tuple(int(v) for v in z["shape"])
            count = int(np.prod(shape))
            base = BaseImages([str(n) for n in z["names"]], z["images"].astype(np.float32) / 255.0,
                              np.unpackbits(z["right"], count=count).reshape(shape).astype(bool),
                              np.unpackbits(z["left"], count=count).reshape(shape).astype(bool),
                              [(int(h), int(w)) for h, w in z["original_size"]])
            return base, [str(n) for n in z["excluded"]], json.loads(str(z["made_for"]))
    except (OSError, KeyError, ValueError) as e:
        raise InputError(f"{path}: not a lesion-benchmark image cache ({e})") from None


class LesionDataset(torch.utils.data.Dataset):
    """Deterministic synthetic-finding samples on real images.

    Sample ``i`` uses base image ``i % N`` and draws its findings (each present with probability
    ``prevalence``), positions, sizes and contrasts from a generator seeded with ``(seed, i)``, so the
    same index always gives the same sample (exact resume, reproducible test sets). ``len = N * repeats``.

    Dict samples (the cxrkit dataset contract): ``image`` (1, input_size, input_size) float in [0, 1],
    ``labels`` (3,) 1/0 for :data:`LESION_FINDINGS`, ``id`` (``<image>#<i>``), ``boxes`` (3, 4)
    ``(x, y, w, h)`` in pixels of the *original* image (NaN for absent findings).
    """

    findings: tuple[str, ...] = LESION_FINDINGS

    def __init__(self, base: BaseImages, input_size: int, repeats: int, seed: int, prevalence: float = 0.5,
                 config: LesionConfig = LesionConfig()):
        self.base, self.input_size, self.repeats, self.seed = base, int(input_size), int(repeats), int(seed)
        self.prevalence, self.config = float(prevalence), config

    def __len__(self) -> int:
        return len(self.base.names) * self.repeats

    def render(self, i: int) -> tuple[np.ndarray, dict[str, tuple[float, float, float, float]], str]:
        """The full-working-resolution image (float [0, 1]), boxes in original pixels, and the id."""
        n = len(self.base.names)
        j = i % n
        rng = np.random.default_rng([self.seed, i])
        present = {f: bool(rng.uniform() < self.prevalence) for f in LESION_FINDINGS}
        img, boxes = insert_findings(self.base.images[j], self.base.right[j], self.base.left[j], present, rng, self.config)
        h, w = self.base.original_size[j]
        s = self.base.images.shape[1]
        boxes = {f: (b[0] * w / s, b[1] * h / s, b[2] * w / s, b[3] * h / s) for f, b in boxes.items()}
        return img, boxes, f"{self.base.names[j]}#{i // n}"

    def __getitem__(self, i: int) -> dict:
        img, boxes, ident = self.render(i)
        small = resize_area(img, self.input_size) if img.shape[0] != self.input_size else img
        labels = np.array([1.0 if f in boxes else 0.0 for f in LESION_FINDINGS], dtype=np.float32)
        b = np.full((len(LESION_FINDINGS), 4), np.nan, dtype=np.float32)
        for k, f in enumerate(LESION_FINDINGS):
            if f in boxes:
                b[k] = boxes[f]
        return {"image": torch.from_numpy(np.ascontiguousarray(small, dtype=np.float32))[None],
                "labels": torch.from_numpy(labels), "id": ident, "boxes": torch.from_numpy(b)}


def load_base_images(paths: Sequence[str], size: int = 512, progress: bool = False) -> BaseImages:
    """Decode images, resize to ``size`` (whole image, area) and fit lung fields."""
    from tqdm.auto import tqdm  # lazy: progress bars only here

    names, imgs, rights, lefts, shapes = [], [], [], [], []
    for p in tqdm(list(paths), desc="lung fields", disable=not progress):
        full = load_gray8(p)
        img = resize_area(full, size)
        r, lft, _ = fit_lung_template(img)
        names.append(Path(p).name)
        imgs.append(img.astype(np.float32) / 255.0)
        rights.append(r)
        lefts.append(lft)
        shapes.append(full.shape)
    return BaseImages(names, np.stack(imgs), np.stack(rights), np.stack(lefts), shapes)

"""torch ``Dataset`` wrappers.

The shared contract for every cxrkit dataset:

* ``dataset.findings``: the finding names, in label-vector order (the NIH 14).
* ``dataset.table``: a pandas DataFrame row-aligned with the dataset (``dataset[i]`` is row ``i``).
* ``dataset[i]`` is a dict sample:

  ``image``    float32 tensor ``(1, size, size)`` in [0, 1] (bright = dense): the image padded to a centred
               square and resized (:class:`~cxrkit.io.geometry.SquareResize`, the model cards' geometry)
  ``labels``   float32 tensor ``(14,)``: 1 positive, 0 negative, NaN unknown
  ``id``       image file name; ``patient``: int patient id
  ``boxes``    float32 tensor ``(K, 4)`` of ``(x, y, w, h)`` in pixels of the *returned* image
               (K may be 0); ``box_labels``: int64 tensor ``(K,)`` of finding indices
  ``scale``    ``(sy, sx)``: returned pixels per original pixel (equal: the geometry keeps the aspect ratio)
  ``orig_size`` ``(height, width)`` of the original image: ``SquareResize(height, width, size)`` maps
               points, boxes and masks between the two
  ``masks``    (only when a CheXmask source is given) float32 tensor ``(3, size, size)``: right lung,
               left lung, heart (0/1, nearest-neighbour resize); ``has_masks``: bool, False (and zero
               masks) for images without a CheXmask row

* Randomness (augmentation) comes from a ``torch.Generator`` or numpy ``Generator`` passed in by the
  caller; nothing seeds global state.
"""

from __future__ import annotations

import os
from typing import Callable, Mapping

import cv2
import numpy as np
import pandas as pd

from cxrkit.data.cache import ImageCache
from cxrkit.data.chexmask import CheXmaskRecord
from cxrkit.data.locate import ImageLocator
from cxrkit.data.nih import label_matrix
from cxrkit.errors import InputError, require
from cxrkit.findings import FINDING_INDEX, FINDINGS
from cxrkit.io.geometry import SquareResize
from cxrkit.io.images import load_gray8
from cxrkit.io.landmarks import ORGANS

torch = require("torch", "torch")


class NIHDataset(torch.utils.data.Dataset):
    """ChestX-ray14 images with their 14 labels and, where available, expert boxes.

    Args:
        table: canonical metadata (:func:`cxrkit.data.nih.read_metadata`), optionally filtered to a split.
        images: an :class:`ImageLocator`, a folder (flat or NIH ``images_0xx/images`` layout), or an
            :class:`~cxrkit.data.cache.ImageCache` built at ``size`` (decoded once; much faster).
        size: side of the returned square image in pixels (the image padded to a centred square, then resized).
        boxes: optional :func:`cxrkit.data.nih.read_boxes` table (coordinates in 1024 NIH pixels).
        transform: optional callable applied to the dict sample (e.g. augmentation).
        uint8: give ``image`` as uint8 (1, size, size) instead of float32 in [0, 1]: 4x less to move between
            loader processes; the trainer scales it on the device.
        masks: optional CheXmask rows, ``{image id: CheXmaskRecord}`` (e.g. from
            ``{r.image_id: r for r in cxrkit.data.chexmask.iter_records(csv)}``); masks stored in
            CheXmask's 1024 square space are mapped back to the image with ``SquareResize``.
    """

    findings: tuple[str, ...] = FINDINGS

    def __init__(
        self,
        table: pd.DataFrame,
        images: ImageLocator | ImageCache | str | os.PathLike,
        size: int = 224,
        boxes: pd.DataFrame | None = None,
        transform: Callable[[dict], dict] | None = None,
        masks: Mapping[str, CheXmaskRecord] | None = None,
        uint8: bool = False,
    ):
        self.table = table.reset_index(drop=True)
        self.size = int(size)
        self.cache: ImageCache | None = images if isinstance(images, ImageCache) else None
        if self.cache is not None:
            if self.cache.size != self.size:
                raise InputError(f"{self.cache.path}: cache holds {self.cache.size}px images, dataset asks {self.size}")
            self.locator = None
        else:
            self.locator = images if isinstance(images, ImageLocator) else ImageLocator(images)
        self.transform = transform
        self.masks = masks
        self.uint8 = uint8
        self._labels = label_matrix(self.table)
        self._names = self.table["Image Index"].tolist()
        self._patients = [int(p) for p in self.table["Patient ID"]]
        self._boxes: dict[str, list[tuple[int, tuple[float, float, float, float]]]] = {}
        if boxes is not None:
            for row in boxes.itertuples(index=False):
                self._boxes.setdefault(row[0], []).append((FINDING_INDEX[row[1]], (row.x, row.y, row.w, row.h)))

    def __len__(self) -> int:
        return len(self.table)

    def __getitem__(self, i: int) -> dict:
        name = self._names[i]
        if self.cache is not None:
            img = self.cache[name]
            h, w = self.cache.original_shape(name)
        else:
            full = load_gray8(self.locator.path(name))
            h, w = full.shape
            img = SquareResize(h, w, self.size).image_to_square(full)
        return self._sample(i, img, h, w)

    def __getitems__(self, indices: list[int]) -> list[dict]:
        """A batch at once (PyTorch's batched fetch): from a cache, one sorted read of the memory map."""
        if self.cache is None:
            return [self[i] for i in indices]
        rows = np.array([self.cache.index(self._names[i]) for i in indices])
        order = np.argsort(rows)
        pixels = np.empty((len(rows), self.size, self.size), np.uint8)
        pixels[order] = self.cache.pixels[rows[order]]
        shapes = self.cache.shapes[rows]
        return [self._sample(i, pixels[k], int(shapes[k, 0]), int(shapes[k, 1])) for k, i in enumerate(indices)]

    def _sample(self, i: int, img: np.ndarray, h: int, w: int) -> dict:
        name = self._names[i]
        geom = SquareResize(h, w, self.size)
        found = self._boxes.get(name, [])
        b = geom.boxes_to_square(np.array([x for _, x in found], dtype=np.float64).reshape(-1, 4))
        image = torch.from_numpy(np.ascontiguousarray(img))[None] if self.uint8 else \
            torch.from_numpy(img.astype(np.float32) / 255.0)[None]
        sample = {
            "image": image,
            "labels": torch.from_numpy(self._labels[i].copy()),
            "id": name,
            "patient": self._patients[i],
            "boxes": torch.from_numpy(b.astype(np.float32)),
            "box_labels": torch.tensor([k for k, _ in found], dtype=torch.int64),
            "scale": (geom.scale, geom.scale),
            "orig_size": (h, w),
        }
        if self.masks is not None:
            sample["masks"], sample["has_masks"] = self._masks(name, h, w)
        return self.transform(sample) if self.transform else sample

    def _masks(self, name: str, h: int, w: int) -> tuple["torch.Tensor", bool]:
        out = np.zeros((len(ORGANS), self.size, self.size), dtype=np.float32)
        record = self.masks.get(name) if self.masks is not None else None
        if record is None:
            return torch.from_numpy(out), False
        geom = SquareResize(h, w, self.size)
        for k, organ in enumerate(ORGANS):
            m = record.mask(organ)
            if m.shape != (h, w):
                if m.shape != (record.height, record.width) or record.height != record.width:
                    raise InputError(f"{record.where}: mask of {name!r} is {m.shape}, image is {(h, w)}")
                m = SquareResize(h, w, record.height).mask_to_original(m)
            out[k] = geom.image_to_square(m.astype(np.uint8), interpolation=cv2.INTER_NEAREST)
        return torch.from_numpy(out), True


def collate(samples: list[dict]) -> dict:
    """Batch dict samples: stack tensors of equal shape, keep ragged ones (boxes) as lists."""
    out: dict = {}
    for key in samples[0]:
        values = [s[key] for s in samples]
        if isinstance(values[0], torch.Tensor) and all(v.shape == values[0].shape for v in values):
            out[key] = torch.stack(values)
        else:
            out[key] = values
    return out

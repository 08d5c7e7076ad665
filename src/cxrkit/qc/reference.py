"""RCA reference sets: images with known (expert) masks of the right lung, left lung and heart.

Default: :data:`DEFAULT_JSRT_IDS`, a fixed subset of 16 images of the JSRT *training* split (every 11th
id of the sorted 174, so the validation and test images never serve as references) with their SCR
expert masks. JSRT's terms allow research use but not redistribution, so the images are not shipped in
the package: they are read from a local JSRT folder (the layout of :mod:`cxrkit.data.jsrt`), found
through ``--reference``, the ``CXRKIT_RCA_REFERENCE`` environment variable, or the project's shared
data folder (:func:`cxrkit.data.shared.find_shared`). Nothing is ever downloaded.

A user's own reference set is a folder ``images/<id>.png`` + ``masks/{right_lung,left_lung,heart}/<id>.png``
(0/255, same size as the image; "right" = the patient's right = image left); all of its images are used,
or only those listed in an optional ``reference.txt`` (one id per line).

Everything is stored in the square space CheXmask used (pad to a centred square, resize): images at
``image_size`` (float [0, 1]) for registration, masks at ``mask_size`` (bool) for the Dice.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from cxrkit.errors import CxrkitError

log = logging.getLogger(__name__)

STRUCTURES = ("right_lung", "left_lung", "heart")
IMAGE_SIZE = 128
MASK_SIZE = 256

DEFAULT_JSRT_IDS: tuple[str, ...] = (
    "JPCLN002", "JPCLN018", "JPCLN034", "JPCLN048", "JPCLN064", "JPCLN078", "JPCLN094", "JPCLN112",
    "JPCLN129", "JPCLN142", "JPCLN154", "JPCNN014", "JPCNN028", "JPCNN045", "JPCNN061", "JPCNN075",
)


@dataclass
class ReferenceSet:
    """K reference images (K, 1, image_size, image_size) float [0, 1] and masks (K, 3, mask_size, mask_size)."""

    ids: tuple[str, ...]
    images: torch.Tensor
    masks: torch.Tensor
    source: str = ""

    def __post_init__(self) -> None:
        if len(self.ids) == 0:
            raise CxrkitError(f"{self.source or 'reference set'}: no reference images")
        if self.images.shape[0] != len(self.ids) or self.masks.shape[:2] != (len(self.ids), len(STRUCTURES)):
            raise CxrkitError(f"reference set shapes do not match: {len(self.ids)} ids, images "
                              f"{tuple(self.images.shape)}, masks {tuple(self.masks.shape)}")

    def __len__(self) -> int:
        return len(self.ids)


def to_square(image: np.ndarray, size: int, mask: bool = False) -> np.ndarray:
    """Pad a (H, W) array to a centred square and resize it to ``size`` (masks: area > 0.5)."""
    from cxrkit.io.geometry import SquareResize

    geom = SquareResize(image.shape[0], image.shape[1], size)
    if mask:
        return geom.image_to_square(image.astype(np.float32), interpolation=cv2.INTER_AREA) > 0.5
    return geom.image_to_square(image)


def query_image(image: np.ndarray, image_size: int = IMAGE_SIZE) -> torch.Tensor:
    """One image (H, W, any dtype) -> (1, 1, S, S) float [0, 1] in CheXmask's square space."""
    from cxrkit.io.images import to_uint8

    if image.ndim != 2:
        raise CxrkitError(f"expected a 2-D grayscale image, got shape {image.shape}")
    img8 = image if image.dtype == np.uint8 else to_uint8(image)
    return torch.from_numpy(to_square(img8, image_size).astype(np.float32) / 255.0)[None, None]


def query_masks(masks: dict[str, np.ndarray], shape: tuple[int, ...], mask_size: int = MASK_SIZE) -> torch.Tensor:
    """The three masks (bool, each of the image's ``shape``) -> (1, 3, M, M) bool in the square space."""
    missing = [s for s in STRUCTURES if s not in masks]
    if missing:
        raise CxrkitError(f"masks lack {missing}; expected keys {list(STRUCTURES)}")
    for s in STRUCTURES:
        if masks[s].shape != tuple(shape):
            raise CxrkitError(f"mask {s!r} has shape {masks[s].shape}, the image {tuple(shape)}")
    return torch.from_numpy(np.stack([to_square(np.asarray(masks[s], bool), mask_size, mask=True)
                                      for s in STRUCTURES]))[None]


def prepare_query(image: np.ndarray, masks: dict[str, np.ndarray],
                  image_size: int = IMAGE_SIZE, mask_size: int = MASK_SIZE) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`query_image` and :func:`query_masks` of one image and its masks."""
    return query_image(image, image_size), query_masks(masks, image.shape, mask_size)


def load_reference(root: str | os.PathLike, ids: tuple[str, ...] | None = None,
                   image_size: int = IMAGE_SIZE, mask_size: int = MASK_SIZE) -> ReferenceSet:
    """Read a reference folder (JSRT layout or a user's, see the module docstring)."""
    from cxrkit.io.images import load_gray8

    root = Path(root)
    if not (root / "images").is_dir() or not (root / "masks").is_dir():
        raise CxrkitError(f"{root}: not a reference set (expected images/ and masks/{{{','.join(STRUCTURES)}}}/)")
    if ids is None:
        listed = root / "reference.txt"
        if listed.is_file():
            ids = tuple(line.strip() for line in listed.read_text().splitlines() if line.strip())
        elif (root / "split.csv").is_file():  # the JSRT folder: the documented default subset
            ids = DEFAULT_JSRT_IDS
        else:
            ids = tuple(sorted(p.stem for p in (root / "images").glob("*.png")))
    images, masks = [], []
    for i in ids:
        path = root / "images" / f"{i}.png"
        if not path.is_file():
            raise CxrkitError(f"{root}: reference image {path.name} is missing")
        img = load_gray8(path)
        images.append(to_square(img, image_size).astype(np.float32) / 255.0)
        ms = []
        for s in STRUCTURES:
            mp = root / "masks" / s / f"{i}.png"
            if not mp.is_file():
                raise CxrkitError(f"{root}: reference mask {s}/{mp.name} is missing")
            m = load_gray8(mp) > 127
            if m.shape != img.shape:
                raise CxrkitError(f"{mp}: mask shape {m.shape} differs from the image's {img.shape}")
            ms.append(to_square(m, mask_size, mask=True))
        masks.append(np.stack(ms))
    log.info("RCA reference set: %d images from %s", len(ids), root)
    return ReferenceSet(tuple(ids), torch.from_numpy(np.stack(images))[:, None], torch.from_numpy(np.stack(masks)),
                        source=str(root))


def default_reference_root() -> Path:
    """The folder of the default reference set, or a clear error saying how to provide one."""
    env = os.environ.get("CXRKIT_RCA_REFERENCE")
    if env:
        return Path(env)
    from cxrkit.data.shared import find_shared

    try:
        return Path(find_shared("segmentation/jsrt", "the JSRT images and SCR masks"))
    except CxrkitError:
        raise CxrkitError(
            "no RCA reference set: pass --reference DIR (a JSRT folder with images/, masks/ and split.csv, or your "
            "own images/ + masks/{right_lung,left_lung,heart}/), or set CXRKIT_RCA_REFERENCE. JSRT cannot be "
            "redistributed with cxrkit; it is free for research from the Japanese Society of Radiological "
            "Technology (SCR masks: van Ginneken et al. 2006)") from None

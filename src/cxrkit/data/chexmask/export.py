"""Writing a record's masks as PNG files named by its image id."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cxrkit.errors import InputError
from cxrkit.io.landmarks import ORGANS

if TYPE_CHECKING:  # pragma: no cover
    pass

log = logging.getLogger(__name__)

from cxrkit.data.chexmask.reader import CheXmaskRecord
from cxrkit.io.atomic import write_bytes
from cxrkit.io.images import encode_png

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def safe_filename(image_id: str) -> str:
    """A file-name-safe form of an image id: every character outside ``[A-Za-z0-9._-]`` becomes ``_``.

    So CheXpert's ``train/patient1/study1/view1_frontal.jpg`` gives
    ``train_patient1_study1_view1_frontal.jpg``; a leading ``.`` gets a ``_`` prefix (no hidden files,
    no ``..``). Ids that are already safe (NIH, MIMIC, VinDr, Padchest, CANDID) are unchanged.
    """
    name = _UNSAFE.sub("_", image_id.strip())
    if not name:
        raise InputError(f"image id {image_id!r} gives an empty file name")
    if name.startswith("."):
        name = "_" + name
    return name


def mask_paths(out_dir: str | os.PathLike, image_id: str) -> dict[str, Path]:
    """``{organ: out_dir / f"{safe_filename(id)}_{organ}.png"}`` for the three organs."""
    base = safe_filename(image_id)
    return {organ: Path(out_dir) / f"{base}_{organ}.png" for organ in ORGANS}


def write_masks(record: CheXmaskRecord, out_dir: str | os.PathLike) -> dict[str, Path]:
    """Decode the record's three RLE masks and write them as 8-bit 0/255 PNGs (atomically).

    All masks are decoded before any file is written, so a bad RLE writes nothing.
    """
    return write_mask_arrays(record.masks(), record.image_id, out_dir)


def write_mask_arrays(masks: dict[str, np.ndarray], image_id: str, out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write three bool masks (``right_lung``, ``left_lung``, ``heart``) as 8-bit 0/255 PNGs named as
    :func:`mask_paths` says (atomically; all encoded before any file is written)."""
    paths = mask_paths(out_dir, image_id)
    encoded = {organ: encode_png(np.where(masks[organ], np.uint8(255), np.uint8(0))) for organ in ORGANS}
    for organ in ORGANS:
        write_bytes(paths[organ], encoded[organ])
    return paths

"""ID columns named and valued as each CheXmask dataset's CSV spells them (``cxrkit segment --id-style``).

================  ================  =====================================================================
style             column            value (from the image's path)
================  ================  =====================================================================
``path``          ``ImageID``       the identity: path relative to the input root (cxrkit's default)
``nih``           ``Image Index``   the file name, ``00000001_000.png`` (ChestX-ray14)
``chexpert``      ``Path``          from the split folder on, ``train/patient00001/study1/view1_frontal.jpg``
``mimic``         ``dicom_id``      the file name without extension (MIMIC-CXR-JPG's ``<dicom_id>.jpg``)
``padchest``      ``ImageID``       the file name (PadChest's ``<ImageID>.png``)
``vindr``         ``image_id``      the file name without extension (VinDr-CXR's ``<image_id>.dicom``)
================  ================  =====================================================================

So a user's own ``cxrkit segment`` output joins the released CheXmask file of that dataset on its ID column,
and every reader (``cxrkit chexmask``, ``measure``, ``qc --masks-from``, ``chexmask to-parquet``) takes it back.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Callable

from cxrkit.errors import InputError, UsageError
from cxrkit.io.inputs import ImageInput


def _chexpert_path(inp: ImageInput) -> str:
    parts = PurePosixPath(inp.path.resolve().as_posix()).parts
    for i in range(len(parts) - 3, -1, -1):
        if parts[i] in ("train", "valid", "test") and re.fullmatch(r"patient\d+", parts[i + 1] if i + 1 < len(parts) else ""):
            return "/".join(parts[i:])
    raise InputError(f"{inp.path}: not in CheXpert's layout (expected .../train|valid|test/patientNNNNN/studyN/"
                     "<view>.jpg) for --id-style chexpert")


@dataclass(frozen=True)
class IdStyle:
    """One dataset's ID column: its name and how an image's path gives its value."""

    name: str
    column: str
    value: Callable[[ImageInput], str]
    unique_names: bool  # whether the value is the file name alone (then two files with one name collide)


ID_STYLES: dict[str, IdStyle] = {s.name: s for s in (
    IdStyle("path", "ImageID", lambda i: i.id, False),
    IdStyle("nih", "Image Index", lambda i: i.name, True),
    IdStyle("chexpert", "Path", _chexpert_path, False),
    IdStyle("mimic", "dicom_id", lambda i: i.path.stem, True),
    IdStyle("padchest", "ImageID", lambda i: i.name, True),
    IdStyle("vindr", "image_id", lambda i: i.path.stem, True),
)}


def id_style(name: str) -> IdStyle:
    """The :class:`IdStyle` called ``name``; a :class:`UsageError` naming the valid ones otherwise."""
    try:
        return ID_STYLES[name]
    except KeyError:
        raise UsageError(f"unknown ID style {name!r}; choose one of {', '.join(ID_STYLES)}") from None


def candidate_ids(inp: ImageInput, column: str) -> list[str]:
    """The values an image may have in a CSV whose ID column is ``column`` (most specific first): for
    ``ImageID`` the identity, then the file name (PadChest); for the other dataset columns their style's value.
    Used to match an image to its row in ``qc --masks-from``."""
    out = []
    for style in ID_STYLES.values():
        if style.column != column:
            continue
        try:
            v = style.value(inp)
        except InputError:
            continue
        if v not in out:
            out.append(v)
    if not out:  # a column of no known dataset (e.g. `Image`, `id`): the identity, then the file name
        out = [inp.id] + ([inp.name] if inp.name != inp.id else [])
    return out

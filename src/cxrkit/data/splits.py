"""The official NIH split, a seeded patient-wise train/val split, and a patient-leak check."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np

from cxrkit.data.nih import patient_of
from cxrkit.errors import InputError, UsageError
from cxrkit.io.tables import open_text

OFFICIAL_FILES = {"train_val": "train_val_list.txt", "test": "test_list.txt"}


def read_image_list(path: str | os.PathLike) -> list[str]:
    """Read an NIH split list (one image file name per line; blank lines ignored)."""
    with open_text(path) as fh:
        names = [line.strip() for line in fh if line.strip()]
    for lineno, name in enumerate(names, start=1):
        if not name.lower().endswith((".png", ".jpg", ".jpeg", ".dcm")):
            raise InputError(f"{path}: line {lineno}: {name!r} is not an image file name")
    return names


def official_split(folder: str | os.PathLike) -> dict[str, list[str]]:
    """Read ``train_val_list.txt`` and ``test_list.txt`` (plain or ``.gz``) from ``folder``."""
    folder = Path(folder)
    out = {}
    for split, name in OFFICIAL_FILES.items():
        candidates = [folder / name, folder / f"{name}.gz"]
        path = next((p for p in candidates if p.is_file()), None)
        if path is None:
            raise InputError(f"{folder}: no {name} (the official NIH split list) found")
        out[split] = read_image_list(path)
    check_patient_disjoint(out)
    return out


def patient_split(
    images: Iterable[str], val_fraction: float = 0.1, seed: int = 0
) -> dict[str, list[str]]:
    """Split images into ``train``/``val`` by patient with a seeded generator (no global seeding).

    Every image of a patient lands in the same split; ``val_fraction`` is the fraction of *patients*
    sent to validation. The input order is preserved within each split.
    """
    if not 0.0 < val_fraction < 1.0:
        raise UsageError(f"val_fraction must be in (0, 1), got {val_fraction!r}")
    images = list(images)
    patients = np.array([patient_of(i) for i in images])
    unique = np.unique(patients)
    rng = np.random.default_rng(seed)
    n_val = max(1, int(round(val_fraction * len(unique))))
    val_patients = set(rng.choice(unique, size=n_val, replace=False).tolist())
    is_val = np.fromiter((p in val_patients for p in patients), bool, len(patients))
    split = {
        "train": [im for im, v in zip(images, is_val) if not v],
        "val": [im for im, v in zip(images, is_val) if v],
    }
    check_patient_disjoint(split)
    return split


def check_patient_disjoint(splits: Mapping[str, Iterable[str]]) -> None:
    """Raise :class:`CxrkitError` if any patient's images fall in more than one split."""
    owner: dict[int, str] = {}
    clashes: dict[int, set[str]] = {}
    for split, images in splits.items():
        for im in images:
            p = patient_of(im)
            first = owner.setdefault(p, split)
            if first != split:
                clashes.setdefault(p, {first}).add(split)
    if clashes:
        shown = ", ".join(f"patient {p} in {sorted(s)}" for p, s in list(clashes.items())[:5])
        raise InputError(f"{len(clashes)} patient(s) cross splits: {shown}")

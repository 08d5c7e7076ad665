"""The JSRT database with the SCR expert masks and the HybridGNet landmark contours.

Layout (as in ``../shared/data``; research use only, never copied into this repository)::
    segmentation/jsrt/images/<id>.png                      247 radiographs, 1024 x 1024, 8-bit
    segmentation/jsrt/masks/{right_lung,left_lung,heart,right_clavicle,left_clavicle}/<id>.png   0/255
    segmentation/jsrt/split.csv                            id,split (train 174 / val 22 / test 51)
    landmarks/landmarks/{RL,LL,H}/<id>.npy                 44 / 50 / 26 (x, y) points at 1024 px

"right" is the patient's right (the image left). Landmarks exist for 246 of the 247 images (not JPCLN016).
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cxrkit.errors import InputError
from cxrkit.io.images import load_gray8

STRUCTURES = ("right_lung", "left_lung", "heart")
_LANDMARK_DIRS = {"right_lung": "RL", "left_lung": "LL", "heart": "H"}
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class JsrtCase:
    """One JSRT image: its id, split and file paths (landmarks may be missing)."""

    id: str
    split: str
    image: Path
    masks: dict
    landmark_files: dict | None

    def landmarks(self) -> np.ndarray | None:
        """(120, 2) float (x, y) at 1024 px in CheXmask order (right lung, left lung, heart), or None."""
        if self.landmark_files is None:
            return None
        return np.concatenate([np.load(self.landmark_files[s]).astype(np.float32).reshape(-1, 2) for s in STRUCTURES])

    def load_masks(self) -> dict[str, np.ndarray]:
        """The SCR expert masks of the three structures, bool (1024, 1024)."""
        return {s: load_gray8(self.masks[s]) > 127 for s in STRUCTURES}


def read_jsrt(segmentation_root: str | os.PathLike, landmarks_root: str | os.PathLike | None = None,
              split: str | None = None) -> list[JsrtCase]:
    """List the JSRT cases (optionally one split), checking that every listed file exists."""
    root = Path(segmentation_root)
    split_file = root / "split.csv"
    if not split_file.is_file():
        raise InputError(f"{root}: no split.csv (expected the JSRT layout, see cxrkit.data.jsrt)")
    if split is not None and split not in SPLITS:
        raise InputError(f"split {split!r} is not one of {SPLITS}")
    lm_root = Path(landmarks_root) if landmarks_root is not None else None
    cases = []
    with open(split_file, newline="") as f:
        for line, row in enumerate(csv.DictReader(f), start=2):
            if row.get("split") not in SPLITS:
                raise InputError(f"{split_file}:{line}: split {row.get('split')!r} is not one of {SPLITS}")
            if split is not None and row["split"] != split:
                continue
            cid = row["id"]
            image = root / "images" / f"{cid}.png"
            masks = {s: root / "masks" / s / f"{cid}.png" for s in STRUCTURES}
            missing = [p for p in [image, *masks.values()] if not p.is_file()]
            if missing:
                raise InputError(f"{split_file}:{line}: {cid}: missing {missing[0]}")
            lms = None
            if lm_root is not None:
                files = {s: lm_root / _LANDMARK_DIRS[s] / f"{cid}.npy" for s in STRUCTURES}
                lms = files if all(p.is_file() for p in files.values()) else None
            cases.append(JsrtCase(cid, row["split"], image, masks, lms))
    return cases

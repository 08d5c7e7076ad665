"""Shared by the CheXmask benches: build a large CheXmask-layout CSV by repeating the real rows of
``../shared/data/chexmask`` (all six datasets; or the CSVs of another folder, e.g. the bundled sample)
with unique ids, plus a prefix of it."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Callable

HEADER = ["Image Index", "Dice RCA (Mean)", "Dice RCA (Max)", "Landmarks", "Left Lung", "Right Lung", "Heart", "Height", "Width"]
SOURCES = ["CANDID-PTX.csv", "CheXpert.csv", "ChestX-Ray8.csv", "MIMIC-CXR-JPG.csv", "Padchest.csv", "VinDr-CXR.csv"]
ID_NAMES = ("Image Index", "Path", "dicom_id", "image_id", "ImageID")
SHARED = Path(os.environ.get("CXRKIT_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")) / "chexmask" / "subsets"
SAMPLE = Path(__file__).resolve().parents[1] / "src" / "cxrkit" / "demo" / "sample" / "chexmask"


def sources(data: Path) -> list[Path]:
    """The six HybridGNet CSVs under ``data``; in a folder without them (the bundled sample), its CSVs."""
    found = [data / n for n in SOURCES if (data / n).is_file()]
    found = found or [p for p in sorted(data.glob("*.csv"))
                      if "annotations" not in p.name and "name_mapping" not in p.name]
    if not found:
        raise SystemExit(f"no CheXmask CSVs under {data}")
    return found


def build(data: Path, out: Path, size_bytes: int, prefix: Path, prefix_bytes: int,
          make_id: Callable[[str, int], str]) -> tuple[int, int]:
    """Write ``out`` (at least ``size_bytes``) and ``prefix`` (its first ~``prefix_bytes``); the id of copy
    ``k`` of a row with id ``rid`` is ``make_id(rid, k)``. Returns (rows, prefix rows)."""
    csv.field_size_limit(2**31 - 1)
    rows = []
    for path in sources(data):
        with open(path, newline="") as fh:
            for r in csv.DictReader(fh):
                rid = next(r[k] for k in ID_NAMES if k in r)
                rows.append([rid] + [r[h] for h in HEADER[1:]])
    n = n_prefix = copy = 0
    with open(out, "w", newline="") as fh, open(prefix, "w", newline="") as fs:
        w, ws = csv.writer(fh, lineterminator="\n"), csv.writer(fs, lineterminator="\n")
        w.writerow(HEADER)
        ws.writerow(HEADER)
        while fh.tell() < size_bytes:
            for r in rows:
                line = [make_id(r[0], copy)] + r[1:]
                w.writerow(line)
                n += 1
                if fs.tell() < prefix_bytes:
                    ws.writerow(line)
                    n_prefix += 1
            copy += 1
    return n, n_prefix

"""NIH ChestX-ray14 metadata and expert boxes.

Three metadata formats exist and are detected from the header:

``2017``
    The original ``Data_Entry_2017.csv``: ages as ``058Y`` / ``011M`` / ``001D``, zero-padded ids,
    and a trailing comma on the header.
``v2020``
    ``Data_Entry_2017_v2020.csv``, the 2020 relabel: integer ages in years, rows not sorted.
``kaggle``
    The 5% Kaggle sample ``sample_labels.csv``: ``No_Finding``, ages like ``060Y``, and flat column
    names (``OriginalImageWidth``...).

All come out as one canonical table (:func:`read_metadata`), one row per image, in file order:

============================  =================================================================
column                        meaning
============================  =================================================================
``Image Index``               file name, e.g. ``00000001_000.png``
``Finding Labels``            canonical names joined by ``|``, or ``No Finding``
``Follow-up #``               int
``Patient ID``                int
``Patient Age``               float, years (months / 12, days / 365.25)
``Patient Gender``            ``M`` / ``F``
``View Position``             ``PA`` / ``AP``
``Width``, ``Height``         original image size in pixels (int)
``PixelSpacing_x``/``_y``     original pixel spacing in mm, rounded to 6 decimals
one column per finding        0.0 / 1.0 in :data:`~cxrkit.findings.FINDINGS` order (NaN = unknown)
============================  =================================================================
"""

from __future__ import annotations

import csv
import logging
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from cxrkit.errors import CxrkitError, InputError
from cxrkit.findings import FINDINGS, NO_FINDING, canonical_finding
from cxrkit.io.stream_errors import STREAM_ERRORS, stream_error
from cxrkit.io.tables import open_text

log = logging.getLogger(__name__)

CANONICAL_COLUMNS: tuple[str, ...] = (
    "Image Index",
    "Finding Labels",
    "Follow-up #",
    "Patient ID",
    "Patient Age",
    "Patient Gender",
    "View Position",
    "Width",
    "Height",
    "PixelSpacing_x",
    "PixelSpacing_y",
)

# Header signatures (normalised: lower case, no spaces) of the 11 positional columns.
_HEADERS: dict[str, list[str]] = {
    "nih": [
        "imageindex", "findinglabels", "follow-up#", "patientid", "patientage", "patientgender",
        "viewposition", "originalimage[width", "height]", "originalimagepixelspacing[x", "y]",
    ],
    "kaggle": [
        "imageindex", "findinglabels", "follow-up#", "patientid", "patientage", "patientgender",
        "viewposition", "originalimagewidth", "originalimageheight", "originalimagepixelspacing_x",
        "originalimagepixelspacing_y",
    ],
}

_AGE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([YMDymd]?)\s*$")
_AGE_UNIT = {"": 1.0, "Y": 1.0, "M": 1.0 / 12.0, "D": 1.0 / 365.25}


def parse_age(value: str) -> float:
    """Parse an NIH age (``58``, ``058Y``, ``011M``, ``001D``) to years. Raises ValueError."""
    m = _AGE_RE.match(str(value))
    if not m:
        raise ValueError(f"{value!r} is not an age (expected e.g. 58, '058Y', '011M' or '001D')")
    return float(m.group(1)) * _AGE_UNIT[m.group(2).upper()]


def _short(value: object, limit: int = 300) -> str:
    """``repr(value)`` cut to ``limit`` characters (a damaged file can put megabytes into one header)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _norm_header(cells: list[str]) -> list[str]:
    return [re.sub(r"\s+", "", c).lower() for c in cells]


def detect_format(header: list[str], first_age: str | None) -> str:
    """Return ``'2017'``, ``'v2020'`` or ``'kaggle'`` for a metadata header and its first age value."""
    norm = [c for c in _norm_header(header)]
    while norm and norm[-1] == "":
        norm.pop()  # the 2017 release's trailing comma
    if norm[:11] == _HEADERS["kaggle"]:
        return "kaggle"
    if norm[:11] == _HEADERS["nih"]:
        if first_age is not None and re.fullmatch(r"\s*\d+\s*", first_age):
            return "v2020"
        return "2017"
    raise InputError(
        "unrecognised NIH metadata header "
        f"{_short(header)}; expected Data_Entry_2017(.csv/_v2020.csv) or the Kaggle sample_labels.csv columns"
    )


def read_metadata(path: str | os.PathLike) -> pd.DataFrame:
    """Read NIH metadata in any of the three formats (plain or gzip) into the canonical table.

    The format found is stored in ``df.attrs["format"]``. A row that cannot be parsed raises
    :class:`CxrkitError` naming the file, the line number (1-based, header = line 1) and the value.
    """
    path = Path(path)
    with open_text(path, encoding="utf-8-sig") as fh:  # a UTF-8 byte-order mark (Excel) is skipped
        reader = csv.reader(fh)
        try:
            header = next(reader)
            rows = list(reader)
        except StopIteration:
            raise InputError(f"{path}: empty file, expected an NIH metadata header") from None
        except (*STREAM_ERRORS, csv.Error) as exc:  # bad UTF-8, .gz cut short, a field over csv's limit
            raise stream_error(path, reader.line_num, exc) from None
    try:
        fmt = detect_format(header, rows[0][4] if rows and len(rows[0]) > 4 else None)
    except CxrkitError as exc:
        raise InputError(f"{path}: {exc}") from None
    bad = next((i for i, r in enumerate(rows) if len([c for c in r[11:] if c.strip()]) or len(r) < 11), None)
    if bad is not None:
        raise InputError(
            f"{path}: line {bad + 2}: expected 11 fields, got {len(rows[bad])}: {','.join(rows[bad])[:120]!r}"
        )
    table = pd.DataFrame([r[:11] for r in rows], columns=list(CANONICAL_COLUMNS), dtype=str)
    df = _convert(table, path)
    df.attrs["format"] = fmt
    df.attrs["source"] = str(path)
    log.info("read %d images from %s (format %s)", len(df), path, fmt)
    return df


def _to_numeric(s: pd.Series, kind: type, path: Path, column: str) -> pd.Series:
    out = pd.to_numeric(s.str.strip(), errors="coerce")
    bad = out.isna()
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise InputError(f"{path}: line {i + 2}: {column} {s.iloc[i]!r} is not a number")
    f = out.to_numpy(dtype=np.float64)
    bad = ~np.isfinite(f)
    if kind is int:  # also refuse 1.5 and values beyond int64 rather than truncate or wrap them
        bad |= (f != np.round(f)) | (np.abs(f) >= 2.0**63)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InputError(f"{path}: line {i + 2}: {column} {s.iloc[i]!r} is not a finite {'integer' if kind is int else 'number'}")
    return out.astype(kind)


def _convert(t: pd.DataFrame, path: Path) -> pd.DataFrame:
    df = pd.DataFrame({"Image Index": t["Image Index"].str.strip()})
    labels = []
    for i, cell in enumerate(t["Finding Labels"]):
        try:
            names = [canonical_finding(x) for x in cell.split("|") if x.strip()]
        except CxrkitError as exc:
            raise InputError(f"{path}: line {i + 2}: {exc}") from None
        if not names:
            raise InputError(f"{path}: line {i + 2}: empty Finding Labels (expected a finding or 'No Finding')")
        labels.append([n for n in names if n != NO_FINDING])
    df["Finding Labels"] = ["|".join(x) if x else NO_FINDING for x in labels]
    df["Follow-up #"] = _to_numeric(t["Follow-up #"], int, path, "Follow-up #")
    df["Patient ID"] = _to_numeric(t["Patient ID"], int, path, "Patient ID")
    ages = np.empty(len(t))
    for i, v in enumerate(t["Patient Age"]):
        try:
            ages[i] = parse_age(v)
        except ValueError as exc:
            raise InputError(f"{path}: line {i + 2}: Patient Age {exc}") from None
    df["Patient Age"] = ages
    sex = t["Patient Gender"].str.strip().str.upper()
    bad = ~sex.isin(["M", "F"])
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise InputError(f"{path}: line {i + 2}: Patient Gender {t['Patient Gender'].iloc[i]!r}, expected M or F")
    df["Patient Gender"] = sex
    df["View Position"] = t["View Position"].str.strip().str.upper()
    df["Width"] = _to_numeric(t["Width"], int, path, "Width")
    df["Height"] = _to_numeric(t["Height"], int, path, "Height")
    df["PixelSpacing_x"] = _to_numeric(t["PixelSpacing_x"], float, path, "PixelSpacing_x").round(6)
    df["PixelSpacing_y"] = _to_numeric(t["PixelSpacing_y"], float, path, "PixelSpacing_y").round(6)
    onehot = np.zeros((len(df), len(FINDINGS)), dtype=np.float32)
    index = {f: j for j, f in enumerate(FINDINGS)}
    for i, names in enumerate(labels):
        for n in names:
            onehot[i, index[n]] = 1.0
    for j, f in enumerate(FINDINGS):
        df[f] = onehot[:, j]
    return df


def label_matrix(df: pd.DataFrame) -> np.ndarray:
    """``(N, 14)`` float32 array of the finding columns (1/0/NaN) in FINDINGS order."""
    missing = [f for f in FINDINGS if f not in df.columns]
    if missing:
        raise InputError(f"table has no finding columns {missing}; read it with read_metadata()")
    return df[list(FINDINGS)].to_numpy(dtype=np.float32)


def patient_of(image_index: str) -> int:
    """Patient id of an NIH image file name (``00000013_005.png`` -> 13)."""
    stem = Path(image_index).name.split("_")[0]
    if not stem.isdigit():
        raise InputError(f"{image_index!r} is not an NIH image name (expected e.g. 00000013_005.png)")
    return int(stem)


def read_boxes(path: str | os.PathLike) -> pd.DataFrame:
    """Read ``BBox_List_2017.csv`` (plain or gzip) into columns ``Image Index, Finding, x, y, w, h``.

    Boxes are in pixels of the 1024x1024 NIH PNG, ``(x, y)`` the top-left corner, ``w, h`` the size.
    ``Infiltrate`` is mapped to ``Infiltration``; the file's trailing empty columns are ignored.
    """
    path = Path(path)
    out = []
    with open_text(path, encoding="utf-8-sig") as fh:  # a UTF-8 byte-order mark (Excel) is skipped
        reader = csv.reader(fh)
        try:
            header = next(reader, None)
            if not header or _norm_header(header[:2]) != ["imageindex", "findinglabel"]:
                raise InputError(f"{path}: not a BBox_List file (header {_short(header)}); expected 'Image Index,Finding Label,Bbox [x,y,w,h]'")
            for lineno, row in enumerate(reader, start=2):
                if not any(c.strip() for c in row):
                    continue
                try:
                    vals = [float(v) for v in row[2:6]]
                    if len(vals) != 4:
                        raise ValueError
                    if not all(np.isfinite(vals)):
                        raise ValueError("non-finite coordinate")
                    finding = canonical_finding(row[1])
                except (ValueError, CxrkitError) as exc:
                    raise InputError(f"{path}: line {lineno}: bad box row {row[:6]!r} ({exc or 'expected 4 numbers'})") from None
                out.append((row[0].strip(), finding, *vals))
        except (*STREAM_ERRORS, csv.Error) as exc:  # bad UTF-8, .gz cut short, a field over csv's limit
            raise stream_error(path, reader.line_num, exc) from None
    return pd.DataFrame(out, columns=["Image Index", "Finding", "x", "y", "w", "h"])

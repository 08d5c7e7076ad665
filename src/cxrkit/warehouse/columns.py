"""The Parquet layout of a converted CheXmask CSV: the CSV's own columns typed, plus derived ones (areas, boxes,
CTR, QC flag) computed straight from the RLE runs (no mask is decoded). See :mod:`cxrkit.warehouse.convert`."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from cxrkit.anatomy.measure import measure_masks
from cxrkit.data.chexmask import image_basename
from cxrkit.errors import CxrkitError, InputError, require
from cxrkit.io.landmarks import ORGAN_COLUMNS, ORGANS, parse_landmarks
from cxrkit.io.rle import parse_runs

QC_THRESHOLD = 0.7  # qc_pass = Dice RCA (Mean) >= QC_THRESHOLD (CheXmask's recommended cut-off)

_BOX = ("x0", "y0", "x1", "y1")
# Derived columns appended after the CSV's own columns, with their Arrow type names.
DERIVED_COLUMNS: dict[str, str] = {
    "dataset": "string",
    "image_id": "string",
    "image_index": "string",
    "source_line": "int64",
    "dice_swapped": "bool_",
    "size_was_blank": "bool_",
    **{f"{organ}_area": "int64" for organ in ORGANS},
    **{f"{organ}_{c}": "int32" for organ in ORGANS for c in _BOX},
    "heart_width": "int32",
    "thorax_width": "int32",
    "ctr": "float64",
    "qc_pass": "bool_",
}


def pyarrow_modules():
    """pyarrow and pyarrow.parquet, or the install hint."""
    return require("pyarrow", "scale"), require("pyarrow.parquet", "scale")


def runs_geometry(starts: np.ndarray, lengths: np.ndarray, width: int) -> tuple[int, tuple[int, int, int, int] | None]:
    """Area and bounding box of an RLE mask from its runs, without decoding it.

    ``starts`` are 0-based flat indices over the row-major ``height x width`` mask and ``lengths`` the
    run lengths (as returned by :func:`cxrkit.io.rle.parse_runs`). Returns ``(area, (x0, y0, x1, y1))``
    in pixels: ``x`` = column, ``y`` = row, 0-based, both ends inclusive; the box is None for an empty
    mask. A run that wraps onto the next row covers the last column of its first row and the first
    column of the next, so it makes ``x0 = 0`` and ``x1 = width - 1``.
    """
    if starts.size == 0:
        return 0, None
    ends = starts + lengths - 1  # last pixel of each run, inclusive
    area = int(lengths.sum())
    y0 = int(starts[0] // width)
    y1 = int(ends[-1] // width)
    first_col = starts % width
    last_col = ends % width
    if bool(np.any(ends // width != starts // width)):
        x0, x1 = 0, width - 1
    else:
        x0, x1 = int(first_col.min()), int(last_col.max())
    return area, (x0, y0, x1, y1)


def _ctr(boxes: dict[str, tuple[int, int, int, int] | None], width: int) -> tuple[int, int, float | None]:
    """``(heart width, thorax width, CTR)`` by :func:`cxrkit.anatomy.measure.measure_masks` on the masks'
    column projections (exactly its value on the full masks: it only uses occupied columns)."""
    projections = []
    for organ in ORGANS:
        row = np.zeros((1, width), dtype=bool)
        box = boxes[organ]
        if box is not None:
            row[0, box[0]] = row[0, box[2]] = True
        projections.append(row)
    m = measure_masks(*projections)
    return m.heart_width_px, m.thorax_width_px, (None if math.isnan(m.ctr) else float(m.ctr))


@dataclass(frozen=True)
class Layout:
    """Output name and kind of each CSV column (kind: str, dice_mean, dice_max, height, width)."""
    names: tuple[str, ...]
    kinds: tuple[str, ...]

    @property
    def all_names(self) -> list[str]:
        return list(self.names) + list(DERIVED_COLUMNS)


def layout_of(cols: Any) -> Layout:
    special = {cols.dice_mean: "dice_mean", cols.dice_max: "dice_max", cols.height: "height", cols.width: "width"}
    special.pop(None, None)
    taken = {n.lower() for n in DERIVED_COLUMNS}
    names: list[str] = []
    kinds: list[str] = []
    for i, raw in enumerate(cols.header):
        name = raw if raw.strip() else f"unnamed_{i}"
        while name.lower() in taken:
            name = f"{name} (csv)"
        taken.add(name.lower())
        names.append(name)
        kinds.append(special.get(i, "str"))
    return Layout(tuple(names), tuple(kinds))


def schema_of(layout: Layout):
    pa, _ = pyarrow_modules()
    types = {"str": pa.string(), "dice_mean": pa.float64(), "dice_max": pa.float64(),
             "height": pa.int32(), "width": pa.int32()}
    fields = [pa.field(n, types[k]) for n, k in zip(layout.names, layout.kinds)]
    fields += [pa.field(n, getattr(pa, t)()) for n, t in DERIVED_COLUMNS.items()]
    return pa.schema(fields)


class RowBuffer:
    """Column lists for one row group."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.columns: dict[str, list[Any]] = {n: [] for n in layout.all_names}
        self.n = 0

    def clear(self) -> None:
        for values in self.columns.values():
            values.clear()
        self.n = 0

    def add(self, rec: Any, fields: list[str], dataset: str) -> None:
        """Derive and append one row; raises CxrkitError (without location) for a bad RLE or landmarks."""
        geo: dict[str, tuple[int, tuple[int, int, int, int] | None]] = {}
        for organ in ORGANS:
            try:
                starts, lengths = parse_runs(getattr(rec, organ), rec.height, rec.width)
            except CxrkitError as exc:
                raise InputError(f"{ORGAN_COLUMNS[organ]}: {exc}") from None
            geo[organ] = runs_geometry(starts, lengths, rec.width)
        try:
            parse_landmarks(rec.landmarks)
        except CxrkitError as exc:
            raise InputError(f"Landmarks: {exc}") from None
        heart_w, thorax_w, ctr = _ctr({o: g[1] for o, g in geo.items()}, rec.width)
        cols = self.columns
        for name, kind, value in zip(self.layout.names, self.layout.kinds, fields):
            cols[name].append(value if kind == "str" else getattr(rec, kind))  # other kinds: parsed record fields
        cols["dataset"].append(dataset)
        cols["image_id"].append(rec.image_id)
        cols["image_index"].append(image_basename(rec.image_id))
        cols["source_line"].append(rec.line)
        cols["dice_swapped"].append(rec.dice_swapped)
        cols["size_was_blank"].append(rec.size_was_blank)
        for organ in ORGANS:
            area, box = geo[organ]
            cols[f"{organ}_area"].append(area)
            for k, c in enumerate(_BOX):
                cols[f"{organ}_{c}"].append(None if box is None else box[k])
        cols["heart_width"].append(heart_w)
        cols["thorax_width"].append(thorax_w)
        cols["ctr"].append(ctr)
        cols["qc_pass"].append(None if rec.dice_mean is None else rec.dice_mean >= QC_THRESHOLD)
        self.n += 1

    def table(self, schema):
        pa, _ = pyarrow_modules()
        return pa.Table.from_pydict(self.columns, schema=schema)


__all__ = ["DERIVED_COLUMNS", "QC_THRESHOLD", "Layout", "RowBuffer", "layout_of", "pyarrow_modules", "runs_geometry",
           "schema_of"]

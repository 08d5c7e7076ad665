"""Streaming reader for CheXmask CSVs, Dice filtering, the NIH join, mask export and overlays.

A CheXmask CSV (Gaggion et al. 2023, https://github.com/ngaggion/CheXmask-Database) has one row per
image: an ID column, ``Dice RCA (Mean)`` and ``Dice RCA (Max)`` (the reverse-classification-accuracy
quality estimate), ``Landmarks`` (120 ``(x, y)`` points, see :mod:`cxrkit.io.landmarks`), three RLE
masks ``Right Lung``, ``Left Lung``, ``Heart`` (see :mod:`cxrkit.io.rle`) and ``Height``/``Width``
(the size the RLE masks were encoded at). The real files are several GB; everything here streams
them row by row with the :mod:`csv` module (memory stays flat as the file grows), plain or gzip.

Quirks of the real files handled here (checked on ``../shared/data/chexmask/subsets``):

* the ID column's name depends on the dataset: ``Image Index`` (ChestX-ray8 / NIH), ``Path``
  (CheXpert), ``dicom_id`` (MIMIC-CXR-JPG), ``image_id`` (VinDr-CXR), ``ImageID`` (Padchest,
  CANDID-PTX and the physicians' annotation files); see :data:`ID_COLUMNS`;
* columns are found by name, not position: Padchest writes ``Dice RCA (Max)`` before
  ``Dice RCA (Mean)``, the physicians' files write ``Right Lung`` before ``Left Lung`` and have a
  ``Dataset`` column but no Dice/Height/Width, a pandas index column (empty header) is ignored;
* ``Height``/``Width`` may be blank (= 1024, the stored 1024 space) or floats like ``1024.0``;
* in 30 of the 50 Padchest rows (exactly those with blank Height/Width) the value under
  ``Dice RCA (Max)`` is *smaller* than the one under ``Dice RCA (Mean)``, which is impossible for a
  max and a mean of the same Dice scores: the two values are swapped. CheXmask's own
  ``how_we_saved_annotations.py`` writes ``'Dice RCA (Max)': dice_rca_mean`` and vice versa. With
  ``repair_dice=True`` (the default) such rows get the two values swapped back and
  ``dice_swapped=True``.

Bad rows are never dropped silently: by default they raise :class:`CxrkitError` naming the file and
line; with ``lenient=True`` they are yielded as :class:`RowError` records instead.

QC CSVs written by cxrkit may carry six extra per-structure columns, ``Dice RCA (Mean) Right Lung``,
``Dice RCA (Mean) Left Lung``, ``Dice RCA (Mean) Heart`` and the same for ``(Max)`` (see
:func:`structure_dice_column`). The readers ignore them (they match no field above);
:func:`filter_csv` can filter on them (``structure_thresholds``).
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import io
import logging
import math
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Literal

import numpy as np

from cxrkit.errors import CxrkitError, UsageError, one_line
from cxrkit.io import rle as rle_codec
from cxrkit.io.atomic import atomic_open
from cxrkit.io.landmarks import ORGAN_COLUMNS, ORGANS, organ_masks, parse_landmarks
from cxrkit.io.stream_errors import STREAM_ERRORS, stream_error
from cxrkit.io.tables import open_text

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_MIN_DICE",
    "STORED_SIZE",
    "ID_COLUMNS",
    "Columns",
    "CheXmaskRecord",
    "RowError",
    "NihJoined",
    "FilterSummary",
    "read_columns",
    "iter_records",
    "iter_chunks",
    "find_record",
    "dice_reject_reason",
    "STRUCTURE_CHOICES",
    "structure_dice_column",
    "parse_structure_thresholds",
    "filter_csv",
    "summarize_csv",
    "join_nih",
    "records_frame",
    "read_name_mapping",
    "safe_filename",
    "mask_paths",
    "write_masks",
    "render_overlay",
]

DEFAULT_MIN_DICE = 0.7
STORED_SIZE = 1024  # side of the square the preprocessed CheXmask CSVs store masks and landmarks in

# ID column names, in the order they are preferred when a header has several.
ID_COLUMNS: tuple[str, ...] = ("Image Index", "Path", "dicom_id", "image_id", "ImageID", "Image", "filename", "id")

# Big enough for the RLE of a 16k x 16k checkerboard; never lowered (csv's limit is process-wide).
_FIELD_SIZE_LIMIT = 2**31 - 1


def _norm(name: str) -> str:
    return re.sub(r"[^0-9a-z]+", "", name.lower())


_ID_KEYS = {_norm(n): i for i, n in enumerate(ID_COLUMNS)}
_FIELD_KEYS = {
    "landmarks": "landmarks",
    "rightlung": "right_lung",
    "leftlung": "left_lung",
    "heart": "heart",
    "dicercamean": "dice_mean",
    "dicercamax": "dice_max",
    "height": "height",
    "width": "width",
    "dataset": "dataset",
}
_REQUIRED = ("landmarks", "right_lung", "left_lung", "heart")


def _header_text(names: Iterable[str]) -> str:
    """A header for a one-line message: names joined by ``", "``, control characters escaped (a quote
    left open in a damaged file can pull newlines and later rows into the header), at most 500 characters."""
    text = ", ".join(n if n.isprintable() else repr(n) for n in names)
    return text if len(text) <= 500 else text[:497] + "..."


def _raise_field_size_limit() -> None:
    if csv.field_size_limit() < _FIELD_SIZE_LIMIT:
        csv.field_size_limit(min(_FIELD_SIZE_LIMIT, sys.maxsize))


# ------------------------------------------------------------------------------------------------
# header
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Columns:
    """Where each field is in a CheXmask CSV's rows (0-based field indices; None when absent)."""

    header: tuple[str, ...]
    id: int
    landmarks: int
    right_lung: int
    left_lung: int
    heart: int
    dice_mean: int | None = None
    dice_max: int | None = None
    height: int | None = None
    width: int | None = None
    dataset: int | None = None

    @property
    def id_name(self) -> str:
        return self.header[self.id]

    @property
    def has_dice(self) -> bool:
        return self.dice_mean is not None or self.dice_max is not None

    @classmethod
    def from_header(cls, header: list[str] | tuple[str, ...], source: str = "<csv>", id_column: str | None = None) -> Columns:
        """Resolve a header row; raises :class:`CxrkitError` naming the file and the missing columns."""
        names = tuple(h.strip().lstrip("\ufeff") for h in header)
        found: dict[str, int] = {}
        for i, name in enumerate(names):
            key = _FIELD_KEYS.get(_norm(name))
            if key is not None and key not in found:
                found[key] = i
        if id_column is not None:
            if id_column not in names:
                raise CxrkitError(f"{source}: no column {id_column!r} for the image id; the header has {_header_text(names)}")
            id_index = names.index(id_column)
        else:
            candidates = sorted((_ID_KEYS[_norm(n)], i) for i, n in enumerate(names) if _norm(n) in _ID_KEYS)
            if not candidates:
                raise CxrkitError(
                    f"{source}: no image-id column; expected one of {', '.join(ID_COLUMNS)} "
                    f"(or pass id_column), the header has {_header_text(names)}"
                )
            id_index = candidates[0][1]
        missing = [ORGAN_COLUMNS.get(k, k.capitalize()) for k in _REQUIRED if k not in found]
        if missing:
            raise CxrkitError(
                f"{source}: missing column(s) {', '.join(missing)}; a CheXmask CSV has Landmarks, Right Lung, "
                f"Left Lung, Heart (header: {_header_text(names)})"
            )
        return cls(header=names, id=id_index, **found)


def _open(path: str | os.PathLike) -> io.TextIOBase:
    return open_text(path, encoding="utf-8-sig")


def read_columns(path: str | os.PathLike, id_column: str | None = None) -> Columns:
    """Read and resolve only the header of a CheXmask CSV (plain or gzip)."""
    _raise_field_size_limit()
    with _open(path) as fh:
        try:
            header = next(csv.reader(fh), None)
        except STREAM_ERRORS as exc:
            raise stream_error(str(path), 0, exc) from None
        except csv.Error as exc:
            raise CxrkitError(f"{path}:1: unreadable header: {exc}") from None
    if header is None:
        raise CxrkitError(f"{path}: empty file; expected a CheXmask CSV header")
    return Columns.from_header(header, str(path), id_column)


# ------------------------------------------------------------------------------------------------
# records
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RowError:
    """A row that could not be read (yielded instead of raising when ``lenient=True``)."""

    source: str
    line: int
    message: str
    image_id: str | None = None

    def __str__(self) -> str:
        return f"{self.source}:{self.line}: {self.message}"


@dataclass(frozen=True)
class CheXmaskRecord:
    """One CheXmask row. Masks and landmarks stay strings until asked for (decoding costs time).

    ``height x width`` is the size the RLE masks were encoded at (1024 x 1024 in the preprocessed
    CSVs) and the pixel space of the landmarks. ``line`` is the 1-based line of the row in
    ``source``.
    """

    image_id: str
    landmarks: str
    right_lung: str
    left_lung: str
    heart: str
    height: int = STORED_SIZE
    width: int = STORED_SIZE
    dice_mean: float | None = None
    dice_max: float | None = None
    dataset: str | None = None
    dice_swapped: bool = False
    size_was_blank: bool = False
    source: str = "<csv>"
    line: int = 0

    @property
    def where(self) -> str:
        return f"{self.source}:{self.line}"

    def rle(self, organ: str) -> str:
        """The RLE string of ``organ`` (``right_lung``, ``left_lung`` or ``heart``)."""
        if organ not in ORGANS:
            raise CxrkitError(f"unknown organ {organ!r}; expected one of {', '.join(ORGANS)}")
        return getattr(self, organ)

    def mask(self, organ: str, out: np.ndarray | None = None) -> np.ndarray:
        """Decode one organ's RLE into a ``(height, width)`` bool mask (into ``out`` when given, see
        :func:`cxrkit.io.rle.decode`)."""
        text = self.rle(organ)
        try:
            return rle_codec.decode(text, self.height, self.width, out=out)
        except CxrkitError as exc:
            raise CxrkitError(f"{self.where}: {ORGAN_COLUMNS[organ]} of {self.image_id!r}: {exc}") from None

    def masks(self) -> dict[str, np.ndarray]:
        """Decode all three RLE masks: ``{"right_lung", "left_lung", "heart"}`` -> bool ``(height, width)``."""
        return {organ: self.mask(organ) for organ in ORGANS}

    def points(self) -> np.ndarray:
        """The 120 landmarks as ``(120, 2)`` float ``(x, y)`` in the ``height x width`` space."""
        try:
            return parse_landmarks(self.landmarks)
        except CxrkitError as exc:
            raise CxrkitError(f"{self.where}: Landmarks of {self.image_id!r}: {exc}") from None

    def landmark_masks(self) -> dict[str, np.ndarray]:
        """Masks filled from the landmarks (equal to :meth:`masks` on CheXmask's HybridGNet rows)."""
        return organ_masks(self.points(), self.height, self.width)

    def dice(self, by: Literal["mean", "max"] = "mean") -> float | None:
        return self.dice_mean if by == "mean" else self.dice_max


def _parse_size(text: str, name: str) -> tuple[int, bool]:
    t = text.strip()
    if not t:
        return STORED_SIZE, True
    try:
        value = float(t)
    except ValueError:
        raise CxrkitError(f"{name} {text!r} is not a number; expected a positive integer or blank (= 1024)") from None
    if not math.isfinite(value) or value != int(value) or value <= 0:
        raise CxrkitError(f"{name} {text!r} is not a positive integer (blank means 1024)")
    return int(value), False


def _parse_dice(text: str, name: str) -> float | None:
    t = text.strip()
    if not t:
        return None
    try:
        value = float(t)
    except ValueError:
        raise CxrkitError(f"{name} {text!r} is not a number; expected a Dice score in [0, 1] or blank") from None
    if math.isnan(value):
        return None
    if not 0.0 <= value <= 1.0:
        raise CxrkitError(f"{name} {text!r} is outside [0, 1]")
    return value


def _make_record(fields: list[str], cols: Columns, source: str, line: int, repair_dice: bool, validate: bool) -> CheXmaskRecord:
    n = len(cols.header)
    if len(fields) != n:
        raise CxrkitError(f"{len(fields)} fields; the header has {n}")
    image_id = fields[cols.id].strip()
    if not image_id:
        raise CxrkitError(f"empty image id in column {cols.id_name!r}")
    height, blank_h = _parse_size(fields[cols.height], "Height") if cols.height is not None else (STORED_SIZE, True)
    width, blank_w = _parse_size(fields[cols.width], "Width") if cols.width is not None else (STORED_SIZE, True)
    dice_mean = _parse_dice(fields[cols.dice_mean], "Dice RCA (Mean)") if cols.dice_mean is not None else None
    dice_max = _parse_dice(fields[cols.dice_max], "Dice RCA (Max)") if cols.dice_max is not None else None
    swapped = False
    if repair_dice and dice_mean is not None and dice_max is not None and dice_max < dice_mean:
        dice_mean, dice_max, swapped = dice_max, dice_mean, True
    record = CheXmaskRecord(
        image_id=image_id,
        landmarks=fields[cols.landmarks],
        right_lung=fields[cols.right_lung],
        left_lung=fields[cols.left_lung],
        heart=fields[cols.heart],
        height=height,
        width=width,
        dice_mean=dice_mean,
        dice_max=dice_max,
        dataset=fields[cols.dataset] if cols.dataset is not None else None,
        dice_swapped=swapped,
        size_was_blank=blank_h or blank_w,
        source=source,
        line=line,
    )
    if validate:
        parse_landmarks(record.landmarks)
        for organ in ORGANS:
            try:
                rle_codec.parse_runs(record.rle(organ), height, width)
            except CxrkitError as exc:
                raise CxrkitError(f"{ORGAN_COLUMNS[organ]}: {exc}") from None
    return record


def iter_rows(
    path: str | os.PathLike,
    id_column: str | None = None,
    lenient: bool = False,
    repair_dice: bool = True,
    validate: bool = False,
) -> Iterator[tuple[Columns, CheXmaskRecord | RowError, list[str]]]:
    """:func:`iter_records` with each row's context: ``(columns, record or RowError, the raw CSV fields)``.

    For readers that need the CSV's other columns as written (e.g. the Parquet converter); an unreadable
    CSV row comes with empty fields.
    """
    _raise_field_size_limit()
    source = str(path)
    with _open(path) as fh:
        reader = csv.reader(fh)
        try:
            header = next(reader)
        except StopIteration:
            raise CxrkitError(f"{source}: empty file; expected a CheXmask CSV header") from None
        except csv.Error as exc:
            raise CxrkitError(f"{source}:1: unreadable header: {exc}") from None
        except STREAM_ERRORS as exc:
            raise stream_error(source, 0, exc) from None
        cols = Columns.from_header(header, source, id_column)
        while True:
            line = reader.line_num + 1
            try:
                fields = next(reader)
            except StopIteration:
                return
            except STREAM_ERRORS as exc:
                raise stream_error(source, line - 1, exc) from None
            except csv.Error as exc:  # e.g. NUL byte, unterminated quote at EOF
                err = RowError(source, line, f"unreadable CSV row: {exc}")
                if not lenient:
                    raise CxrkitError(str(err)) from None
                yield cols, err, []
                continue
            if not fields:  # a blank line carries no row
                continue
            try:
                item: CheXmaskRecord | RowError = _make_record(fields, cols, source, line, repair_dice, validate)
            except CxrkitError as exc:
                image_id = fields[cols.id] if len(fields) > cols.id else None
                err = RowError(source, line, f"row {image_id!r}: {exc}" if image_id else str(exc), image_id)
                if not lenient:
                    raise CxrkitError(str(err)) from None
                item = err
            yield cols, item, fields


def iter_records(
    path: str | os.PathLike,
    *,
    id_column: str | None = None,
    lenient: bool = False,
    repair_dice: bool = True,
    validate: bool = False,
) -> Iterator[CheXmaskRecord | RowError]:
    """Stream the rows of a CheXmask CSV (plain or gzip) as :class:`CheXmaskRecord`.

    Memory stays flat: one row is held at a time. A bad row raises :class:`CxrkitError` naming the
    file and line, or with ``lenient=True`` is yielded as a :class:`RowError`. ``validate=True`` also
    parses the landmarks and checks the RLE syntax (without decoding) so that bad cells are found
    here rather than at decode time. ``repair_dice`` swaps Dice Max/Mean back when Max < Mean (see
    the module docstring).
    """
    for _, item, _ in iter_rows(path, id_column, lenient, repair_dice, validate):
        yield item


def iter_chunks(path: str | os.PathLike, chunksize: int = 1000, **kwargs: Any) -> Iterator[list[CheXmaskRecord | RowError]]:
    """:func:`iter_records` in lists of up to ``chunksize`` items (for batch work such as the NIH join)."""
    if chunksize < 1:
        raise CxrkitError(f"chunksize must be >= 1, got {chunksize}")
    chunk: list[CheXmaskRecord | RowError] = []
    for item in iter_records(path, **kwargs):
        chunk.append(item)
        if len(chunk) >= chunksize:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def find_record(path: str | os.PathLike, image_id: str, *, id_column: str | None = None) -> CheXmaskRecord:
    """Stream ``path`` for the first row whose id is ``image_id``; raises :class:`CxrkitError` if absent.

    Rows that cannot be parsed are skipped while searching unless they carry the wanted id.
    """
    target = image_id.strip()
    for _, item, fields in iter_rows(path, id_column, lenient=True, repair_dice=True, validate=False):
        if isinstance(item, RowError):
            if item.image_id is not None and item.image_id.strip() == target:
                raise CxrkitError(str(item))
            continue
        if item.image_id == target:
            return item
    raise CxrkitError(f"image id {image_id!r} not found in {path}")


# ------------------------------------------------------------------------------------------------
# Dice filtering and summaries
# ------------------------------------------------------------------------------------------------
def dice_reject_reason(record: CheXmaskRecord, threshold: float = DEFAULT_MIN_DICE, by: Literal["mean", "max"] = "mean") -> str | None:
    """``None`` when ``record`` passes ``Dice RCA (by) >= threshold``; otherwise the reason it does not."""
    value = record.dice(by)
    if value is None:
        return "no Dice"
    if value < threshold:
        return "below threshold"
    return None


# Structure names accepted by ``structure_thresholds`` / ``--structure-threshold``.
STRUCTURE_CHOICES: tuple[str, ...] = ORGANS


def structure_dice_column(structure: str, by: Literal["mean", "max"] = "mean") -> str:
    """The exact name of a per-structure Dice RCA column, e.g. ``Dice RCA (Mean) Right Lung``.

    ``structure`` is one of :data:`STRUCTURE_CHOICES` (``right_lung``, ``left_lung``, ``heart``);
    ``by`` the column family (``mean`` or ``max``).
    """
    if structure not in STRUCTURE_CHOICES:
        raise CxrkitError(f"unknown structure {structure!r}; expected one of {', '.join(STRUCTURE_CHOICES)}")
    if by not in ("mean", "max"):
        raise CxrkitError(f"by must be 'mean' or 'max', got {by!r}")
    return f"Dice RCA ({by.capitalize()}) {ORGAN_COLUMNS[structure]}"


def parse_structure_thresholds(items: Iterable[str]) -> dict[str, float]:
    """Parse ``["right_lung=0.8", "heart=0.6"]`` into ``{"right_lung": 0.8, "heart": 0.6}``.

    Raises :class:`CxrkitError` naming the bad item and the valid choices: an unknown structure, a
    missing ``=``, a value that is not a number in [0, 1], or a structure given twice.
    """
    out: dict[str, float] = {}
    for item in items:
        name, sep, value = str(item).partition("=")
        name = name.strip()
        if not sep:
            raise UsageError(
                f"structure threshold {item!r}: expected STRUCTURE=VALUE with STRUCTURE one of "
                f"{', '.join(STRUCTURE_CHOICES)}, e.g. heart=0.6"
            )
        if name not in STRUCTURE_CHOICES:
            raise UsageError(
                f"structure threshold {item!r}: unknown structure {name!r}; expected one of {', '.join(STRUCTURE_CHOICES)}"
            )
        try:
            threshold = float(value)
        except ValueError:
            raise UsageError(
                f"structure threshold {item!r}: {value.strip()!r} is not a number; expected a Dice in [0, 1]"
            ) from None
        if not 0.0 <= threshold <= 1.0:  # also rejects nan
            raise UsageError(f"structure threshold {item!r}: {threshold!r} is outside [0, 1]")
        if name in out:
            raise UsageError(f"structure threshold {item!r}: {name} is given twice")
        out[name] = threshold
    return out


def _structure_columns(cols: Columns, src: str | os.PathLike, thresholds: dict[str, float], by: str) -> dict[str, int]:
    """Field index of each thresholded structure's ``Dice RCA (by) <Structure>`` column (raises when absent)."""
    keys = {_norm(h): i for i, h in reversed(list(enumerate(cols.header)))}  # first occurrence wins
    found: dict[str, int] = {}
    missing: list[str] = []
    for structure in thresholds:
        name = structure_dice_column(structure, by)  # type: ignore[arg-type]
        index = cols.header.index(name) if name in cols.header else keys.get(_norm(name))
        if index is None:
            missing.append(name)
        else:
            found[structure] = index
    if missing:
        raise CxrkitError(
            f"{src}: no column {', '.join(repr(m) for m in missing)} for the per-structure threshold(s); "
            f"only QC CSVs written by cxrkit carry per-structure Dice RCA columns (header: {_header_text(cols.header)})"
        )
    return found


def _structure_reject_reason(
    fields: list[str], indices: dict[str, int], thresholds: dict[str, float], cols: Columns, by: str
) -> str | None:
    """``None`` when every thresholded structure passes; else the failing tests, e.g.
    ``heart Dice RCA (Mean) < 0.6`` (several joined by ``"; "``). A blank or ``nan`` cell fails as
    ``no heart Dice RCA (Mean)``; a non-number raises :class:`CxrkitError` naming the column."""
    family = f"Dice RCA ({by.capitalize()})"
    failed: list[str] = []
    for structure, threshold in thresholds.items():
        value = _parse_dice(fields[indices[structure]], cols.header[indices[structure]])
        if value is None:
            failed.append(f"no {structure} {family}")
        elif value < threshold:
            failed.append(f"{structure} {family} < {threshold:g}")
    return "; ".join(failed) if failed else None


@dataclass
class FilterSummary:
    """What :func:`filter_csv` did: rows kept, rows dropped by reason, bad rows (lenient mode)."""

    source: str
    out: str
    threshold: float
    by: str
    id_column: str = ""
    rows: int = 0
    kept: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    dice_swapped: int = 0
    structure_thresholds: dict[str, float] = field(default_factory=dict)

    def lines(self) -> list[str]:
        col = f"Dice RCA ({self.by.capitalize()})"
        also = "".join(f" and {s} {col} >= {t:g}" for s, t in self.structure_thresholds.items())
        out = [
            f"{self.source}: {self.rows} rows (id column {self.id_column!r}); kept {self.kept} with {col} >= "
            f"{self.threshold:g}{also} -> {self.out}"
        ]
        for reason, n in sorted(self.dropped.items()):
            out.append(f"dropped {n}: {reason}")
        if self.dice_swapped:
            out.append(f"{self.dice_swapped} rows had Dice Max < Mean (swapped values, repaired before filtering)")
        if self.errors:
            out.append(f"{len(self.errors)} bad rows (not written), first: {self.errors[0]}")
        return out


@contextlib.contextmanager
def _open_out(path: Path) -> Iterator[io.TextIOBase]:
    """Atomic text output; gzip when ``path`` ends with ``.gz``."""
    if path.suffix == ".gz":
        with atomic_open(path, "wb") as raw:
            gz = gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0)
            with io.TextIOWrapper(gz, encoding="utf-8", newline="") as text:  # closes gz, not raw
                yield text
    else:
        with atomic_open(path, "w", encoding="utf-8", newline="") as text:
            yield text


def filter_csv(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    threshold: float = DEFAULT_MIN_DICE,
    by: Literal["mean", "max"] = "mean",
    id_column: str | None = None,
    lenient: bool = False,
    repair_dice: bool = True,
    structure_thresholds: dict[str, float] | None = None,
) -> FilterSummary:
    """Stream ``src`` and write the rows with ``Dice RCA (by) >= threshold`` to ``dst`` (atomically).

    Rows are copied verbatim (same header and column order; ``dst`` ending in ``.gz`` is gzipped).
    The decision uses the repaired Dice values when ``repair_dice`` (see the module docstring). Rows
    without a Dice value are dropped and counted; bad rows raise, or are counted and listed in the
    summary with ``lenient=True``.

    ``structure_thresholds`` (e.g. ``{"right_lung": 0.8, "heart": 0.6}``, names from
    :data:`STRUCTURE_CHOICES`) also requires each named structure's per-structure column of the same
    family (``Dice RCA (Mean) Right Lung`` for ``by="mean"``, see :func:`structure_dice_column`) to be
    ``>=`` its threshold; the file must have those columns. A dropped row is counted once under the
    first test it fails: the overall Dice (``below threshold`` / ``no Dice``), else all the failing
    structures together (``heart Dice RCA (Mean) < 0.6``, several joined by ``"; "``; a blank cell is
    ``no heart Dice RCA (Mean)``). The per-structure values are used as written (no swap repair).
    """
    if by not in ("mean", "max"):
        raise CxrkitError(f"by must be 'mean' or 'max', got {by!r}")
    if not 0.0 <= threshold <= 1.0:
        raise CxrkitError(f"threshold {threshold!r} is outside [0, 1]")
    per_structure: dict[str, float] = {}
    for structure, value in (structure_thresholds or {}).items():
        if structure not in STRUCTURE_CHOICES:
            raise CxrkitError(
                f"structure threshold: unknown structure {structure!r}; expected one of {', '.join(STRUCTURE_CHOICES)}"
            )
        try:
            per_structure[structure] = float(value)
        except (TypeError, ValueError):
            raise CxrkitError(
                f"structure threshold {structure}={value!r} is not a number; expected a Dice in [0, 1]"
            ) from None
        if not 0.0 <= per_structure[structure] <= 1.0:
            raise CxrkitError(f"structure threshold {structure}={value!r} is outside [0, 1]")
    cols = read_columns(src, id_column)
    if (cols.dice_mean if by == "mean" else cols.dice_max) is None:
        raise CxrkitError(f"{src}: no 'Dice RCA ({by.capitalize()})' column to filter on (header: {_header_text(cols.header)})")
    structure_index = _structure_columns(cols, src, per_structure, by) if per_structure else {}
    dst = Path(dst)
    if dst.resolve() == Path(src).resolve():
        raise CxrkitError(f"{dst}: the output must differ from the input")
    summary = FilterSummary(str(src), str(dst), threshold, by, id_column=cols.id_name, structure_thresholds=per_structure)
    with _open_out(dst) as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(cols.header)
        for _, item, fields in iter_rows(src, id_column, lenient, repair_dice, validate=False):
            summary.rows += 1
            if isinstance(item, RowError):
                summary.errors.append(str(item))
                continue
            reason = dice_reject_reason(item, threshold, by)
            if reason is None and per_structure:
                try:
                    reason = _structure_reject_reason(fields, structure_index, per_structure, cols, by)
                except CxrkitError as exc:
                    err = RowError(str(src), item.line, f"row {item.image_id!r}: {exc}", item.image_id)
                    if not lenient:
                        raise CxrkitError(str(err)) from None
                    summary.errors.append(str(err))
                    continue
            summary.dice_swapped += item.dice_swapped
            if reason is None:
                writer.writerow(fields)
                summary.kept += 1
            else:
                summary.dropped[reason] = summary.dropped.get(reason, 0) + 1
    log.info("filtered %s: kept %d of %d rows", src, summary.kept, summary.rows)
    return summary


class _Stats:
    """Constant-memory running statistics (min, max, mean, quantiles from a 0.001-wide histogram)."""

    def __init__(self, lo: float = 0.0, hi: float = 1.0, bins: int = 1000) -> None:
        self.lo, self.hi, self.bins = lo, hi, bins
        self.hist = np.zeros(bins, dtype=np.int64)
        self.n = 0
        self.total = 0.0
        self.min = math.inf
        self.max = -math.inf

    def add(self, value: float) -> None:
        self.n += 1
        self.total += value
        self.min = min(self.min, value)
        self.max = max(self.max, value)
        k = int((value - self.lo) / (self.hi - self.lo) * self.bins)
        self.hist[min(max(k, 0), self.bins - 1)] += 1

    def quantile(self, q: float) -> float:
        cum = np.cumsum(self.hist)
        k = int(np.searchsorted(cum, q * self.n, side="left"))
        return self.lo + (k + 0.5) * (self.hi - self.lo) / self.bins

    def as_dict(self) -> dict[str, float | int | None]:
        if not self.n:
            return {"count": 0}
        return {
            "count": self.n,
            "min": self.min,
            "p05": self.quantile(0.05),
            "median": self.quantile(0.5),
            "mean": self.total / self.n,
            "max": self.max,
        }


def summarize_csv(
    path: str | os.PathLike,
    *,
    threshold: float = DEFAULT_MIN_DICE,
    id_column: str | None = None,
    lenient: bool = True,
    repair_dice: bool = True,
    validate: bool = False,
    max_errors: int = 20,
) -> dict[str, Any]:
    """One streaming pass: row count, id column, Dice statistics, image sizes, bad rows.

    Quantiles come from a 0.001-wide histogram (memory does not grow with the file).
    """
    cols = read_columns(path, id_column)
    stats = {"mean": _Stats(), "max": _Stats()}
    passing = {"mean": 0, "max": 0}
    sizes: dict[str, int] = {}
    rows = swapped = blank_size = 0
    errors: list[str] = []
    n_errors = 0
    for _, item, _ in iter_rows(path, id_column, lenient, repair_dice, validate):
        rows += 1
        if isinstance(item, RowError):
            n_errors += 1
            if len(errors) < max_errors:
                errors.append(str(item))
            continue
        for by in ("mean", "max"):
            value = item.dice(by)  # type: ignore[arg-type]
            if value is not None:
                stats[by].add(value)
                passing[by] += value >= threshold
        swapped += item.dice_swapped
        blank_size += item.size_was_blank
        key = f"{item.height}x{item.width}"
        sizes[key] = sizes.get(key, 0) + 1
    return {
        "file": str(path),
        "id_column": cols.id_name,
        "columns": list(cols.header),
        "rows": rows,
        "bad_rows": n_errors,
        "errors": errors,
        "dice": {by: stats[by].as_dict() for by in ("mean", "max")},
        "threshold": threshold,
        "passing": passing,
        "dice_swapped": swapped,
        "sizes": dict(sorted(sizes.items(), key=lambda kv: -kv[1])),
        "blank_size": blank_size,
    }


# ------------------------------------------------------------------------------------------------
# NIH join
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class NihJoined:
    """A CheXmask record with its NIH metadata row (``nih`` is None when unmatched, with ``how='left'``)."""

    record: CheXmaskRecord
    nih: dict[str, Any] | None


def _nih_table(nih: "pd.DataFrame") -> "pd.DataFrame":
    if nih.index.name == "Image Index":
        table = nih
    elif "Image Index" in nih.columns:
        table = nih.set_index("Image Index", drop=False)
    else:
        raise CxrkitError(
            "NIH metadata needs an 'Image Index' column or index; got columns "
            f"{', '.join(map(str, nih.columns))}"
        )
    if not table.index.is_unique:
        dup = table.index[table.index.duplicated()][:3].tolist()
        raise CxrkitError(f"NIH metadata has duplicate 'Image Index' values, e.g. {dup}")
    return table


def image_basename(image_id: str) -> str:
    """The file name of an image id (after the last ``/`` or ``\\``): NIH's ``Image Index`` for ChestX-ray8."""
    return image_id.replace("\\", "/").rsplit("/", 1)[-1]


def join_nih(
    records: Iterable[CheXmaskRecord | RowError],
    nih: "pd.DataFrame",
    *,
    how: Literal["inner", "left"] = "inner",
    chunksize: int = 1000,
    key=image_basename,
) -> Iterator[NihJoined | RowError]:
    """Join CheXmask records with NIH metadata on ``Image Index`` (streaming, in chunks).

    ``nih`` is a DataFrame with an ``Image Index`` column or index (e.g. from
    ``cxrkit.data.nih``). ``key`` maps a CheXmask id to an NIH image index (default: the file name
    after the last ``/``, so ``images_001/images/00000001_000.png`` matches too). With
    ``how="inner"`` unmatched records are left out and their count is logged as a warning; with
    ``how="left"`` they are yielded with ``nih=None``. :class:`RowError` items pass through.
    """
    if how not in ("inner", "left"):
        raise CxrkitError(f"how must be 'inner' or 'left', got {how!r}")
    table = _nih_table(nih)
    unmatched = total = 0
    first_unmatched: str | None = None

    def flush(chunk: list[CheXmaskRecord | RowError]) -> Iterator[NihJoined | RowError]:
        nonlocal unmatched, first_unmatched
        recs = [r for r in chunk if not isinstance(r, RowError)]
        found = table.index.get_indexer([key(r.image_id) for r in recs]).tolist() if recs else []
        positions = iter(found)
        hits = [p for p in found if p >= 0]
        rows = iter(table.iloc[hits].to_dict("records")) if hits else iter(())
        for item in chunk:  # input order is kept, errors included
            if isinstance(item, RowError):
                yield item
                continue
            if next(positions) >= 0:
                yield NihJoined(item, next(rows))
            else:
                unmatched += 1
                first_unmatched = first_unmatched or item.image_id
                if how == "left":
                    yield NihJoined(item, None)

    chunk: list[CheXmaskRecord | RowError] = []
    for item in records:
        total += not isinstance(item, RowError)
        chunk.append(item)
        if len(chunk) >= chunksize:
            yield from flush(chunk)
            chunk = []
    if chunk:
        yield from flush(chunk)
    if unmatched:
        log.warning(
            "%d of %d CheXmask rows have no NIH metadata (first: %r)%s",
            unmatched, total, first_unmatched, "; left out (how='inner')" if how == "inner" else "",
        )


def records_frame(records: Iterable[CheXmaskRecord | RowError]) -> "pd.DataFrame":
    """Scalar columns of the records (no masks) as a DataFrame; RowErrors raise."""
    import pandas as pd

    rows = []
    for r in records:
        if isinstance(r, RowError):
            raise CxrkitError(str(r))
        rows.append(
            {
                "image_id": r.image_id,
                "dice_mean": r.dice_mean,
                "dice_max": r.dice_max,
                "height": r.height,
                "width": r.width,
                "dataset": r.dataset,
                "dice_swapped": r.dice_swapped,
                "source": r.source,
                "line": r.line,
            }
        )
    return pd.DataFrame(rows, columns=["image_id", "dice_mean", "dice_max", "height", "width", "dataset",
                                       "dice_swapped", "source", "line"])


def read_name_mapping(path: str | os.PathLike) -> dict[str, str]:
    """Read a CheXmask ``*_name_mapping.csv`` (``Original,New``): ``{new name: original file name}``.

    The physicians annotated anonymized copies (``image_1.png``); ``Original`` is the dataset path,
    whose last component is the NIH ``Image Index`` for ChestX-ray8.
    """
    out: dict[str, str] = {}
    with open_text(path, encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        try:
            if reader.fieldnames is None or not {"Original", "New"} <= set(reader.fieldnames):
                raise CxrkitError(f"{path}: expected columns Original,New; got {reader.fieldnames}")
            for row in reader:
                if row["New"] is None or row["Original"] is None:  # a short row
                    raise CxrkitError(f"{path}:{reader.line_num}: expected 2 fields Original,New; got {list(v for v in row.values() if v is not None)}")
                out[row["New"].strip()] = image_basename(row["Original"].strip())
        except STREAM_ERRORS as exc:
            raise stream_error(str(path), reader.line_num, exc) from None
        except csv.Error as exc:
            raise CxrkitError(f"{path}:{reader.line_num + 1}: unreadable CSV row: {exc}") from None
    return out


# ------------------------------------------------------------------------------------------------
# export and drawing
# ------------------------------------------------------------------------------------------------
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def safe_filename(image_id: str) -> str:
    """A file-name-safe form of an image id: every character outside ``[A-Za-z0-9._-]`` becomes ``_``.

    So CheXpert's ``train/patient1/study1/view1_frontal.jpg`` gives
    ``train_patient1_study1_view1_frontal.jpg``; a leading ``.`` gets a ``_`` prefix (no hidden files,
    no ``..``). Ids that are already safe (NIH, MIMIC, VinDr, Padchest, CANDID) are unchanged.
    """
    name = _UNSAFE.sub("_", image_id.strip())
    if not name:
        raise CxrkitError(f"image id {image_id!r} gives an empty file name")
    if name.startswith("."):
        name = "_" + name
    return name


def mask_paths(out_dir: str | os.PathLike, image_id: str) -> dict[str, Path]:
    """``{organ: out_dir / f"{safe_filename(id)}_{organ}.png"}`` for the three organs."""
    base = safe_filename(image_id)
    return {organ: Path(out_dir) / f"{base}_{organ}.png" for organ in ORGANS}


def _png_bytes(image: np.ndarray) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".png", image)
    if not ok:  # pragma: no cover - cv2 failure
        raise CxrkitError("could not encode PNG")
    return buf.tobytes()


def write_masks(record: CheXmaskRecord, out_dir: str | os.PathLike) -> dict[str, Path]:
    """Decode the record's three RLE masks and write them as 8-bit 0/255 PNGs (atomically).

    All masks are decoded before any file is written, so a bad RLE writes nothing.
    """
    return write_mask_arrays(record.masks(), record.image_id, out_dir)


def write_mask_arrays(masks: dict[str, np.ndarray], image_id: str, out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write three bool masks (``right_lung``, ``left_lung``, ``heart``) as 8-bit 0/255 PNGs named as
    :func:`mask_paths` says (atomically; all encoded before any file is written)."""
    from cxrkit.io.atomic import write_bytes

    paths = mask_paths(out_dir, image_id)
    encoded = {organ: _png_bytes(np.where(masks[organ], np.uint8(255), np.uint8(0))) for organ in ORGANS}
    for organ in ORGANS:
        write_bytes(paths[organ], encoded[organ])
    return paths


# BGR colours per organ.
ORGAN_COLORS: dict[str, tuple[int, int, int]] = {
    "right_lung": (80, 80, 255),  # red
    "left_lung": (255, 160, 60),  # blue
    "heart": (60, 220, 255),  # yellow
}
DARK_CANVAS = 24


def render_overlay(
    masks: dict[str, np.ndarray],
    points: np.ndarray | None = None,
    image: np.ndarray | None = None,
    *,
    alpha: float = 0.35,
    point_radius: int | None = None,
) -> np.ndarray:
    """Draw masks (filled, translucent, with outlines) and landmarks over an image; returns BGR uint8.

    ``masks`` are bool ``(H, W)`` per organ; ``points`` ``(120, 2)`` ``(x, y)`` in the same pixels
    (drawn as dots coloured by organ); ``image`` is a gray or BGR uint8 ``(H, W)`` image, or None
    for a dark canvas.
    """
    import cv2

    from cxrkit.io.landmarks import split_organs

    shapes = {m.shape for m in masks.values()}
    if len(shapes) != 1:
        raise CxrkitError(f"masks have different shapes {sorted(shapes)}")
    (shape,) = shapes
    if image is None:
        canvas = np.full(shape + (3,), DARK_CANVAS, dtype=np.uint8)
    else:
        img = np.asarray(image)
        if img.shape[:2] != shape:
            raise CxrkitError(f"image shape {img.shape[:2]} does not match the masks' {shape}")
        if img.dtype != np.uint8:
            raise CxrkitError(f"image must be uint8, got {img.dtype}")
        canvas = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR) if img.ndim == 2 else img[..., :3].copy()
    scale = max(shape) / 1024
    for organ in ORGANS:
        if organ not in masks:
            continue
        m = masks[organ]
        color = np.array(ORGAN_COLORS[organ], dtype=np.float32)
        canvas[m] = (canvas[m] * (1 - alpha) + color * alpha).astype(np.uint8)
        contours, _ = cv2.findContours(m.view(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(canvas, contours, -1, ORGAN_COLORS[organ], max(1, int(round(2 * scale))), cv2.LINE_AA)
    if points is not None:
        r = point_radius if point_radius is not None else max(2, int(round(4 * scale)))
        organs = split_organs(points)
        for organ in ORGANS:
            for x, y in getattr(organs, organ):
                cv2.circle(canvas, (int(round(x)), int(round(y))), r, (255, 255, 255), -1, cv2.LINE_AA)
                cv2.circle(canvas, (int(round(x)), int(round(y))), max(1, r - 1), ORGAN_COLORS[organ], -1, cv2.LINE_AA)
    return canvas


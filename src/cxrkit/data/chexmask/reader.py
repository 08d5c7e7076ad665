"""Streaming reader for CheXmask CSVs: the header, the records, row errors.

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
:func:`~cxrkit.data.chexmask.filters.filter_csv` can filter on them (``structure_thresholds``).
"""

from __future__ import annotations

import csv
import io
import logging
import math
import os
import re
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Literal

import numpy as np

from cxrkit.errors import CxrkitError, InputError
from cxrkit.io import rle as rle_codec
from cxrkit.io.landmarks import ORGAN_COLUMNS, ORGANS, organ_masks, parse_landmarks
from cxrkit.io.stream_errors import STREAM_ERRORS, stream_error
from cxrkit.io.tables import open_text

if TYPE_CHECKING:  # pragma: no cover
    pass

log = logging.getLogger(__name__)

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
                raise InputError(f"{source}: no column {id_column!r} for the image id; the header has {_header_text(names)}")
            id_index = names.index(id_column)
        else:
            candidates = sorted((_ID_KEYS[_norm(n)], i) for i, n in enumerate(names) if _norm(n) in _ID_KEYS)
            if not candidates:
                raise InputError(
                    f"{source}: no image-id column; expected one of {', '.join(ID_COLUMNS)} "
                    f"(or pass id_column), the header has {_header_text(names)}"
                )
            id_index = candidates[0][1]
        missing = [ORGAN_COLUMNS.get(k, k.capitalize()) for k in _REQUIRED if k not in found]
        if missing:
            raise InputError(
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
            raise InputError(f"{path}:1: unreadable header: {exc}") from None
    if header is None:
        raise InputError(f"{path}: empty file; expected a CheXmask CSV header")
    return Columns.from_header(header, str(path), id_column)


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
            raise InputError(f"unknown organ {organ!r}; expected one of {', '.join(ORGANS)}")
        return getattr(self, organ)

    def mask(self, organ: str, out: np.ndarray | None = None) -> np.ndarray:
        """Decode one organ's RLE into a ``(height, width)`` bool mask (into ``out`` when given, see
        :func:`cxrkit.io.rle.decode`)."""
        text = self.rle(organ)
        try:
            return rle_codec.decode(text, self.height, self.width, out=out)
        except CxrkitError as exc:
            raise InputError(f"{self.where}: {ORGAN_COLUMNS[organ]} of {self.image_id!r}: {exc}") from None

    def masks(self) -> dict[str, np.ndarray]:
        """Decode all three RLE masks: ``{"right_lung", "left_lung", "heart"}`` -> bool ``(height, width)``."""
        return {organ: self.mask(organ) for organ in ORGANS}

    def points(self) -> np.ndarray:
        """The 120 landmarks as ``(120, 2)`` float ``(x, y)`` in the ``height x width`` space."""
        try:
            return parse_landmarks(self.landmarks)
        except CxrkitError as exc:
            raise InputError(f"{self.where}: Landmarks of {self.image_id!r}: {exc}") from None

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
        raise InputError(f"{name} {text!r} is not a number; expected a positive integer or blank (= 1024)") from None
    if not math.isfinite(value) or value != int(value) or value <= 0:
        raise InputError(f"{name} {text!r} is not a positive integer (blank means 1024)")
    return int(value), False


def _parse_dice(text: str, name: str) -> float | None:
    t = text.strip()
    if not t:
        return None
    try:
        value = float(t)
    except ValueError:
        raise InputError(f"{name} {text!r} is not a number; expected a Dice score in [0, 1] or blank") from None
    if math.isnan(value):
        return None
    if not 0.0 <= value <= 1.0:
        raise InputError(f"{name} {text!r} is outside [0, 1]")
    return value


def _make_record(fields: list[str], cols: Columns, source: str, line: int, repair_dice: bool, validate: bool) -> CheXmaskRecord:
    n = len(cols.header)
    if len(fields) != n:
        raise InputError(f"{len(fields)} fields; the header has {n}")
    image_id = fields[cols.id].strip()
    if not image_id:
        raise InputError(f"empty image id in column {cols.id_name!r}")
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
                raise InputError(f"{ORGAN_COLUMNS[organ]}: {exc}") from None
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
            raise InputError(f"{source}: empty file; expected a CheXmask CSV header") from None
        except csv.Error as exc:
            raise InputError(f"{source}:1: unreadable header: {exc}") from None
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
                    raise InputError(str(err)) from None
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
                    raise InputError(str(err)) from None
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
        raise InputError(f"chunksize must be >= 1, got {chunksize}")
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
                raise InputError(str(item))
            continue
        if item.image_id == target:
            return item
    raise InputError(f"image id {image_id!r} not found in {path}")

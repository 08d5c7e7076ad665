"""Filtering CheXmask CSVs by Dice RCA (overall and per structure) and summarizing them, streaming."""

from __future__ import annotations

import contextlib
import csv
import gzip
import io
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Literal

import numpy as np

from cxrkit.errors import CxrkitError, InputError, UsageError
from cxrkit.io.atomic import atomic_open
from cxrkit.io.landmarks import ORGAN_COLUMNS, ORGANS

if TYPE_CHECKING:  # pragma: no cover
    pass

log = logging.getLogger(__name__)

from cxrkit.data.chexmask.reader import (
    DEFAULT_MIN_DICE,
    CheXmaskRecord,
    Columns,
    RowError,
    _header_text,
    _norm,
    _parse_dice,
    iter_rows,
    read_columns,
)


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
        raise InputError(f"unknown structure {structure!r}; expected one of {', '.join(STRUCTURE_CHOICES)}")
    if by not in ("mean", "max"):
        raise InputError(f"by must be 'mean' or 'max', got {by!r}")
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
        raise InputError(
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
        raise InputError(f"by must be 'mean' or 'max', got {by!r}")
    if not 0.0 <= threshold <= 1.0:
        raise InputError(f"threshold {threshold!r} is outside [0, 1]")
    per_structure: dict[str, float] = {}
    for structure, value in (structure_thresholds or {}).items():
        if structure not in STRUCTURE_CHOICES:
            raise InputError(
                f"structure threshold: unknown structure {structure!r}; expected one of {', '.join(STRUCTURE_CHOICES)}"
            )
        try:
            per_structure[structure] = float(value)
        except (TypeError, ValueError):
            raise InputError(
                f"structure threshold {structure}={value!r} is not a number; expected a Dice in [0, 1]"
            ) from None
        if not 0.0 <= per_structure[structure] <= 1.0:
            raise InputError(f"structure threshold {structure}={value!r} is outside [0, 1]")
    cols = read_columns(src, id_column)
    if (cols.dice_mean if by == "mean" else cols.dice_max) is None:
        raise InputError(f"{src}: no 'Dice RCA ({by.capitalize()})' column to filter on (header: {_header_text(cols.header)})")
    structure_index = _structure_columns(cols, src, per_structure, by) if per_structure else {}
    dst = Path(dst)
    if dst.resolve() == Path(src).resolve():
        raise InputError(f"{dst}: the output must differ from the input")
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
                        raise InputError(str(err)) from None
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

"""Stream a CheXmask CSV (plain or gzip) into Parquet part files, resumably, with derived columns.

Layout written by :func:`convert_csv` for a source ``ChestX-Ray8.csv`` (or ``ChestX-Ray8.csv.gz``)::
    OUT/ChestX-Ray8/part-00000.parquet   rows 1 .. rows_per_file of the CSV (after bad rows)
    OUT/ChestX-Ray8/part-00001.parquet   ...
    OUT/ChestX-Ray8/_progress.json       the manifest: finished parts, rows consumed, options, done flag
    OUT/ChestX-Ray8/errors.csv           with lenient=True: the bad rows (source, line, image_id, reason)

**Streaming, flat memory.** The CSV is read row by row (:mod:`cxrkit.data.chexmask`'s reader); rows are
buffered for one Parquet row group (``row_group_size`` rows, default 1024, about 20 MB of CheXmask
text) and written to the open part file, so memory does not grow with the file or with ``rows_per_file``.

**Atomic parts, resumable.** A part is written to a hidden ``.part-NNNNN.parquet.tmp`` beside it and
renamed when complete; only then is it recorded in ``_progress.json`` (itself replaced atomically) with
the number of CSV rows consumed so far. A restarted conversion skips those rows (it re-reads but does not
convert them) and continues with the next part, so no row is written twice or half. A source whose
manifest says ``complete`` is skipped. Rerunning with a different ``rows_per_file``, ``repair_dice`` or
``id_column``, or after the source file changed (size or mtime), is refused unless ``overwrite=True``.

**Columns** (DuckDB column names are case-insensitive; quote the ones with spaces: ``"Dice RCA (Mean)"``):

* every column of the CSV header, under its name as written and in the same order: the id column
  (``Image Index``, ``Path``, ``dicom_id``, ``image_id`` or ``ImageID``, the string as written),
  ``Landmarks`` and the RLE columns ``Right Lung``, ``Left Lung``, ``Heart`` (strings, unchanged),
  ``Dice RCA (Mean)`` / ``Dice RCA (Max)`` as DOUBLE (after the Max < Mean swap repair of
  :mod:`cxrkit.data.chexmask` unless ``repair_dice=False``; blank = NULL), ``Height`` / ``Width`` as
  INTEGER (blank = 1024, ``1024.0`` = 1024), any other column as the string written. A header cell
  that is empty (a pandas index) becomes ``unnamed_<i>``; a header name that equals a derived name
  below up to case (the physicians' ``Dataset``) gets the suffix `` (csv)``.
* derived, see :data:`DERIVED_COLUMNS`: ``dataset`` (the CSV's stem), ``image_id`` (the id, stripped),
  ``image_index`` (the id's file name after the last ``/``, = NIH ``Image Index``), ``source_line``
  (1-based line of the row in the CSV), ``dice_swapped``, ``size_was_blank``, per structure
  ``{right_lung,left_lung,heart}_area`` (foreground pixels of the RLE mask in its ``Height x Width``
  space) and the bounding box ``_x0, _y0, _x1, _y1`` (0-based pixel column ``x`` / row ``y``, both ends
  inclusive, so the box is ``x1 - x0 + 1`` pixels wide; NULL for an empty mask), ``heart_width``,
  ``thorax_width`` and ``ctr`` (cardiothoracic ratio as defined in :mod:`cxrkit.anatomy.measure`;
  NULL when a structure is empty), ``qc_pass`` (``Dice RCA (Mean) >= 0.7``; NULL without a Dice).

"Right" is the patient's right (the image left), as in CheXmask. Area and bounding box come straight
from the RLE runs (:func:`runs_geometry`; no mask is decoded); the CTR is
:func:`cxrkit.anatomy.measure.measure_masks` applied to the masks' column projections (one row of
``Width`` pixels per structure, set at the structure's first and last column), which gives exactly
its value on the full masks because its widths only depend on which columns are occupied.

**Bad rows.** Without ``lenient`` the first bad row (unreadable CSV, wrong field count, a bad Dice or
size, an RLE that does not parse or leaves the mask, malformed landmarks) raises
:class:`~cxrkit.errors.CxrkitError` naming the file and line; finished parts are kept, so the
conversion can be resumed with ``lenient=True``. With ``lenient`` such rows are not written and are
listed in ``errors.csv`` (appended as each part finishes, so also exactly once across restarts).
"""

from __future__ import annotations

import contextlib
import csv
import io
import itertools
import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from cxrkit.anatomy.measure import measure_masks
from cxrkit.data.chexmask import RowError, image_basename, iter_rows, read_columns
from cxrkit.errors import CxrkitError, UsageError, require
from cxrkit.io.atomic import write_text
from cxrkit.io.landmarks import ORGAN_COLUMNS, ORGANS, parse_landmarks
from cxrkit.io.rle import parse_runs

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_ROWS_PER_FILE",
    "DEFAULT_ROW_GROUP_SIZE",
    "QC_THRESHOLD",
    "DERIVED_COLUMNS",
    "MANIFEST",
    "ERRORS",
    "ConvertSummary",
    "dataset_name",
    "runs_geometry",
    "convert_csv",
]

DEFAULT_ROWS_PER_FILE = 50_000
DEFAULT_ROW_GROUP_SIZE = 1024
QC_THRESHOLD = 0.7  # qc_pass = Dice RCA (Mean) >= QC_THRESHOLD (CheXmask's recommended cut-off)
MANIFEST = "_progress.json"
ERRORS = "errors.csv"
FORMAT_VERSION = 1
ERROR_COLUMNS = ("source", "line", "image_id", "reason")

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


def _pyarrow():
    return require("pyarrow", "scale"), require("pyarrow.parquet", "scale")


def dataset_name(path: str | os.PathLike) -> str:
    """The dataset name of a source: its file name without ``.gz`` and ``.csv`` (``ChestX-Ray8``)."""
    name = Path(path).name
    for suffix in (".gz", ".csv"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
    if not name or name.startswith("."):
        raise CxrkitError(f"{path}: cannot derive a dataset name from the file name")
    return name


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


@dataclass
class ConvertSummary:
    """What :func:`convert_csv` did for one source.

    ``rows`` / ``bad_rows`` / ``parts`` are totals over all runs of this source (what the output now
    holds); ``new_rows`` / ``new_parts`` are this call's share; ``skipped`` is True when the source was
    already complete; ``complete`` whether the whole CSV is now converted.
    """

    source: str
    out_dir: str
    dataset: str
    rows: int = 0
    bad_rows: int = 0
    parts: int = 0
    new_rows: int = 0
    new_parts: int = 0
    resumed_at_row: int = 0
    skipped: bool = False
    complete: bool = False
    seconds: float = 0.0
    errors_file: str | None = None
    columns: list[str] = field(default_factory=list)

    def line(self) -> str:
        """One human-readable line."""
        if self.skipped:
            return f"{self.source}: already converted ({self.rows} rows, {self.parts} part(s)) in {self.out_dir}; skipped"
        state = "done" if self.complete else "stopped early (rerun to resume)"
        resumed = f", resumed after row {self.resumed_at_row}" if self.resumed_at_row else ""
        rate = f", {self.new_rows / self.seconds:,.0f} rows/s" if self.seconds > 0 and self.new_rows else ""
        bad = f"; {self.bad_rows} bad rows listed in {self.errors_file}" if self.bad_rows else ""
        parts = f"{self.parts} part{'s' if self.parts != 1 else ''}"
        return (f"{self.source}: {state}: {self.rows} rows in {parts} -> {self.out_dir} "
                f"({self.new_rows} new in {self.seconds:.1f} s{rate}{resumed}){bad}")


# ------------------------------------------------------------------------------------------------
# schema
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Layout:
    """Output name and kind of each CSV column (kind: str, dice_mean, dice_max, height, width)."""
    names: tuple[str, ...]
    kinds: tuple[str, ...]

    @property
    def all_names(self) -> list[str]:
        return list(self.names) + list(DERIVED_COLUMNS)


def _layout(cols: Any) -> _Layout:
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
    return _Layout(tuple(names), tuple(kinds))


def _schema(layout: _Layout):
    pa, _ = _pyarrow()
    types = {"str": pa.string(), "dice_mean": pa.float64(), "dice_max": pa.float64(),
             "height": pa.int32(), "width": pa.int32()}
    fields = [pa.field(n, types[k]) for n, k in zip(layout.names, layout.kinds)]
    fields += [pa.field(n, getattr(pa, t)()) for n, t in DERIVED_COLUMNS.items()]
    return pa.schema(fields)


# ------------------------------------------------------------------------------------------------
# rows
# ------------------------------------------------------------------------------------------------
class _Buffer:
    """Column lists for one row group."""

    def __init__(self, layout: _Layout) -> None:
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
                raise CxrkitError(f"{ORGAN_COLUMNS[organ]}: {exc}") from None
            geo[organ] = runs_geometry(starts, lengths, rec.width)
        try:
            parse_landmarks(rec.landmarks)
        except CxrkitError as exc:
            raise CxrkitError(f"Landmarks: {exc}") from None
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
        pa, _ = _pyarrow()
        return pa.Table.from_pydict(self.columns, schema=schema)


class _PartWriter:
    """One part file written row group by row group to a hidden temporary, renamed on :meth:`commit`."""
    def __init__(self, path: Path, schema, compression: str) -> None:
        _, pq = _pyarrow()
        self.path = path
        self.tmp = path.with_name(f".{path.name}.tmp")
        self.rows = 0
        self.writer = pq.ParquetWriter(str(self.tmp), schema, compression=compression,
                                       use_dictionary=["dataset"], write_statistics=True)

    def write(self, table) -> None:
        self.writer.write_table(table, row_group_size=max(table.num_rows, 1))
        self.rows += table.num_rows

    def commit(self) -> None:
        self.writer.close()
        with open(self.tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(self.tmp, self.path)
        _fsync_dir(self.path.parent)

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.tmp)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# ------------------------------------------------------------------------------------------------
# manifest
# ------------------------------------------------------------------------------------------------
def _source_stamp(src: Path) -> dict[str, Any]:
    st = src.stat()
    return {"source": str(src.resolve()), "source_size": st.st_size, "source_mtime_ns": st.st_mtime_ns}


def _new_manifest(src: Path, dataset: str, options: dict[str, Any], columns: list[str]) -> dict[str, Any]:
    return {"format": FORMAT_VERSION, **_source_stamp(src), "dataset": dataset, "options": options,
            "columns": columns, "parts": [], "rows_consumed": 0, "last_line": 1, "rows": 0, "bad_rows": 0,
            "errors_bytes": 0, "complete": False}


def _read_manifest(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path}: unreadable progress manifest ({exc}); rerun with --overwrite to start over") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT_VERSION:
        raise UsageError(f"{path}: unknown progress manifest format; rerun with --overwrite to start over")
    return data


def _write_manifest(path: Path, manifest: dict[str, Any]) -> None:
    write_text(path, json.dumps(manifest, indent=1) + "\n")


def _check_resumable(manifest: dict[str, Any], src: Path, options: dict[str, Any], path: Path) -> None:
    stamp = _source_stamp(src)
    if manifest.get("source") != stamp["source"]:
        raise UsageError(
            f"{path.parent}: holds the conversion of {manifest.get('source')}, not {stamp['source']} (same dataset "
            f"name); convert it into another --out folder, or pass --overwrite to replace it"
        )
    if (manifest.get("source_size"), manifest.get("source_mtime_ns")) != (stamp["source_size"], stamp["source_mtime_ns"]):
        raise UsageError(f"{src}: changed since its conversion into {path.parent} started; pass --overwrite to convert it again")
    if manifest.get("options") != options:
        raise UsageError(
            f"{path.parent}: was converted with {manifest.get('options')}, now {options}; use the same options to resume, "
            f"or pass --overwrite to start over"
        )


def _clean_dir(out: Path, keep: set[str]) -> None:
    """Remove temporaries and part files that the manifest does not list (a crash after a rename)."""
    for p in out.iterdir():
        if (p.name.startswith(".part-") and p.name.endswith(".tmp")) or (
            p.name.startswith("part-") and p.name.endswith(".parquet") and p.name not in keep
        ):
            log.info("removing unfinished %s", p)
            p.unlink()


# ------------------------------------------------------------------------------------------------
# conversion
# ------------------------------------------------------------------------------------------------
def _progress_bar(enabled: bool, dataset: str, initial: int):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(desc=dataset, unit=" rows", initial=initial, disable=None, dynamic_ncols=True)


def convert_csv(
    source: str | os.PathLike,
    out: str | os.PathLike,
    *,
    rows_per_file: int = DEFAULT_ROWS_PER_FILE,
    row_group_size: int = DEFAULT_ROW_GROUP_SIZE,
    lenient: bool = False,
    repair_dice: bool = True,
    id_column: str | None = None,
    overwrite: bool = False,
    compression: str = "zstd",
    progress: bool = False,
    max_parts: int | None = None,
    on_part: Callable[[int, Path], None] | None = None,
) -> ConvertSummary:
    """Convert one CheXmask CSV (plain or gzip) to ``out/<dataset>/part-NNNNN.parquet`` (see the module doc).

    ``rows_per_file``: rows per part file (default 50,000, about 0.3-0.5 GB of Parquet for real rows);
    ``row_group_size``: rows buffered in memory and written per Parquet row group (memory ~ 20 KB x this).
    ``lenient``: bad rows go to ``errors.csv`` instead of raising. ``repair_dice``: swap Dice Max/Mean
    back where Max < Mean (:mod:`cxrkit.data.chexmask`). ``overwrite``: discard an existing conversion
    of this source and start over. ``progress``: a tqdm bar (shown only on a terminal).
    ``max_parts``: stop after finishing this many new parts (the rest is converted by a later call,
    which resumes); ``on_part(index, path)`` is called after each part is committed.

    Returns a :class:`ConvertSummary`. Raises :class:`~cxrkit.errors.CxrkitError` for a missing or
    unreadable source, a bad row without ``lenient`` (naming file and line), or a manifest that does
    not match (see the module doc); :class:`~cxrkit.errors.MissingDependencyError` without pyarrow.
    """
    _pyarrow()
    t0 = time.perf_counter()
    src = Path(source)
    if not src.is_file():
        raise UsageError(f"{src}: no such file")
    if rows_per_file < 1 or row_group_size < 1:
        raise UsageError(f"rows_per_file and row_group_size must be >= 1, got {rows_per_file}, {row_group_size}")
    if max_parts is not None and max_parts < 0:
        raise UsageError(f"max_parts must be >= 0, got {max_parts}")
    dataset = dataset_name(src)
    out_dir = Path(out) / dataset
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest_path, errors_path = out_dir / MANIFEST, out_dir / ERRORS

    cols = read_columns(src, id_column)
    layout = _layout(cols)
    schema = _schema(layout)
    options = {"rows_per_file": rows_per_file, "repair_dice": repair_dice, "id_column": id_column}

    manifest = None if overwrite else _read_manifest(manifest_path)
    if overwrite:
        with contextlib.suppress(FileNotFoundError):
            manifest_path.unlink()
        with contextlib.suppress(FileNotFoundError):
            errors_path.unlink()
    if manifest is not None:
        _check_resumable(manifest, src, options, manifest_path)
    else:
        manifest = _new_manifest(src, dataset, options, layout.all_names)
    summary = ConvertSummary(str(src), str(out_dir), dataset, columns=layout.all_names,
                             errors_file=str(errors_path) if errors_path.exists() else None)
    _clean_dir(out_dir, {p["file"] for p in manifest["parts"]})

    def sync_summary() -> None:
        summary.rows, summary.bad_rows = manifest["rows"], manifest["bad_rows"]
        summary.parts, summary.complete = len(manifest["parts"]), manifest["complete"]

    if manifest["complete"]:
        sync_summary()
        summary.skipped = True
        log.info("%s: already converted into %s; skipped", src, out_dir)
        return summary

    # errors.csv holds exactly the bad rows of the finished parts: drop what an interrupted run appended.
    if errors_path.exists():
        with open(errors_path, "r+b") as fh:
            fh.truncate(manifest["errors_bytes"])
    summary.resumed_at_row = manifest["rows_consumed"]
    if summary.resumed_at_row:
        log.info("%s: resuming after %d rows (%d parts done)", src, summary.resumed_at_row, len(manifest["parts"]))

    reader = iter_rows(src, id_column, True, repair_dice, False)  # lenient here; strictness is handled below
    items = itertools.islice(reader, manifest["rows_consumed"], None)  # skip the rows of finished parts
    buffer = _Buffer(layout)
    bar = _progress_bar(progress, dataset, manifest["rows_consumed"])
    part: _PartWriter | None = None
    part_errors: list[tuple[str, int, str, str]] = []
    consumed = manifest["rows_consumed"]
    first_line = None
    last_line = manifest["last_line"]

    def flush_group() -> None:
        nonlocal part
        if not buffer.n:
            return
        if part is None:
            index = len(manifest["parts"])
            part = _PartWriter(out_dir / f"part-{index:05d}.parquet", schema, compression)
        part.write(buffer.table(schema))
        buffer.clear()

    def finish_part() -> None:
        """Commit the open part (if any rows or errors were consumed) and record it in the manifest."""
        nonlocal part, first_line
        flush_group()
        n_rows = part.rows if part is not None else 0
        if part is not None:
            part.commit()
            name = part.path.name
            manifest["parts"].append({"file": name, "rows": n_rows, "bad_rows": len(part_errors),
                                      "first_line": first_line, "last_line": last_line})
            summary.new_parts += 1
        if part_errors:
            with open(errors_path, "a", encoding="utf-8", newline="") as fh:
                if fh.tell() == 0:
                    csv.writer(fh, lineterminator="\n").writerow(ERROR_COLUMNS)
                csv.writer(fh, lineterminator="\n").writerows(part_errors)
                fh.flush()
                os.fsync(fh.fileno())
            manifest["errors_bytes"] = errors_path.stat().st_size
            summary.errors_file = str(errors_path)
        manifest["rows_consumed"] = consumed
        manifest["last_line"] = last_line
        manifest["rows"] += n_rows
        manifest["bad_rows"] += len(part_errors)
        _write_manifest(manifest_path, manifest)
        summary.new_rows += n_rows
        if part is not None and on_part is not None:
            on_part(len(manifest["parts"]) - 1, part.path)
        part, first_line = None, None
        part_errors.clear()

    stopped = False
    try:
        for _, item, fields in items:
            consumed += 1
            last_line = item.line
            if first_line is None:
                first_line = item.line
            if bar is not None:
                bar.update(1)
            if isinstance(item, RowError):
                if not lenient:
                    raise CxrkitError(f"{item} (pass --lenient to record bad rows in {errors_path.name} and go on)")
                part_errors.append((str(src), item.line, item.image_id or "", item.message))
                continue
            try:
                buffer.add(item, fields, dataset)
            except CxrkitError as exc:
                err = f"row {item.image_id!r}: {exc}"
                if not lenient:
                    raise CxrkitError(f"{src}:{item.line}: {err} (pass --lenient to record bad rows and go on)") from None
                part_errors.append((str(src), item.line, item.image_id, err))
                continue
            if buffer.n >= row_group_size:
                flush_group()
            if (part.rows if part is not None else 0) + buffer.n >= rows_per_file:
                finish_part()
                if max_parts is not None and summary.new_parts >= max_parts:
                    stopped = True
                    break
        if not stopped:
            if buffer.n or part is not None or part_errors or consumed != manifest["rows_consumed"]:
                finish_part()
            manifest["complete"] = True
            _write_manifest(manifest_path, manifest)
    except BaseException:
        if part is not None:
            part.abort()
        raise
    finally:
        if bar is not None:
            bar.close()
        reader.close()
    sync_summary()
    summary.seconds = time.perf_counter() - t0
    log.info("%s", summary.line())
    return summary


def read_errors(path: str | os.PathLike) -> list[dict[str, str]]:
    """The rows of an ``errors.csv`` written by :func:`convert_csv` (source, line, image_id, reason)."""
    with open(path, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(io.StringIO(fh.read())))

"""Stream a CheXmask CSV (plain or gzip) into Parquet part files, resumably, with derived columns.

Layout written by :func:`convert_csv` for a source ``ChestX-Ray8.csv`` (or ``ChestX-Ray8.csv.gz``)::
    OUT/ChestX-Ray8/part-00000.parquet   rows 1 .. rows_per_file of the CSV (after bad rows)
    OUT/ChestX-Ray8/part-00001.parquet   ...
    OUT/ChestX-Ray8/_progress.json       the progress record (:class:`cxrkit.io.progress.ProgressRecord`): the plan (source, size, mtime, options) and the state (finished parts, rows consumed, done flag)
    OUT/ChestX-Ray8/errors.csv           with lenient=True: the bad rows (source, line, image_id, reason)

**Streaming, flat memory.** The CSV is read row by row (:mod:`cxrkit.data.chexmask`'s reader); rows are
buffered for one Parquet row group (``row_group_size`` rows, default 1024, about 20 MB of CheXmask
text) and written to the open part file, so memory does not grow with the file or with ``rows_per_file``.

**Atomic parts, resumable.** A part is written to a hidden ``.part-NNNNN.parquet.tmp`` beside it and
renamed when complete; only then is it recorded in ``_progress.json`` (:class:`~cxrkit.io.progress.ProgressRecord`, replaced atomically) with
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
* derived, see :data:`cxrkit.warehouse.columns.DERIVED_COLUMNS`: ``dataset`` (the CSV's stem), ``image_id`` (the id, stripped),
  ``image_index`` (the id's file name after the last ``/``, = NIH ``Image Index``), ``source_line``
  (1-based line of the row in the CSV), ``dice_swapped``, ``size_was_blank``, per structure
  ``{right_lung,left_lung,heart}_area`` (foreground pixels of the RLE mask in its ``Height x Width``
  space) and the bounding box ``_x0, _y0, _x1, _y1`` (0-based pixel column ``x`` / row ``y``, both ends
  inclusive, so the box is ``x1 - x0 + 1`` pixels wide; NULL for an empty mask), ``heart_width``,
  ``thorax_width`` and ``ctr`` (cardiothoracic ratio as defined in :mod:`cxrkit.anatomy.measure`;
  NULL when a structure is empty), ``qc_pass`` (``Dice RCA (Mean) >= 0.7``; NULL without a Dice).

"Right" is the patient's right (the image left), as in CheXmask. Area and bounding box come straight
from the RLE runs (:func:`cxrkit.warehouse.columns.runs_geometry`; no mask is decoded); the CTR is
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
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from cxrkit.data.chexmask import RowError, iter_rows, read_columns
from cxrkit.errors import CxrkitError, InputError, UsageError
from cxrkit.io.progress import ProgressRecord, commit_file, remove_temporaries
from cxrkit.warehouse.columns import RowBuffer, layout_of, pyarrow_modules, schema_of

log = logging.getLogger(__name__)

DEFAULT_ROWS_PER_FILE = 50_000
DEFAULT_ROW_GROUP_SIZE = 1024
MANIFEST = "_progress.json"
ERRORS = "errors.csv"
FORMAT_VERSION = 2  # 1: the record before ProgressRecord (rerun with --overwrite)
ERROR_COLUMNS = ("source", "line", "image_id", "reason")

def dataset_name(path: str | os.PathLike) -> str:
    """The dataset name of a source: its file name without ``.gz`` and ``.csv`` (``ChestX-Ray8``)."""
    name = Path(path).name
    for suffix in (".gz", ".csv"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
    if not name or name.startswith("."):
        raise InputError(f"{path}: cannot derive a dataset name from the file name")
    return name


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


class _PartWriter:
    """One part file written row group by row group to a hidden temporary, renamed on :meth:`commit`."""
    def __init__(self, path: Path, schema, compression: str) -> None:
        _, pq = pyarrow_modules()
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
        commit_file(self.tmp, self.path)

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.tmp)


def _source_stamp(src: Path) -> dict[str, Any]:
    st = src.stat()
    return {"source": str(src.resolve()), "source_size": st.st_size, "source_mtime_ns": st.st_mtime_ns}


def _clean_dir(out: Path, keep: set[str]) -> None:
    """Remove temporaries and part files that the record does not list (a crash after a rename)."""
    remove_temporaries(out, (".part-*.tmp",))
    for p in out.glob("part-*.parquet"):
        if p.name not in keep:
            log.info("removing unfinished %s", p)
            p.unlink()


class _Conversion:
    """One source's conversion: row groups into the open part, parts committed and recorded (see the module doc)."""

    def __init__(self, src: Path, out_dir: Path, record: ProgressRecord, state: dict[str, Any], layout, schema,
                 summary: "ConvertSummary", *, rows_per_file: int, row_group_size: int, lenient: bool,
                 compression: str, on_part: Callable[[int, Path], None] | None) -> None:
        self.src, self.out_dir, self.record, self.state = src, out_dir, record, state
        self.errors_path = out_dir / ERRORS
        self.schema, self.summary = schema, summary
        self.rows_per_file, self.row_group_size, self.lenient = rows_per_file, row_group_size, lenient
        self.compression, self.on_part = compression, on_part
        self.buffer = RowBuffer(layout)
        self.part: _PartWriter | None = None
        self.part_errors: list[tuple[str, int, str, str]] = []
        self.consumed = state["rows_consumed"]
        self.first_line: int | None = None
        self.last_line = state["last_line"]

    def flush_group(self) -> None:
        """Write the buffered rows as one row group of the open part (opened on first use)."""
        if not self.buffer.n:
            return
        if self.part is None:
            index = len(self.state["parts"])
            self.part = _PartWriter(self.out_dir / f"part-{index:05d}.parquet", self.schema, self.compression)
        self.part.write(self.buffer.table(self.schema))
        self.buffer.clear()

    def finish_part(self) -> None:
        """Commit the open part (if any rows or errors were consumed) and record it."""
        self.flush_group()
        part, st = self.part, self.state
        n_rows = part.rows if part is not None else 0
        if part is not None:
            part.commit()
            st["parts"].append({"file": part.path.name, "rows": n_rows, "bad_rows": len(self.part_errors),
                                "first_line": self.first_line, "last_line": self.last_line})
            self.summary.new_parts += 1
        if self.part_errors:
            self._append_errors()
        st["rows_consumed"], st["last_line"] = self.consumed, self.last_line
        st["rows"] += n_rows
        st["bad_rows"] += len(self.part_errors)
        self.record.save(st)
        self.summary.new_rows += n_rows
        if part is not None and self.on_part is not None:
            self.on_part(len(st["parts"]) - 1, part.path)
        self.part, self.first_line = None, None
        self.part_errors.clear()

    def _append_errors(self) -> None:
        with open(self.errors_path, "a", encoding="utf-8", newline="") as fh:
            if fh.tell() == 0:
                csv.writer(fh, lineterminator="\n").writerow(ERROR_COLUMNS)
            csv.writer(fh, lineterminator="\n").writerows(self.part_errors)
            fh.flush()
            os.fsync(fh.fileno())
        self.state["errors_bytes"] = self.errors_path.stat().st_size
        self.summary.errors_file = str(self.errors_path)

    def add(self, item: Any, fields: list[str], dataset: str) -> None:
        """One row (or row error) of the CSV; raises for a bad row unless lenient."""
        self.consumed += 1
        self.last_line = item.line
        if self.first_line is None:
            self.first_line = item.line
        if isinstance(item, RowError):
            if not self.lenient:
                raise InputError(f"{item} (pass --lenient to record bad rows in {ERRORS} and go on)")
            self.part_errors.append((str(self.src), item.line, item.image_id or "", item.message))
            return
        try:
            self.buffer.add(item, fields, dataset)
        except CxrkitError as exc:
            err = f"row {item.image_id!r}: {exc}"
            if not self.lenient:
                raise InputError(f"{self.src}:{item.line}: {err} (pass --lenient to record bad rows and go on)") from None
            self.part_errors.append((str(self.src), item.line, item.image_id, err))
            return
        if self.buffer.n >= self.row_group_size:
            self.flush_group()

    @property
    def part_full(self) -> bool:
        return (self.part.rows if self.part is not None else 0) + self.buffer.n >= self.rows_per_file

    def abort(self) -> None:
        if self.part is not None:
            self.part.abort()


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

    Returns a :class:`ConvertSummary`. Raises :class:`~cxrkit.errors.InputError` for a bad row without
    ``lenient`` (naming file and line), :class:`~cxrkit.errors.UsageError` for a missing source or a record of
    another conversion (see the module doc), :class:`~cxrkit.errors.MissingDependencyError` without pyarrow.
    """
    pyarrow_modules()
    t0 = time.perf_counter()
    src = Path(source)
    if not src.is_file():
        raise UsageError(f"{src}: no such file")
    if rows_per_file < 1 or row_group_size < 1:
        raise UsageError(f"--rows-per-file and --row-group-size must be >= 1, got {rows_per_file}, {row_group_size}")
    if max_parts is not None and max_parts < 0:
        raise UsageError(f"max_parts must be >= 0, got {max_parts}")
    dataset = dataset_name(src)
    out_dir = Path(out) / dataset
    out_dir.mkdir(parents=True, exist_ok=True)
    layout = layout_of(read_columns(src, id_column))
    plan = {**_source_stamp(src), "dataset": dataset, "columns": layout.all_names,
            "options": {"rows_per_file": rows_per_file, "repair_dice": repair_dice, "id_column": id_column}}
    record = ProgressRecord(out_dir / MANIFEST, plan, keys=("source", "source_size", "source_mtime_ns", "options"),
                            version=FORMAT_VERSION)
    state = record.load(overwrite=overwrite, hint="convert into another --out folder, or pass --overwrite to start over")
    if overwrite:
        record.remove()
        (out_dir / ERRORS).unlink(missing_ok=True)
    state = state or {"parts": [], "rows_consumed": 0, "last_line": 1, "rows": 0, "bad_rows": 0, "errors_bytes": 0,
                      "complete": False}
    errors_path = out_dir / ERRORS
    summary = ConvertSummary(str(src), str(out_dir), dataset, columns=layout.all_names,
                             errors_file=str(errors_path) if errors_path.exists() else None)
    _clean_dir(out_dir, {p["file"] for p in state["parts"]})
    if state["complete"]:
        _sync(summary, state)
        summary.skipped = True
        log.info("%s: already converted into %s; skipped", src, out_dir)
        return summary
    # errors.csv holds exactly the bad rows of the finished parts: drop what an interrupted run appended.
    if errors_path.exists():
        with open(errors_path, "r+b") as fh:
            fh.truncate(state["errors_bytes"])
    summary.resumed_at_row = state["rows_consumed"]
    if summary.resumed_at_row:
        log.info("%s: resuming after %d rows (%d parts done)", src, summary.resumed_at_row, len(state["parts"]))
    run = _Conversion(src, out_dir, record, state, layout, schema_of(layout), summary, rows_per_file=rows_per_file,
                      row_group_size=row_group_size, lenient=lenient, compression=compression, on_part=on_part)
    reader = iter_rows(src, id_column, True, repair_dice, False)  # lenient here; strictness is _Conversion's
    bar = _progress_bar(progress, dataset, state["rows_consumed"])
    stopped = False
    try:
        for _, item, fields in itertools.islice(reader, state["rows_consumed"], None):  # skip finished parts' rows
            run.add(item, fields, dataset)
            if bar is not None:
                bar.update(1)
            if run.part_full:
                run.finish_part()
                if max_parts is not None and summary.new_parts >= max_parts:
                    stopped = True
                    break
        if not stopped:
            if run.buffer.n or run.part is not None or run.part_errors or run.consumed != state["rows_consumed"]:
                run.finish_part()
            state["complete"] = True
            record.save(state)
    except BaseException:
        run.abort()
        raise
    finally:
        if bar is not None:
            bar.close()
        reader.close()
    _sync(summary, state)
    summary.seconds = time.perf_counter() - t0
    log.info("%s", summary.line())
    return summary


def _sync(summary: "ConvertSummary", state: dict[str, Any]) -> None:
    summary.rows, summary.bad_rows = state["rows"], state["bad_rows"]
    summary.parts, summary.complete = len(state["parts"]), state["complete"]


def _progress_bar(enabled: bool, dataset: str, initial: int):
    if not enabled:
        return None
    from tqdm.auto import tqdm  # noqa: PLC0415

    return tqdm(desc=dataset, unit=" rows", initial=initial, disable=None, dynamic_ncols=True)


def read_errors(path: str | os.PathLike) -> list[dict[str, str]]:
    """The rows of an ``errors.csv`` written by :func:`convert_csv` (source, line, image_id, reason)."""
    with open(path, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(io.StringIO(fh.read())))


__all__ = ["DEFAULT_ROWS_PER_FILE", "DEFAULT_ROW_GROUP_SIZE", "MANIFEST", "ERRORS", "ConvertSummary", "dataset_name",
           "convert_csv", "read_errors"]

"""SQL over converted CheXmask Parquet files (and the NIH metadata) with an in-memory DuckDB.

:func:`connect` opens an in-memory DuckDB connection with up to two views:

``chexmask``
    every ``*.parquet`` file under the given folders (recursively, no hive partitioning; hidden
    temporaries of an unfinished conversion are not matched), read with ``union_by_name`` so CSVs with
    different headers (``Image Index`` vs ``Path`` vs ``dicom_id`` ids, files without Dice columns)
    share one view; a column missing from a file reads as NULL. Columns are described in
    :mod:`cxrkit.warehouse.convert`: the CSV's own (quote names with spaces, ``c."Dice RCA (Mean)"``)
    plus ``dataset``, ``image_id``, ``image_index``, per-structure ``*_area`` and bounding boxes,
    ``heart_width``, ``thorax_width``, ``ctr``, ``qc_pass``...
``nih``
    the NIH ChestX-ray14 metadata read by :func:`cxrkit.data.nih.read_metadata` (any of its formats,
    plain or gzip): ``Image Index``, ``Finding Labels``, ``Follow-up #``, ``Patient ID``,
    ``Patient Age`` (years), ``Patient Gender``, ``View Position``, ``Width``, ``Height``,
    ``PixelSpacing_x``/``_y`` and one 0/1 TINYINT column per finding (``Cardiomegaly``... in
    :data:`cxrkit.findings.FINDINGS` order; NULL = unknown). Join it on
    ``nih."Image Index" = chexmask.image_index``.

Example (the ChestX-ray8 rows labelled Cardiomegaly with a CTR above 0.5 and good masks)::
    con = connect(["chexmask_parquet"], nih_metadata="Data_Entry_2017_v2020.csv.gz")
    con.sql('''SELECT c.image_index, c.ctr, c."Dice RCA (Mean)" FROM chexmask c
               JOIN nih n ON n."Image Index" = c.image_index
               WHERE n.Cardiomegaly = 1 AND c.ctr > 0.5 AND c."Dice RCA (Mean)" >= 0.7''').df()
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import math
import os
from pathlib import Path
from typing import IO, Any, Iterable, Sequence

from cxrkit.data.nih import read_metadata
from cxrkit.errors import CxrkitError, InputError, UsageError, require
from cxrkit.findings import FINDINGS

log = logging.getLogger(__name__)

__all__ = ["connect", "parquet_files", "nih_table", "run_query", "write_result", "print_result", "sql_error"]

FORMATS = ("csv", "table", "json")
_TABLE_CELL = 60  # characters shown per cell with format="table"


def _duckdb():
    return require("duckdb", "scale")


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def sql_error(exc: BaseException) -> CxrkitError:
    """A :class:`CxrkitError` with DuckDB's message on one line (its caret diagram dropped)."""
    first = str(exc).strip().split("\n\n", 1)[0]
    return UsageError("SQL error: " + "; ".join(line.strip() for line in first.splitlines() if line.strip()))


def parquet_files(paths: Sequence[str | os.PathLike] | str | os.PathLike) -> list[Path]:
    """Every ``*.parquet`` file under the given folders (recursively, sorted; a file path is taken as is).

    Hidden files and folders (names starting with ``.``, e.g. an unfinished part's temporary) are skipped.
    Raises :class:`CxrkitError` for a path that does not exist or a folder without Parquet files.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    files: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_file():
            if p.suffix != ".parquet":
                raise InputError(f"{p}: not a .parquet file; give the folder written by `cxrkit chexmask to-parquet`")
            files.append(p)
            continue
        if not p.is_dir():
            raise UsageError(f"{p}: no such folder; give the --out folder of `cxrkit chexmask to-parquet`")
        found = sorted(
            f for f in p.rglob("*.parquet")
            if f.is_file() and not any(part.startswith(".") for part in f.relative_to(p).parts)
        )
        if not found:
            raise UsageError(f"{p}: no Parquet files under it; convert CheXmask CSVs there with `cxrkit chexmask to-parquet`")
        files.extend(found)
    return files


def nih_table(path: str | os.PathLike):
    """NIH metadata (any format :func:`cxrkit.data.nih.read_metadata` reads) as a pyarrow Table with
    the findings as 0/1 int8 columns (null = unknown)."""
    pa = require("pyarrow", "scale")

    df = read_metadata(path)
    table = pa.Table.from_pandas(df, preserve_index=False)
    for name in FINDINGS:
        if name in table.column_names:
            i = table.column_names.index(name)
            table = table.set_column(i, name, table.column(name).cast(pa.int8()))
    return table


def connect(
    data_dirs: Sequence[str | os.PathLike] | str | os.PathLike | None,
    nih_metadata: str | os.PathLike | None = None,
    *,
    threads: int | None = None,
):
    """An in-memory DuckDB connection with the ``chexmask`` view over ``data_dirs`` (None or empty: no
    such view) and, when ``nih_metadata`` is given, the ``nih`` view (see the module doc).

    Raises :class:`CxrkitError` for a missing folder or one without Parquet files, and
    :class:`~cxrkit.errors.MissingDependencyError` (``pip install 'cxrkit[scale]'``) without duckdb/pyarrow.
    """
    duckdb = _duckdb()
    files = parquet_files(data_dirs) if data_dirs not in (None, [], ()) else []
    con = duckdb.connect(":memory:")
    if threads is not None:
        con.execute(f"SET threads = {int(threads)}")
    if files:
        listing = ", ".join(_literal(str(f)) for f in files)
        try:
            con.execute(
                f"CREATE VIEW chexmask AS SELECT * FROM read_parquet([{listing}], union_by_name = true, "
                f"hive_partitioning = false)"
            )
        except duckdb.Error as exc:
            raise InputError(f"cannot read the Parquet files under {', '.join(map(str, data_dirs))}: {sql_error(exc)}") from None
        log.info("chexmask view over %d Parquet files", len(files))
    if nih_metadata is not None:
        table = nih_table(nih_metadata)
        con.register("nih_metadata_arrow", table)
        con.execute("CREATE VIEW nih AS SELECT * FROM nih_metadata_arrow")
        log.info("nih view: %d rows from %s", table.num_rows, nih_metadata)
    return con


def run_query(con, sql: str, *, limit: int | None = None):
    """Run ``sql`` (one or more statements; the last one's result is returned as a DuckDB relation, or
    None for a statement without a result). ``limit`` caps the rows. SQL errors raise :class:`CxrkitError`
    with DuckDB's message."""
    duckdb = _duckdb()
    if not sql or not sql.strip():
        raise UsageError("empty SQL query")
    if limit is not None and limit < 0:
        raise UsageError(f"limit must be >= 0, got {limit}")
    try:
        rel = con.sql(sql)
        if rel is not None and limit is not None:
            rel = rel.limit(limit)
        return rel
    except duckdb.Error as exc:
        raise sql_error(exc) from None


def _batches(rel, batch_size: int = 4096) -> Iterable[Any]:
    reader = rel.to_arrow_reader(batch_size) if hasattr(rel, "to_arrow_reader") else rel.fetch_record_batch(batch_size)
    yield from reader


def _rows(rel) -> Iterable[dict[str, Any]]:
    duckdb = _duckdb()
    try:
        for batch in _batches(rel):
            yield from batch.to_pylist()
    except duckdb.Error as exc:
        raise sql_error(exc) from None


def _csv_cell(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and math.isnan(v):
        return "nan"
    return v


def _json_value(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def print_result(rel, stream: IO[str], fmt: str = "csv") -> int:
    """Write a query result to a text stream as ``csv`` (header + rows; NULL = empty cell), ``json`` (an
    array of objects, one per line) or ``table`` (aligned columns, cells cut at 60 characters).
    Returns the number of rows."""
    if fmt not in FORMATS:
        raise InputError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    names = list(rel.columns)
    n = 0
    if fmt == "csv":
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(names)
        for row in _rows(rel):
            writer.writerow([_csv_cell(row[k]) for k in names])
            n += 1
    elif fmt == "json":
        stream.write("[")
        for row in _rows(rel):
            stream.write(("," if n else "") + "\n" + json.dumps({k: _json_value(v) for k, v in row.items()}, default=str))
            n += 1
        stream.write("\n]\n" if n else "]\n")
    else:
        def cell(v: Any) -> str:
            s = "NULL" if v is None else (f"{v:.6g}" if isinstance(v, float) else str(v))
            return s if len(s) <= _TABLE_CELL else s[: _TABLE_CELL - 3] + "..."

        rows = [[cell(r[k]) for k in names] for r in _rows(rel)]
        widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(names)]
        stream.write("  ".join(h.ljust(w) for h, w in zip(names, widths)).rstrip() + "\n")
        stream.write("  ".join("-" * w for w in widths) + "\n")
        for r in rows:
            stream.write("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() + "\n")
        n = len(rows)
        stream.write(f"({n} row{'s' if n != 1 else ''})\n")
    return n


def write_result(rel, out: str | os.PathLike) -> Path:
    """Write a query result to ``out`` atomically: ``.csv`` (header, written by DuckDB), ``.parquet`` or
    ``.json`` (by the suffix). The file appears only when complete."""
    duckdb = _duckdb()
    target = Path(out)
    suffix = target.suffix.lower()
    if suffix not in (".csv", ".parquet", ".json"):
        raise InputError(f"{target}: unknown output type; expected a .csv, .parquet or .json file name")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        if suffix == ".csv":
            rel.write_csv(str(tmp), header=True)
        elif suffix == ".parquet":
            rel.write_parquet(str(tmp), compression="zstd")
        else:
            with open(tmp, "w", encoding="utf-8") as fh:
                print_result(rel, fh, "json")
        os.replace(tmp, target)
    except duckdb.Error as exc:
        raise sql_error(exc) from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    return target

"""CheXmask at scale: stream CheXmask CSVs into Parquet part files and query them with DuckDB.

* :func:`convert_csv` (``cxrkit chexmask to-parquet``): one CSV (plain or gzip) -> ``OUT/<stem>/part-*.parquet``,
  streaming with flat memory, resumable after an interruption, with derived columns (per-structure
  area and bounding box, CTR, QC flag, ``image_index`` for the NIH join); see :mod:`cxrkit.warehouse.convert`.
* :func:`connect` / :func:`run_query` (``cxrkit query``): an in-memory DuckDB connection with a
  ``chexmask`` view over the Parquet files and an optional ``nih`` view of the NIH metadata; see
  :mod:`cxrkit.warehouse.query`.

Both need the optional dependencies pyarrow and duckdb (``pip install 'cxrkit[scale]'``); they are
imported lazily and a missing one raises :class:`~cxrkit.errors.MissingDependencyError` with that hint.
"""

from __future__ import annotations

from cxrkit.warehouse.columns import DERIVED_COLUMNS, runs_geometry
from cxrkit.warehouse.convert import ConvertSummary, convert_csv, dataset_name
from cxrkit.warehouse.query import connect, nih_table, parquet_files, run_query

__all__ = [
    "DERIVED_COLUMNS",
    "ConvertSummary",
    "convert_csv",
    "dataset_name",
    "runs_geometry",
    "connect",
    "nih_table",
    "parquet_files",
    "run_query",
]

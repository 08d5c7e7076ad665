"""``cxrkit query "SQL"``: SQL over CheXmask Parquet files (and the NIH metadata) with DuckDB.

Views: ``chexmask`` over every ``*.parquet`` under each ``--data DIR`` (the ``--out`` folder of
``cxrkit chexmask to-parquet``), and ``nih`` when ``--nih-metadata FILE`` is given (any NIH metadata
format, plain or gzip; one 0/1 column per finding). Column names with spaces need double quotes.

Example::

    cxrkit query --data chexmask_parquet --nih-metadata Data_Entry_2017_v2020.csv.gz \\
      'SELECT c.image_index, c.ctr, c."Dice RCA (Mean)" FROM chexmask c
       JOIN nih n ON n."Image Index" = c.image_index
       WHERE n.Cardiomegaly = 1 AND c.ctr > 0.5 AND c."Dice RCA (Mean)" >= 0.7'

The result goes to stdout (``--format csv`` (default), ``table`` or ``json``) or, with ``--out``, to a
``.csv``, ``.parquet`` or ``.json`` file written atomically. Needs ``pip install 'cxrkit[scale]'``.
"""

from __future__ import annotations

import argparse
import sys

from cxrkit.cli.options import nonneg_int, positive_int


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "query",
        help="SQL (DuckDB) over CheXmask Parquet files, joinable with the NIH metadata",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("sql", metavar="SQL", help="the query; views: chexmask, nih (quote names with spaces: \"Dice RCA (Mean)\")")
    p.add_argument("--data", action="append", default=[], metavar="DIR",
                   help="folder of Parquet files from `cxrkit chexmask to-parquet` (repeatable) -> view chexmask")
    p.add_argument("--nih-metadata", default=None, metavar="FILE",
                   help="NIH metadata CSV (Data_Entry_2017[_v2020].csv[.gz], Kaggle sample_labels.csv) -> view nih")
    p.add_argument("--out", default=None, metavar="FILE", help="write the result to FILE (.csv, .parquet or .json) instead of stdout")
    p.add_argument("--format", choices=("csv", "table", "json"), default="csv", help="stdout format (default csv)")
    p.add_argument("--limit", type=nonneg_int, default=None, metavar="N", help="at most N result rows")
    p.add_argument("--threads", type=positive_int, default=None, metavar="N", help="DuckDB threads (default: all cores)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from cxrkit.errors import UsageError
    from cxrkit.warehouse.query import connect, print_result, run_query, write_result

    if args.limit is not None and args.limit < 0:
        raise UsageError(f"--limit must be >= 0, got {args.limit}")
    con = connect(args.data, args.nih_metadata, threads=args.threads)
    try:
        rel = run_query(con, args.sql, limit=args.limit)
        if rel is None:
            return 0
        if args.out:
            path = write_result(rel, args.out)
            print(f"wrote {path}")
        else:
            print_result(rel, sys.stdout, args.format)
    finally:
        con.close()
    return 0

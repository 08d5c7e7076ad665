"""``cxrkit measure``: cardiothoracic ratio and areas from a CheXmask-format CSV."""

from __future__ import annotations

import argparse
import sys

from cxrkit.cli.options import positive_float


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("measure", help="cardiothoracic ratio and structure areas from CheXmask-format masks")
    p.add_argument("--masks-from", required=True, help="CheXmask-format CSV (plain or gzip; CheXmask's own or cxrkit's)")
    p.add_argument("--out", required=True, help="output CSV: ImageID, ctr, widths, areas (px; mm with --spacing)")
    p.add_argument("--spacing", type=positive_float, nargs="+", metavar="MM",
                   help="pixel spacing in mm of the masks' pixel space: one value, or row and column")
    p.add_argument("--nih-metadata", help="NIH metadata: also print CTR by Cardiomegaly label (ChestX-ray8 rows)")
    p.set_defaults(func=_measure)


def _measure(args: argparse.Namespace) -> int:
    from cxrkit.anatomy.measure import measure_csv, write_measurements
    from cxrkit.errors import UsageError

    spacing = None
    if args.spacing:
        if len(args.spacing) > 2 or any(v <= 0 for v in args.spacing):
            raise UsageError(f"--spacing takes one or two positive values in mm, got {args.spacing}")
        spacing = (args.spacing[0], args.spacing[-1])
    n, bad = write_measurements(measure_csv(args.masks_from, spacing), args.out)
    sys.stdout.write(f"{args.out}: {n} rows, {bad} with an error\n")
    if args.nih_metadata:
        import pandas as pd

        from cxrkit.data.nih import read_metadata

        m = pd.read_csv(args.out)
        meta = read_metadata(args.nih_metadata)[["Image Index", "Cardiomegaly"]]
        joined = m.merge(meta, left_on=m["ImageID"].astype(str).str.split("/").str[-1], right_on="Image Index")
        summary = joined.groupby("Cardiomegaly")["ctr"].describe()[["count", "mean", "std", "50%", "min", "max"]]
        summary.index = ["negative" if v == 0 else "positive" for v in summary.index]
        sys.stdout.write(f"CTR by NIH Cardiomegaly label ({len(joined)} of {n} rows matched):\n"
                         f"{summary.round(3).to_string()}\n")
    return 1 if bad else 0

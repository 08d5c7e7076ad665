"""``cxrkit stats``: dataset statistics from NIH metadata."""

from __future__ import annotations

import argparse
import json
import sys

from cxrkit.cli.options import open_fraction
from cxrkit.data.nih import label_matrix, read_metadata
from cxrkit.data.splits import official_split, patient_split
from cxrkit.stats.labels import cooccurrence_frame, prevalence


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("stats", help="label counts, prevalence, co-occurrence, demographics")
    s = p.add_subparsers(dest="stats_command", metavar="STATS_COMMAND")
    s.required = True

    c = s.add_parser("cooccurrence", help="14x14 co-occurrence matrix (diagonal: finding alone)")
    c.add_argument("--metadata", required=True, help="NIH metadata CSV (2017, v2020 or Kaggle; plain or gzip)")
    c.add_argument("--format", choices=("csv", "json"), default="csv")
    c.set_defaults(func=_cooccurrence)

    v = s.add_parser("prevalence", help="per-finding positives and prevalence")
    v.add_argument("--metadata", required=True)
    v.add_argument("--format", choices=("csv", "json"), default="csv")
    v.set_defaults(func=_prevalence)

    m = s.add_parser("summary", help="all statistics per split as CSV/JSON and plots")
    m.add_argument("--metadata", required=True)
    m.add_argument("--split-dir", help="folder with train_val_list.txt and test_list.txt (adds per-split stats)")
    m.add_argument("--val-fraction", type=open_fraction, default=0.1, help="patients of train_val sent to val")
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--out", required=True, help="output folder")
    m.add_argument("--no-plots", action="store_true")
    m.set_defaults(func=_summary)


def _cooccurrence(args: argparse.Namespace) -> int:
    frame = cooccurrence_frame(label_matrix(read_metadata(args.metadata)))
    if args.format == "csv":
        sys.stdout.write(frame.to_csv(index_label="finding", lineterminator="\n"))
    else:
        json.dump({"findings": list(frame.columns), "matrix": frame.to_numpy().tolist()}, sys.stdout)
        sys.stdout.write("\n")
    return 0


def _prevalence(args: argparse.Namespace) -> int:
    frame = prevalence(label_matrix(read_metadata(args.metadata)))
    if args.format == "csv":
        sys.stdout.write(frame.to_csv(index=False, lineterminator="\n"))
    else:
        json.dump(frame.to_dict(orient="records"), sys.stdout)
        sys.stdout.write("\n")
    return 0


def _summary(args: argparse.Namespace) -> int:
    from cxrkit.stats.summary import write_summary

    df = read_metadata(args.metadata)
    splits = None
    if args.split_dir:
        official = official_split(args.split_dir)
        tv = patient_split(official["train_val"], args.val_fraction, args.seed)
        splits = {"train": tv["train"], "val": tv["val"], "test": official["test"]}
    files = write_summary(df, args.out, splits, plot=not args.no_plots)
    print(f"wrote {len(files)} files to {args.out}")
    return 0

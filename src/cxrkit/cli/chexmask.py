"""``cxrkit chexmask``: inspect, filter, decode and draw CheXmask CSVs (plain or gzip).

Commands (each streams the CSV; nothing loads the whole file):

* ``info CSV``: rows, id column, Dice statistics, image sizes, bad rows.
* ``filter CSV --out OUT``: keep rows with ``Dice RCA (Mean) >= 0.7`` (``--threshold``, ``--by max``);
  ``--structure-threshold heart=0.6`` (repeatable) also requires a QC CSV's per-structure column
  ``Dice RCA (Mean) Heart`` to be >= 0.6.
* ``decode CSV --id ID --out DIR``: write ``DIR/ID_right_lung.png``, ``DIR/ID_left_lung.png``,
  ``DIR/ID_heart.png`` (8-bit 0/255, the row's Height x Width). Characters of ID outside
  ``[A-Za-z0-9._-]`` (e.g. the ``/`` of CheXpert paths) become ``_`` in the file names.
* ``overlay CSV --id ID --out PNG [--image PATH]``: masks and landmarks over the image, or over a
  dark canvas when no image is given.
* ``validate --subsets DIR --out OUT`` (or ``validate --csv CSV --annotations A.csv [B.csv] --out OUT``):
  CheXmask's technical validation: Dice of the HybridGNet masks with two physicians' corrected masks,
  the physicians' agreement, and how well ``Dice RCA (Mean)`` tracks the true Dice, per dataset and
  structure; writes ``per_image.csv``, ``summary.csv``, ``unmatched.csv`` and two plots.
* ``to-parquet CSV [CSV...] --out DIR``: stream CSVs into ``DIR/<name>/part-NNNNN.parquet`` with derived
  columns (area, bounding box, CTR, QC), resumable; query them with ``cxrkit query`` (docs/warehouse.md).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cxrkit.cli.options import fraction, positive_int
from cxrkit.errors import InputError, UsageError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "chexmask",
        help="CheXmask CSVs: info, filter by Dice RCA, decode masks, draw overlays",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="chexmask_command", metavar="SUBCOMMAND")
    sub.required = True

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("csv", metavar="CSV", help="CheXmask CSV, plain or gzip")
        p.add_argument("--id-column", default=None, help="name of the image-id column (default: detected)")

    p = sub.add_parser("info", help="rows, id column, Dice statistics, sizes, bad rows")
    common(p)
    p.add_argument("--threshold", type=fraction, default=0.7, help="count rows with Dice >= this (default 0.7)")
    p.add_argument("--validate", action="store_true", help="also parse every landmark string and RLE (slower)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--no-repair-dice", action="store_true", help="keep Dice Max/Mean as written even when Max < Mean")
    p.set_defaults(func=_info)

    p = sub.add_parser("filter", help="write the rows with Dice RCA >= threshold to a new CSV (streaming, atomic)")
    common(p)
    p.add_argument("--out", required=True, help="output CSV (gzip when it ends with .gz)")
    p.add_argument("--threshold", type=fraction, default=0.7, help="minimum Dice RCA (default 0.7)")
    p.add_argument("--by", choices=("mean", "max"), default="mean", help="Dice RCA column to filter on (default mean)")
    p.add_argument("--lenient", action="store_true", help="skip and count bad rows instead of failing")
    p.add_argument("--no-repair-dice", action="store_true", help="keep Dice Max/Mean as written even when Max < Mean")
    p.add_argument(
        "--structure-threshold", action="append", default=[], metavar="STRUCTURE=T",
        help="also require the per-structure Dice RCA column (of the --by family, e.g. 'Dice RCA (Mean) Heart') "
        ">= T; STRUCTURE is right_lung, left_lung or heart; repeatable (needs a QC CSV with those columns)",
    )
    p.set_defaults(func=_filter)

    p = sub.add_parser("decode", help="write one row's three masks as 0/255 PNGs")
    common(p)
    p.add_argument("--id", required=True, dest="image_id", help="image id (value of the id column)")
    p.add_argument("--out", required=True, help="output folder")
    p.set_defaults(func=_decode)

    p = sub.add_parser("overlay", help="draw one row's masks and landmarks to a PNG")
    common(p)
    p.add_argument("--id", required=True, dest="image_id", help="image id (value of the id column)")
    p.add_argument("--out", required=True, help="output PNG")
    p.add_argument("--image", default=None, help="the radiograph (PNG/JPEG/DICOM); default: a dark canvas")
    p.add_argument("--from-landmarks", action="store_true", help="fill the masks from the landmarks instead of the RLE")
    p.add_argument("--no-landmarks", action="store_true", help="do not draw the landmark points")
    p.add_argument("--alpha", type=fraction, default=0.35, help="mask opacity (default 0.35)")
    p.set_defaults(func=_overlay)

    p = sub.add_parser(
        "validate",
        help="CheXmask's technical validation: HybridGNet vs two physicians, Dice RCA vs true Dice",
        description="Dice of CheXmask's HybridGNet masks with physicians' corrected masks (and between the "
        "physicians), and the Pearson/Spearman correlation of Dice RCA (Mean) with that true Dice, per dataset "
        "and structure. Give --subsets DIR (every <name>.csv with <name>_<physician>_annotations.csv beside it; "
        "<name>_name_mapping.csv is used when present) or --csv FILE --annotations A.csv [B.csv].",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--subsets", metavar="DIR", help="folder with <name>.csv and <name>_<physician>_annotations.csv files")
    src.add_argument("--csv", metavar="FILE", help="one CheXmask CSV (with --annotations)")
    p.add_argument("--annotations", nargs="+", metavar="FILE", default=None,
                   help="with --csv: 1 or 2 physicians' annotation CSVs (the first is physician A)")
    p.add_argument("--dataset", default=None, help="with --csv: dataset name (default: the CSV's file name)")
    p.add_argument("--name-mapping", default=None, metavar="FILE", help="with --csv: a name mapping CSV (Original,New)")
    p.add_argument("--out", required=True, metavar="OUTDIR",
                   help="output folder (per_image.csv, summary.csv, unmatched.csv, plots)")
    p.add_argument("--no-plots", action="store_true", help="do not draw the plots")
    p.add_argument("--strict", action="store_true", help="exit 1 when a physician row matches no CheXmask row")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_validate)

    p = sub.add_parser(
        "to-parquet",
        help="convert CSVs to Parquet part files with derived columns (streaming, resumable)",
        description="Stream CheXmask CSVs (plain or gzip) into DIR/<name>/part-NNNNN.parquet: all CSV columns plus "
        "dataset, image_id, image_index, per-structure area and bounding box (0-based, inclusive), heart/thorax "
        "width, ctr and qc_pass (Dice RCA (Mean) >= 0.7). Each part is written atomically and recorded in "
        "DIR/<name>/_progress.json; rerunning after an interruption resumes after the last finished part, and a "
        "finished source is skipped. Query the result with `cxrkit query`. Needs pip install 'cxrkit[scale]'.",
    )
    p.add_argument("csvs", nargs="+", metavar="CSV", help="CheXmask CSV(s), plain or gzip")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (one subfolder per CSV)")
    p.add_argument("--rows-per-file", type=positive_int, default=50_000, metavar="N", help="rows per Parquet part file (default 50000)")
    p.add_argument("--row-group-size", type=positive_int, default=1024, metavar="N",
                   help="rows held in memory and written per Parquet row group (default 1024)")
    p.add_argument("--lenient", action="store_true",
                   help="record bad rows in DIR/<name>/errors.csv and go on (default: stop at the first, naming file and line)")
    p.add_argument("--id-column", default=None, help="name of the image-id column (default: detected)")
    p.add_argument("--no-repair-dice", action="store_true", help="keep Dice Max/Mean as written even when Max < Mean")
    p.add_argument("--overwrite", action="store_true", help="discard an existing conversion of a CSV and start over")
    p.add_argument("--compression", default="zstd", choices=("zstd", "snappy", "gzip", "none"),
                   help="Parquet compression (default zstd)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_to_parquet)


def _info(args: argparse.Namespace) -> int:
    from cxrkit.data.chexmask import summarize_csv

    s = summarize_csv(
        args.csv, threshold=args.threshold, id_column=args.id_column, validate=args.validate,
        repair_dice=not args.no_repair_dice,
    )
    if args.json:
        print(json.dumps(s, indent=2))
        return 1 if s["bad_rows"] else 0
    print(f"file        {s['file']}")
    print(f"id column   {s['id_column']}")
    print(f"columns     {', '.join(s['columns'])}")
    print(f"rows        {s['rows']} ({s['bad_rows']} bad)")
    for by in ("mean", "max"):
        d = s["dice"][by]
        name = f"Dice RCA ({by.capitalize()})"
        if not d["count"]:
            print(f"{name:16s} none")
            continue
        print(
            f"{name:16s} n={d['count']} min={d['min']:.4f} p05~{d['p05']:.3f} median~{d['median']:.3f} "
            f"mean={d['mean']:.4f} max={d['max']:.4f}; >= {s['threshold']:g}: {s['passing'][by]}"
        )
    if s["dice_swapped"]:
        print(f"dice repair {s['dice_swapped']} rows had Dice Max < Mean; values swapped back")
    sizes = ", ".join(f"{k}: {v}" for k, v in s["sizes"].items())
    print(f"sizes       {sizes} (blank or missing Height/Width = 1024: {s['blank_size']})")
    for err in s["errors"]:
        print(f"bad row     {err}")
    return 1 if s["bad_rows"] else 0


def _filter(args: argparse.Namespace) -> int:
    from cxrkit.data.chexmask import filter_csv, parse_structure_thresholds

    structures = parse_structure_thresholds(args.structure_threshold)
    summary = filter_csv(
        args.csv, args.out, threshold=args.threshold, by=args.by, id_column=args.id_column,
        lenient=args.lenient, repair_dice=not args.no_repair_dice, structure_thresholds=structures,
    )
    for line in summary.lines():
        print(line)
    return 0


def _decode(args: argparse.Namespace) -> int:
    from cxrkit.data.chexmask import find_record, write_masks

    record = find_record(args.csv, args.image_id, id_column=args.id_column)
    paths = write_masks(record, args.out)
    for organ, path in paths.items():
        print(f"{organ}\t{path}")
    return 0


def _overlay(args: argparse.Namespace) -> int:

    from cxrkit.data.chexmask import find_record
    from cxrkit.io.geometry import SquareResize
    from cxrkit.viz import render_overlay, save_png

    if not 0.0 <= args.alpha <= 1.0:
        raise UsageError(f"--alpha {args.alpha} is outside [0, 1]")
    out = Path(args.out)
    if out.suffix.lower() != ".png":
        raise UsageError(f"--out {out}: expected a .png file name")
    record = find_record(args.csv, args.image_id, id_column=args.id_column)
    masks = record.landmark_masks() if args.from_landmarks else record.masks()
    points = None if args.no_landmarks else record.points()
    image = None
    if args.image:
        from cxrkit.io.images import load_gray8

        image = load_gray8(args.image)
        if image.shape != (record.height, record.width):
            if (record.height, record.width) != (1024, 1024):
                raise InputError(
                    f"{args.image}: image is {image.shape[1]}x{image.shape[0]} (w x h) but the row's masks are "
                    f"{record.width}x{record.height}; only rows in the 1024 space can be mapped to another size"
                )
            # The row is in CheXmask's 1024 space: map masks and points back to the image's pixels.
            tf = SquareResize(image.shape[0], image.shape[1], 1024)
            masks = {k: tf.mask_to_original(v) for k, v in masks.items()}
            if points is not None:
                points = tf.points_to_original(points)
    canvas = render_overlay(masks, points, image, alpha=args.alpha)
    save_png(out, canvas)
    print(out)
    return 0


def _validate(args: argparse.Namespace) -> int:
    from cxrkit.benchmarks.chexmask_validation import format_summary, validate_chexmask

    if args.csv is not None and not args.annotations:
        raise UsageError("--csv needs --annotations FILE [FILE] (the physicians' annotation CSVs)")
    if args.subsets is not None and (args.annotations or args.dataset or args.name_mapping):
        raise UsageError("--annotations, --dataset and --name-mapping go with --csv, not --subsets")
    result = validate_chexmask(
        args.subsets if args.subsets is not None else args.csv,
        annotations=args.annotations, dataset=args.dataset, name_mapping=args.name_mapping,
        out=args.out, plots=not args.no_plots, progress=not args.quiet,
    )
    counts = result.matched_images()
    print("matched images: " + ", ".join(f"{k} {v}" for k, v in counts.items()) + f" (total {sum(counts.values())})")
    print()
    print(format_summary(result.summary))
    print()
    for u in result.unmatched.itertuples(index=False):
        print(f"unmatched   {u.file}:{u.line}: physician {u.physician}'s row {u.image_id!r}: {u.reason}")
    if len(result.unmatched):
        print(f"{len(result.unmatched)} physician rows matched no CheXmask row (listed in {result.outputs['unmatched']})")
    for name, path in result.outputs.items():
        print(f"wrote {name:10s} {path}")
    return 1 if args.strict and len(result.unmatched) else 0


def _to_parquet(args: argparse.Namespace) -> int:
    from cxrkit.warehouse.convert import convert_csv, dataset_name

    names: dict[str, str] = {}
    for path in args.csvs:
        name = dataset_name(path)
        if name in names:
            raise UsageError(f"{path} and {names[name]} would both be written to {Path(args.out) / name}; convert them separately")
        names[name] = path
    for path in args.csvs:
        summary = convert_csv(
            path, args.out, rows_per_file=args.rows_per_file, row_group_size=args.row_group_size,
            lenient=args.lenient, repair_dice=not args.no_repair_dice, id_column=args.id_column,
            overwrite=args.overwrite, compression=args.compression, progress=not args.quiet,
        )
        print(summary.line())
    return 0

"""``cxrkit segment`` (images -> CheXmask-format CSV) and ``cxrkit segmentation train``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cxrkit.cli.options import (
    add_device_options,
    add_id_style_option,
    add_model_option,
    add_precision_option,
    model_device,
    nonneg_int,
    positive_float,
    positive_int,
)
from cxrkit.errors import InputError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("segment", help="lungs + heart landmarks and masks in CheXmask's CSV layout",
                       description="Image identity (the ID column, resume, de-duplication) is the path relative to "
                                   "the input root: the folder given, or the common parent of the files given.")
    p.add_argument("images", nargs="+", help="PNG/JPEG/DICOM files or folders (searched recursively)")
    add_model_option(p, "landmark model", "hybridgnet (shipped)")
    p.add_argument("--out", required=True, help="output CSV (CheXmask columns); an existing one is resumed")
    p.add_argument("--masks", help="also write DIR/<id>_{right_lung,left_lung,heart}.png")
    add_id_style_option(p)
    p.add_argument("--qc", action="store_true", help="fill the Dice RCA columns by RCA (see cxrkit qc)")
    p.add_argument("--batch-size", type=positive_int, default=16, help="images per forward pass (default 16)")
    add_device_options(p)
    add_precision_option(p, "segmentation")
    from cxrkit.cli.qc import add_rca_options

    add_rca_options(p)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_segment)

    s = sub.add_parser("segmentation", help="train segmentation models")
    ss = s.add_subparsers(dest="segmentation_command", metavar="SEGMENTATION_COMMAND")
    ss.required = True
    t = ss.add_parser("train", help="train the landmark model on JSRT (resumes from OUT/last.pt)")
    t.add_argument("--jsrt", help="JSRT folder with images/, masks/, split.csv (default: <shared data>/segmentation/jsrt)")
    t.add_argument("--landmarks", help="landmark folder with RL/, LL/, H/ (default: <shared data>/landmarks/landmarks)")
    t.add_argument("--out", required=True)
    t.add_argument("--model", default="hybridgnet", choices=("hybridgnet", "unet"),
                   help="hybridgnet (landmarks) or unet (pixel baseline, BCE + soft Dice)")
    t.add_argument("--input-size", type=positive_int, default=256)
    t.add_argument("--steps", type=positive_int, default=6000)
    t.add_argument("--batch-size", type=positive_int, default=8)
    t.add_argument("--lr", type=positive_float, default=1e-3)
    t.add_argument("--eval-every", type=positive_int, default=250)
    t.add_argument("--save-every", type=nonneg_int, default=0, metavar="N",
                   help="also keep weights-only snapshots OUT/checkpoints/step-NNNNN.pt every N steps (default 0: none)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--threads", type=positive_int, help="torch CPU threads (leave cores for other work)")
    t.add_argument("--quiet", action="store_true")
    t.set_defaults(func=_train)

    e = ss.add_parser("evaluate", help="Dice, HD95, contour error, plausibility on JSRT, with perturbations")
    e.add_argument("--model", help="cxrkit checkpoint (default: the shipped hybridgnet weights)")
    e.add_argument("--jsrt", help="JSRT folder (default: <shared data>/segmentation/jsrt)")
    e.add_argument("--landmarks", help="landmark folder (default: <shared data>/landmarks/landmarks)")
    e.add_argument("--split", default="test", choices=("train", "val", "test"))
    e.add_argument("--perturbations", nargs="+", help="subset of: none noise occlusion rotate+15 rotate-15 low_contrast")
    e.add_argument("--out", required=True, help="folder: per_image.csv, summary.csv, dice_boxplot.png")
    e.add_argument("--quiet", action="store_true")
    e.add_argument("--worst", type=nonneg_int, default=3, help="overlays of the N worst clean images and of each "
                   "perturbation's worst image (0: none)")
    e.add_argument("--clean-up", action="store_true",
                   help="score pixel models' masks after the standard clean-up (largest connected component per "
                   "structure, holes filled); landmark models are unaffected. The report counts implausible masks "
                   "before (implausible_raw) and after (implausible) it")
    e.set_defaults(func=_evaluate)

    c = ss.add_parser("compare", help="robustness of two evaluated models: paired Dice drops with bootstrap CIs")
    c.add_argument("a", help="folder written by `cxrkit segmentation evaluate` (model A)")
    c.add_argument("b", help="the same for model B (same split and perturbations)")
    c.add_argument("--names", nargs=2, default=("a", "b"), metavar=("A", "B"))
    c.add_argument("--out", help="also write the table as CSV")
    c.set_defaults(func=_compare)


def _segment(args: argparse.Namespace) -> int:
    from cxrkit.io.inputs import collect_images
    from cxrkit.io.outputs import check_out_dir, check_out_file
    from cxrkit.models import load_model
    from cxrkit.segmentation.infer import segment_files

    check_out_file(args.out)
    if args.masks:
        check_out_dir(args.masks, "--masks")
    _root, inputs = collect_images(args.images)
    model = load_model(args.model, default="hybridgnet", task="segmentation", needs="landmarks", device=args.device)
    qc = None
    if args.qc:
        from cxrkit.cli.qc import build_estimator

        qc = build_estimator(args, device=model_device(model))
    written, skipped, failed = segment_files(model, inputs, args.out, args.masks, progress=not args.quiet, qc=qc,
                                             batch_size=args.batch_size, id_style=args.id_style, workers=args.workers,
                                             precision=args.precision)
    sys.stdout.write(f"{args.out}: {written} segmented, {skipped} already there, {failed} failed"
                     + (f" (see {Path(args.out).with_suffix('.errors.csv')})" if failed else "") + "\n")
    return 1 if failed else 0


def _train(args: argparse.Namespace) -> int:
    import json

    from cxrkit.cli.shared import find_shared
    from cxrkit.segmentation.train import SegTrainConfig, train_segmentation

    jsrt = args.jsrt or find_shared("segmentation/jsrt", "pass --jsrt FOLDER")
    lms = args.landmarks or find_shared("landmarks/landmarks", "pass --landmarks FOLDER")
    cfg = SegTrainConfig(model=args.model, input_size=args.input_size, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                         eval_every=args.eval_every, save_every=args.save_every, seed=args.seed,
                         threads=args.threads)
    summary = train_segmentation(cfg, jsrt, lms, args.out, progress=not args.quiet)
    sys.stdout.write(json.dumps(summary, indent=2) + "\n")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from cxrkit.cli.shared import find_shared
    from cxrkit.models import create_model, load_checkpoint
    from cxrkit.segmentation.evaluate import (
        PERTURBATIONS,
        evaluate_checkpoint,
        write_report,
    )

    model = load_checkpoint(args.model) if args.model else create_model("hybridgnet", pretrained=True)
    jsrt = args.jsrt or find_shared("segmentation/jsrt", "pass --jsrt FOLDER")
    lms = args.landmarks or find_shared("landmarks/landmarks", "pass --landmarks FOLDER")
    kinds = tuple(args.perturbations) if args.perturbations else PERTURBATIONS
    per_image = evaluate_checkpoint(model, jsrt, lms, args.split, kinds, progress=not args.quiet,
                                    clean_up=args.clean_up)
    summary = write_report(per_image, args.out)
    if args.worst:
        from cxrkit.segmentation.evaluate import worst_case_overlays

        worst_case_overlays(model, jsrt, per_image, args.out, n=args.worst, clean_up=args.clean_up)
    sys.stdout.write(summary.to_string(index=False, float_format=lambda v: f"{v:.4f}") + "\n")
    applied = bool(per_image["clean_up"].any())
    sys.stdout.write(f"implausible masks: {int(summary['implausible_raw'].sum())} of {int(summary['n'].sum())} as "
                     f"predicted, {int(summary['implausible'].sum())} "
                     + ("after the clean-up\n" if applied else "scored (no clean-up applied)\n"))
    return 0


def _compare(args: argparse.Namespace) -> int:
    import pandas as pd

    from cxrkit.errors import UsageError
    from cxrkit.io.atomic import write_text
    from cxrkit.segmentation.evaluate import compare_drops

    tables = []
    for d in (args.a, args.b):
        p = Path(d) / "per_image.csv"
        if not p.is_file():
            raise UsageError(f"{p}: missing; run `cxrkit segmentation evaluate --out {d}` first")
        tables.append(pd.read_csv(p))
    if set(tables[0]["image"]) != set(tables[1]["image"]):
        raise InputError(f"{args.a} and {args.b} were evaluated on different images")
    table = compare_drops(tables[0], tables[1], tuple(args.names))
    if args.out:
        write_text(args.out, table.to_csv(index=False, float_format="%.5f", lineterminator="\n"))
    sys.stdout.write(table.to_string(index=False, float_format=lambda v: f"{v:.4f}") + "\n")
    return 0

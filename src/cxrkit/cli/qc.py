"""``cxrkit qc`` (RCA quality estimates) and ``cxrkit registration train`` (the learned registration)."""

from __future__ import annotations

import argparse
import sys


def add_rca_options(p: argparse.ArgumentParser) -> None:
    """Options shared by every command that runs RCA (``qc``, ``segment --qc``)."""
    p.add_argument("--reference", help="reference set folder: JSRT (images/, masks/, split.csv; the documented 16 "
                                       "training ids are used) or your own images/ + masks/{right_lung,left_lung,"
                                       "heart}/ (default: $CXRKIT_RCA_REFERENCE or the shared JSRT folder)")
    p.add_argument("--rca-method", choices=("learned", "iterative"), default="learned",
                   help="registration: the learned network (default, fast) or classical iterative optimization")
    p.add_argument("--registration", help="rca_regnet checkpoint (default: the weights shipped in the package)")


def rca_kwargs(args: argparse.Namespace) -> dict:
    """The :func:`cxrkit.qc.rca.make_estimator` arguments of :func:`add_rca_options`."""
    return {"reference": args.reference, "method": args.rca_method, "registration": args.registration}


def build_estimator(args: argparse.Namespace):
    from cxrkit.qc.rca import make_estimator

    return make_estimator(**rca_kwargs(args))


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("qc", help="estimate each segmentation's Dice by Reverse Classification Accuracy (RCA)")
    p.add_argument("images", nargs="+", help="image files (PNG/JPEG/DICOM) or folders")
    p.add_argument("--masks-from", required=True, help="CheXmask-format CSV with a row per image (ImageID = file name)")
    p.add_argument("--out", required=True, help="output CSV: ImageID, Dice RCA (Mean), Dice RCA (Max), per structure")
    p.add_argument("--annotated", metavar="CSV", help="also write the scored SEG.csv rows with the Dice RCA columns "
                   "filled and per-structure columns appended (input for cxrkit chexmask filter --structure-threshold)")
    add_rca_options(p)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_qc)

    r = sub.add_parser("registration", help="the learned registration network used by RCA")
    rs = r.add_subparsers(dest="registration_command", required=True)
    t = rs.add_parser("train", help="train rca_regnet (local NCC + smoothness; optional soft-Dice on labelled pairs), resumable")
    t.add_argument("--out", required=True, help="run folder: last.pt, best.pt, metrics.csv")
    t.add_argument("--jsrt", help="JSRT folder: its training split is the fixed pool and part of the moving pool "
                                  "(default: <shared data>/segmentation/jsrt)")
    t.add_argument("--images", nargs="*", default=None,
                   help="more radiographs (files or folders) for the moving pool (default: <shared data>/nih/images)")
    t.add_argument("--steps", type=int, default=2000)
    t.add_argument("--batch-size", type=int, default=8)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--mask-weight", type=float, default=1.0,
                   help="weight of the auxiliary soft-Dice loss on labelled pairs of the JSRT training split "
                        "(default 1, as the shipped weights; 0: unsupervised, images only)")
    t.add_argument("--threads", type=int)
    t.add_argument("--quiet", action="store_true")
    t.set_defaults(func=_train)


def _qc(args: argparse.Namespace) -> int:
    from cxrkit.io.images import expand_image_paths
    from cxrkit.qc.files import qc_files, write_qc_csv

    estimator = build_estimator(args)
    rows = qc_files(estimator, expand_image_paths(args.images), args.masks_from, progress=not args.quiet,
                    annotated=args.annotated)
    write_qc_csv(rows, args.out)
    bad = sum(1 for r in rows if r["error"])
    sys.stdout.write(f"{args.out}: {len(rows)} images, {bad} with an error "
                     f"(RCA: {args.rca_method}, {len(estimator.reference)} references)\n")
    return 1 if bad else 0


def _train(args: argparse.Namespace) -> int:
    from cxrkit.data.jsrt import read_jsrt
    from cxrkit.data.shared import find_shared
    from cxrkit.io.images import expand_image_paths
    from cxrkit.qc.train_registration import RegTrainConfig, train_registration

    from cxrkit.models import default_card
    from cxrkit.qc.reference import load_reference

    jsrt = args.jsrt or find_shared("segmentation/jsrt", "pass --jsrt")
    size = default_card("rca_regnet").input_size
    fixed = load_reference(jsrt, ids=tuple(c.id for c in read_jsrt(jsrt, split="train")), image_size=size,
                           mask_size=size)
    extra = args.images if args.images is not None else [str(find_shared("nih/images", "pass --images"))]
    moving = expand_image_paths(extra) if extra else []
    cfg = RegTrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed, threads=args.threads,
                         mask_weight=args.mask_weight)
    summary = train_registration(cfg, fixed, moving, args.out, progress=not args.quiet)
    sys.stdout.write(f"{args.out}: {summary['steps']} steps, validation local NCC {summary['val_local_ncc']:.4f}, "
                     f"weights {summary['best']}\n")
    return 0

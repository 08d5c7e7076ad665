"""``cxrkit qc`` (RCA quality estimates), ``cxrkit qc-reference build|show`` (RCA reference sets) and
``cxrkit registration train`` (the learned registration)."""

from __future__ import annotations

import argparse
import sys

from cxrkit.cli.options import (
    add_device_options,
    nonneg_float,
    positive_float,
    positive_int,
)


def add_rca_options(p: argparse.ArgumentParser) -> None:
    """Options shared by every command that runs RCA (``qc``, ``segment --qc``)."""
    p.add_argument("--reference", help="RCA reference set: 'shipped' (the NIH set in the package), a JSRT folder "
                                       "(images/, masks/, split.csv; the documented 16 training ids are used), your "
                                       "own images/ + masks/{right_lung,left_lung,heart}/, or a file from `cxrkit "
                                       "qc-reference build` (default: $CXRKIT_RCA_REFERENCE, else 'shipped')")
    p.add_argument("--rca-method", choices=("learned", "iterative"), default="learned",
                   help="registration: the learned network (default, fast) or classical iterative optimization")
    p.add_argument("--registration", help="rca_regnet checkpoint (default: the weights shipped in the package)")
    p.add_argument("--calibration", metavar="JSON", help="RCA calibration fitted for this reference set and method "
                   "(`cxrkit bench rca --split val` writes one; default: the shipped one that fits, if any)")


def rca_kwargs(args: argparse.Namespace) -> dict:
    """The :func:`cxrkit.qc.rca.make_estimator` arguments of :func:`add_rca_options` (plain values)."""
    return {"reference": args.reference, "method": args.rca_method, "registration": args.registration,
            "calibration": getattr(args, "calibration", None) or "shipped"}


def build_estimator(args: argparse.Namespace, device="cpu"):
    from cxrkit.qc.rca import make_estimator

    return make_estimator(**rca_kwargs(args), device=device)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("qc", help="estimate each segmentation's Dice by Reverse Classification Accuracy (RCA)")
    p.add_argument("images", nargs="+", help="image files (PNG/JPEG/DICOM) or folders")
    p.add_argument("--masks-from", required=True, help="CheXmask-format CSV with a row per image: its ID is the image's "
                   "path relative to the input root, or as `segment --id-style` wrote it")
    p.add_argument("--out", required=True, help="output CSV: ImageID, Dice RCA (Mean), Dice RCA (Max), per structure")
    p.add_argument("--annotated", metavar="CSV", help="also write the scored SEG.csv rows with the Dice RCA columns "
                   "filled and per-structure columns appended (input for cxrkit chexmask filter --structure-threshold)")
    add_rca_options(p)
    p.add_argument("--batch-size", type=positive_int, default=8, help="images registered at once (default 8)")
    add_device_options(p)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_qc)

    ref = sub.add_parser("qc-reference", help="RCA reference sets: build one from images with a landmark model, "
                         "or show a set's card")
    rs_ = ref.add_subparsers(dest="qc_reference_command", required=True)
    b = rs_.add_parser("build", help="segment images with hybridgnet and store them as a compact reference file",
                       description="Writes OUT.npz (images at 128 px, masks at 256 px as packed bits, in CheXmask's "
                       "square space) and its card OUT.json (provenance, sha256). Rebuild the shipped set with "
                       "`cxrkit qc-reference build ../shared/data/nih/images --like "
                       "src/cxrkit/qc/data/reference_nih.json --out reference_nih.npz`.")
    b.add_argument("images", nargs="+", help="image files or folders; with --ids / --like only those ids (file stems)")
    b.add_argument("--out", required=True, help="reference file to write (.npz; its card goes beside it as .json)")
    b.add_argument("--ids", nargs="+", help="the image ids (file stems) to use, in this order (default: all images)")
    b.add_argument("--like", metavar="CARD", help="an existing card: take its ids and descriptive fields (selection, "
                   "license, intended use) and report whether the rebuilt content is identical")
    b.add_argument("--model", help="landmark checkpoint that draws the masks (default: the shipped hybridgnet)")
    b.add_argument("--name", help="the set's name in its card (default: the output file's stem)")
    b.set_defaults(func=_reference_build)
    sh = rs_.add_parser("show", help="print a reference file's card (default: the shipped set's), after checking it")
    sh.add_argument("file", nargs="?", help="reference file (.npz with its .json card; default: the shipped set)")
    sh.set_defaults(func=_reference_show)

    r = sub.add_parser("registration", help="the learned registration network used by RCA")
    rs = r.add_subparsers(dest="registration_command", required=True)
    t = rs.add_parser("train", help="train rca_regnet (local NCC + smoothness; optional soft-Dice on labelled pairs), resumable")
    t.add_argument("--out", required=True, help="run folder: last.pt, best.pt, metrics.csv")
    t.add_argument("--jsrt", help="JSRT folder: its training split is the fixed pool and part of the moving pool "
                                  "(default: <shared data>/segmentation/jsrt)")
    t.add_argument("--images", nargs="*", default=None,
                   help="more radiographs (files or folders) for the moving pool (default: <shared data>/nih/images)")
    t.add_argument("--steps", type=positive_int, default=2000)
    t.add_argument("--batch-size", type=positive_int, default=8)
    t.add_argument("--lr", type=positive_float, default=1e-3)
    t.add_argument("--eval-every", type=positive_int, default=250,
                   help="steps between evaluations; each writes last.pt (resume point) and metrics.csv (default 250)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--mask-weight", type=nonneg_float, default=1.0,
                   help="weight of the auxiliary soft-Dice loss on labelled pairs of the JSRT training split "
                        "(default 1, as the shipped weights; 0: unsupervised, images only)")
    t.add_argument("--threads", type=positive_int)
    t.add_argument("--device", default="auto", metavar="auto|cpu|cuda[:N]",
                   help="where to train (default auto: CUDA when present)")
    t.add_argument("--quiet", action="store_true")
    t.set_defaults(func=_train)


def _qc(args: argparse.Namespace) -> int:
    from cxrkit.io.inputs import collect_images
    from cxrkit.io.outputs import check_out_file
    from cxrkit.models.device import resolve_device
    from cxrkit.qc.run import qc_files, write_qc_csv

    check_out_file(args.out)
    if args.annotated:
        check_out_file(args.annotated, "--annotated")
    _root, inputs = collect_images(args.images)
    estimator = build_estimator(args, device=resolve_device(args.device))
    rows = qc_files(estimator, inputs, args.masks_from, progress=not args.quiet, annotated=args.annotated,
                    workers=args.workers, batch_size=args.batch_size)
    write_qc_csv(rows, args.out)
    bad = sum(1 for r in rows if r["error"])
    sys.stdout.write(f"{args.out}: {len(rows)} images, {bad} with an error "
                     f"(RCA: {args.rca_method}, {len(estimator.reference)} references of "
                     f"{estimator.reference.source})\n")
    return 1 if bad else 0


def _reference_build(args: argparse.Namespace) -> int:
    from pathlib import Path

    from cxrkit.errors import InputError, UsageError
    from cxrkit.io.images import expand_image_paths
    from cxrkit.io.outputs import check_out_file
    from cxrkit.models import create_model, load_checkpoint
    from cxrkit.qc.reference import build_reference, read_card, save_reference_file

    out = check_out_file(args.out)
    if out.suffix != ".npz":
        raise UsageError(f"--out {args.out}: a reference file ends in .npz")
    like = read_card(args.like) if args.like else {}
    if args.ids and like:
        raise UsageError("give --ids or --like, not both")
    ids = args.ids or like.get("ids")
    paths = expand_image_paths(args.images)
    if ids:
        by_id: dict[str, Path] = {}
        for p in paths:
            if p.stem in by_id and p.stem in ids:
                raise InputError(f"{p}: id {p.stem!r} names two files ({by_id[p.stem]}); pass the files themselves")
            by_id.setdefault(p.stem, p)
        missing = [i for i in ids if i not in by_id]
        if missing:
            raise InputError(f"{args.images[0]}: no image for id {missing[0]!r} ({len(missing)} of {len(ids)} missing)")
        paths = [by_id[i] for i in ids]
    model = load_checkpoint(args.model) if args.model else create_model("hybridgnet", pretrained=True)
    sha = model.card.weights_sha256
    want = like.get("masks", {}).get("weights_sha256")
    if want and want != sha:
        sys.stderr.write(f"note: {args.like} was built with {like['masks'].get('model')} weights {want[:12]}, "
                         f"this model's are {str(sha)[:12]}: the masks will differ\n")
    ref, sources = build_reference(paths, model)
    keep = {k: v for k, v in like.items() if k not in ("images", "masks", "file", "sha256", "content_sha256", "count",
                                                       "ids", "structures", "image_size", "mask_size", "space",
                                                       "format")}
    card = {"name": args.name or like.get("name") or out.stem, **keep,
            "images": {**like.get("images", {}), "files": sources},
            "masks": {**like.get("masks", {}), "model": model.card.name, "weights_sha256": sha,
                      "how": "the model's 120 landmarks rounded to integer pixels and each contour filled at the "
                             "original size (exactly what `cxrkit segment` writes), then moved to the square space"}}
    card.setdefault("build_command", f"cxrkit qc-reference build {' '.join(args.images)} --ids {' '.join(ref.ids)} "
                                     f"--out {out.name}")
    written = save_reference_file(ref, out, card)
    same, differs = "", False
    if like.get("content_sha256"):  # a card of a built set: say whether the rebuild reproduced it
        differs = written["content_sha256"] != like["content_sha256"]
        same = (", content DIFFERS from " if differs else ", identical content to ") + args.like
    sys.stdout.write(f"{out}: {len(ref)} references, sha256 {written['sha256']}, content sha256 "
                     f"{written['content_sha256'][:16]}{same}\n")
    return 1 if differs else 0


def _reference_show(args: argparse.Namespace) -> int:
    import json

    from cxrkit.qc.reference import (
        load_reference_file,
        read_card,
        shipped_reference_path,
    )

    path = args.file or shipped_reference_path()
    ref = load_reference_file(path)  # checks the sha256, ids and sizes against the card
    card = read_card(path)
    sys.stdout.write(json.dumps(card, indent=2) + "\n")
    sys.stdout.write(f"{path}: {len(ref)} references, checked against its card (sha256 {card['sha256'][:16]})\n")
    return 0


def _train(args: argparse.Namespace) -> int:
    from cxrkit.cli.shared import find_shared
    from cxrkit.data.jsrt import read_jsrt
    from cxrkit.io.images import expand_image_paths
    from cxrkit.models import default_card
    from cxrkit.qc.reference import load_reference
    from cxrkit.qc.train_registration import RegTrainConfig, train_registration

    jsrt = args.jsrt or find_shared("segmentation/jsrt", "pass --jsrt")
    size = default_card("rca_regnet").input_size
    fixed = load_reference(jsrt, ids=tuple(c.id for c in read_jsrt(jsrt, split="train")), image_size=size,
                           mask_size=size)
    extra = args.images if args.images is not None else [str(find_shared("nih/images", "pass --images"))]
    moving = expand_image_paths(extra) if extra else []
    cfg = RegTrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed, threads=args.threads,
                         mask_weight=args.mask_weight, eval_every=args.eval_every)
    summary = train_registration(cfg, fixed, moving, args.out, progress=not args.quiet, device=args.device)
    sys.stdout.write(f"{args.out}: {summary['steps']} steps, validation local NCC {summary['val_local_ncc']:.4f}, "
                     f"weights {summary['best']}\n")
    return 0
    return 0

"""``cxrkit bench lesions`` (the lesion-insertion benchmark) and ``cxrkit bench rca`` (does RCA measure quality?)."""

from __future__ import annotations

import argparse
import json
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="end-to-end benchmarks")
    s = p.add_subparsers(dest="bench_command", metavar="BENCH_COMMAND")
    s.required = True
    les = s.add_parser("lesions", help="insert synthetic findings into real NIH images, train, score AUROC + IoBB",
                       description="Writes DIR/model.pt, DIR/metrics.json, DIR/test_predictions.csv, plots.")
    les.add_argument("--out", required=True)
    les.add_argument("--images", help="folder of real NIH PNGs (default: <shared data>/nih/images)")
    les.add_argument("--metadata", help="NIH metadata, to leave out images with real Effusion/Mass/Nodule "
                     "(default: <shared data>/nih/Data_Entry_2017_v2020.csv.gz if present; 'none' to skip)")
    les.add_argument("--model", default="resnet_lite")
    les.add_argument("--input-size", type=int, default=256)
    les.add_argument("--epochs", type=int, default=20)
    les.add_argument("--repeats", type=int, default=10, help="synthetic variants per training image")
    les.add_argument("--batch-size", type=int, default=16)
    les.add_argument("--lr", type=float, default=1e-3)
    les.add_argument("--seed", type=int, default=0)
    les.add_argument("--workers", type=int, default=2)
    les.add_argument("--box-method", default="auto",
                     help="heatmap -> box setting: 'auto' (best on the validation images) or one of paper, adaptive, "
                     "adaptive@0.7, adaptive@0.8, adaptive@0.9")
    les.add_argument("--max-images", type=int, help="use only the first N images (smoke runs)")
    les.add_argument("--lse-r", metavar="R|FINDING=R,...",
                     help="LSE pooling sharpness r (default: the model card's; lower is closer to average pooling, "
                     "higher to max pooling): one number, or per finding e.g. 'Effusion=4,Mass=4' (others keep 10)")
    les.add_argument("--quiet", action="store_true")
    les.set_defaults(func=_lesions)

    comp = s.add_parser("lesions-compose", help="per finding, pick the best of several `bench lesions` runs on "
                        "validation; score the combined model on test",
                        description="Writes DIR/model.pt (a per-finding ensemble that `cxrkit predict` loads), "
                        "DIR/metrics.json, DIR/test_predictions.csv, plots. The runs must share their data settings.")
    comp.add_argument("runs", nargs="+", metavar="RUN", help="finished `cxrkit bench lesions --out RUN` folders")
    comp.add_argument("--out", required=True)
    comp.add_argument("--images", help="the runs' image folder (default: <shared data>/nih/images)")
    comp.add_argument("--metadata", help="as for `bench lesions` (default: the shared v2020 metadata; 'none' to skip)")
    comp.add_argument("--quiet", action="store_true")
    comp.set_defaults(func=_lesions_compose)

    rca = s.add_parser("rca", help="RCA vs true Dice on JSRT segmentations of known, varied quality",
                       description="Writes DIR/per_case.csv, DIR/summary.csv, DIR/rca_vs_true_<method>.png.")
    rca.add_argument("--out", required=True)
    rca.add_argument("--jsrt", help="JSRT folder (default: <shared data>/segmentation/jsrt)")
    rca.add_argument("--split", default="test", choices=("val", "test"))
    rca.add_argument("--methods", nargs="+", default=["learned", "iterative"], choices=("learned", "iterative"))
    rca.add_argument("--model", action="append", default=[], metavar="NAME=CKPT",
                     help="segmentation model whose outputs are scored (repeatable; 'shipped' = the packaged "
                          "hybridgnet). Default: shipped")
    rca.add_argument("--reference", help="reference set folder (default: the JSRT folder's 16 training ids)")
    rca.add_argument("--registration", help="rca_regnet checkpoint (default: shipped weights)")
    rca.add_argument("--calibration", nargs="*", metavar="JSON",
                     help="calibration files to apply (one per method; default: the shipped ones when they fit; "
                          "give none to score uncalibrated)")
    rca.add_argument("--max-images", type=int, help="only the first N images of the split (smoke runs)")
    rca.add_argument("--seed", type=int, default=0)
    rca.add_argument("--quiet", action="store_true")
    rca.set_defaults(func=_rca)


def _lesions(args: argparse.Namespace) -> int:
    from cxrkit.classification.lesion_bench import LesionBenchConfig, parse_lse_r, run_lesion_benchmark
    from cxrkit.data.shared import find_shared

    lse_r = parse_lse_r(args.lse_r) if args.lse_r is not None else None
    images = args.images or find_shared("nih/images", "pass --images FOLDER of NIH PNGs")
    metadata = _bench_metadata(args.metadata)
    cfg = LesionBenchConfig(model=args.model, input_size=args.input_size, epochs=args.epochs, repeats=args.repeats,
                            batch_size=args.batch_size, lr=args.lr, seed=args.seed, num_workers=args.workers,
                            box_method=args.box_method, max_images=args.max_images, lse_r=lse_r)
    m = run_lesion_benchmark(images, args.out, cfg, metadata=metadata, progress=not args.quiet)
    _print_brief(m, train_seconds=m["train_seconds"])
    return 0


def _bench_metadata(given: str | None) -> str | None:
    """NIH metadata for the lesion benchmark: given, 'none', or the shared v2020 file when present."""
    from cxrkit.data.shared import find_shared

    if given == "none":
        return None
    if given is not None:
        return given
    try:
        return str(find_shared("nih/Data_Entry_2017_v2020.csv.gz", ""))
    except Exception:
        return None


def _print_brief(m: dict, **extra) -> None:
    brief = {"per_finding": {f: {k: round(v, 4) for k, v in d.items() if k in ("auroc", "acc_iobb@0.5", "acc_iou@0.3")}
                             for f, d in m["per_finding"].items()},
             "overall": m["overall"], "box_method": m["box_method"], **extra}
    sys.stdout.write(json.dumps(brief, indent=2) + "\n")


def _lesions_compose(args: argparse.Namespace) -> int:
    from cxrkit.classification.lesion_compose import compose_runs
    from cxrkit.data.shared import find_shared

    images = args.images or find_shared("nih/images", "pass --images FOLDER of NIH PNGs")
    m = compose_runs(args.runs, images, args.out, metadata=_bench_metadata(args.metadata), progress=not args.quiet)
    _print_brief(m, composition=m["composition"]["select"])
    return 0


def _rca(args: argparse.Namespace) -> int:
    from cxrkit.data.shared import find_shared
    from cxrkit.errors import CxrkitError
    from cxrkit.models import create_model
    from cxrkit.models.checkpoint import load_checkpoint
    from cxrkit.qc.rca import Calibration, make_estimator
    from cxrkit.qc.reference import load_reference
    from cxrkit.qc.validation import run_validation

    jsrt = args.jsrt or find_shared("segmentation/jsrt", "pass --jsrt FOLDER")
    reference = load_reference(args.reference or jsrt)
    given = {cal.method: cal for cal in map(Calibration.load, args.calibration or [])}
    estimators = {m: make_estimator(reference, m, args.registration,
                                    given.get(m, "shipped" if args.calibration is None else None))
                  for m in args.methods}
    models = {}
    for item in args.model or ["shipped"]:
        name, _, path = item.partition("=")
        if item == "shipped":
            models["hybridgnet"] = create_model("hybridgnet", pretrained=True)
        elif not path:
            raise CxrkitError(f"--model {item!r}: expected NAME=CHECKPOINT or 'shipped'")
        else:
            models[name] = load_checkpoint(path)
    summary = run_validation(jsrt, estimators, models, args.out, split=args.split, seed=args.seed,
                             max_images=args.max_images, progress=not args.quiet)
    sys.stdout.write(summary.to_string(index=False, float_format=lambda v: f"{v:.4f}") + "\n")
    return 0

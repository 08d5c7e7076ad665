"""``cxrkit bench lesions`` (the lesion-insertion benchmark) and ``cxrkit bench rca`` (does RCA measure quality?)."""

from __future__ import annotations

import argparse
import json
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="end-to-end benchmarks")
    s = p.add_subparsers(dest="bench_command", metavar="BENCH_COMMAND")
    s.required = True
    les = s.add_parser("lesions", help="insert synthetic findings into real NIH images, train, score AUROC, IoBB, IoU",
                       description="Writes DIR/model.pt, DIR/metrics.json, DIR/test_predictions.csv, plots; with "
                       "--seeds K...: DIR/seed-K/ for each and DIR/summary.json (mean, sd, every run).")
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
    les.add_argument("--seed", type=int, default=0, help="training seed; also the data seed unless --data-seed")
    les.add_argument("--seeds", type=int, nargs="+", metavar="K",
                     help="run once per training seed on the same data (DIR/seed-K/) and write DIR/summary.json "
                     "(every run, mean and standard deviation); finished seeds are read, not rerun")
    les.add_argument("--summarize-only", action="store_true",
                     help="with --seeds: run nothing, summarize the seeds that finished into DIR/summary.json")
    les.add_argument("--data-seed", type=int, help="seed of the patient split and the inserted lesions "
                     "(default: --seed; with --seeds: --seed)")
    les.add_argument("--workers", type=int, default=2)
    les.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    les.add_argument("--box-method", default="auto-per-finding",
                     help="heatmap -> box rule: 'auto' (the rule with the best mean IoU on the validation images), "
                     "'auto-per-finding' (per finding, the best on its validation positives) or a candidate name: "
                     "paper, paper@60, t<T>-<each|largest|union> for T in 0.1 ... 0.9 (e.g. t0.3-each)")
    les.add_argument("--cam-flips", default="hv", choices=("none", "h", "hv"),
                     help="average the class maps of the left-right (h) or also up-down (hv, default) mirrored input, "
                     "in training and evaluation (one network pass per view: hv trains about 4x slower than none)")
    les.add_argument("--no-align-views", action="store_true",
                     help="with --cam-flips: do not estimate and store the views' displacement (cam_view_shift)")
    les.add_argument("--cam-flips-eval-only", action="store_true",
                     help="with --cam-flips: train on single views, average the mirrored maps only when evaluating")
    les.add_argument("--cam-stride", type=int, default=8, choices=(8, 4),
                     help="resnet_lite's class-map stride: 8 (default) or 4 (layer3 at layer2's resolution)")
    les.add_argument("--dilate", action="store_true",
                     help="resnet_lite: dilate the convolutions after each removed stride (DeepLab-style)")
    les.add_argument("--base-cache", metavar="NPZ",
                     help="decoded images and lung fields: read if the file exists (then --images is not needed), "
                     "else written")
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

    rca = s.add_parser("rca", help="RCA vs true Dice on JSRT segmentations of known, varied quality, per reference set",
                       description="Scores the same segmentations against each reference set in one run and writes "
                       "DIR/per_case.csv and DIR/summary.csv (column reference_set), DIR/comparison.csv (each set's "
                       "Pearson r and MAE beside the JSRT set's), DIR/calibration_<set>_<method>.json and "
                       "DIR/rca_vs_true_<set>_<method>[_calibrated].png.")
    rca.add_argument("--out", required=True)
    rca.add_argument("--jsrt", help="JSRT folder (default: <shared data>/segmentation/jsrt)")
    rca.add_argument("--split", default="test", choices=("val", "test"))
    rca.add_argument("--methods", nargs="+", default=["learned", "iterative"], choices=("learned", "iterative"))
    rca.add_argument("--model", action="append", default=[], metavar="NAME=CKPT",
                     help="segmentation model whose outputs are scored (repeatable; 'shipped' = the packaged "
                          "hybridgnet). Default: shipped")
    rca.add_argument("--reference-sets", nargs="+", default=["shipped", "jsrt"], metavar="SET",
                     help="reference sets scored side by side: 'shipped' (the NIH set in the package), 'jsrt' (the "
                          "JSRT folder's 16 training ids, the expert set) or NAME=PATH (a folder or a reference file). "
                          "Default: shipped jsrt")
    rca.add_argument("--reference", help="one reference set (folder or file) instead of --reference-sets")
    rca.add_argument("--registration", help="rca_regnet checkpoint (default: shipped weights)")
    rca.add_argument("--calibration", nargs="*", metavar="JSON",
                     help="calibration files to apply, each to the set and method it was fitted for (default: the "
                          "shipped ones that fit; give none to score uncalibrated)")
    rca.add_argument("--max-images", type=int, help="only the first N images of the split (smoke runs)")
    rca.add_argument("--seed", type=int, default=0)
    rca.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    rca.add_argument("--quiet", action="store_true")
    rca.set_defaults(func=_rca)

    nat = s.add_parser("rca-natural", help="RCA vs true Dice on natural outputs: segmentation checkpoints on a JSRT "
                       "split, clean and perturbed (and, separately, bench rca's damage set)",
                       description="Writes DIR/per_output.csv, DIR/summary.csv, DIR/true_dice_distribution.csv and "
                       "DIR/<set>_<method>_<estimate>.png. See cxrkit.qc.natural.")
    nat.add_argument("--checkpoints", nargs="+", required=True, metavar="PATH",
                     help="checkpoint files, training run folders (their checkpoints/step-*.pt, from "
                     "`cxrkit segmentation train --save-every N`) or folders of *.pt")
    nat.add_argument("--out", required=True)
    nat.add_argument("--jsrt", help="JSRT folder (default: <shared data>/segmentation/jsrt)")
    nat.add_argument("--split", default="test", choices=("val", "test"))
    nat.add_argument("--perturbations", nargs="+",
                     help="subset of: none noise occlusion rotate+15 rotate-15 low_contrast (default: all, as "
                     "`cxrkit segmentation evaluate`)")
    nat.add_argument("--methods", nargs="+", default=["learned"], choices=("learned", "iterative"))
    nat.add_argument("--reference", help="reference set folder (default: the JSRT folder's 16 training ids)")
    nat.add_argument("--registration", help="rca_regnet checkpoint (default: shipped weights)")
    nat.add_argument("--calibration", nargs="*", metavar="JSON",
                     help="calibration files (one per method; default: the shipped ones when they fit; give none "
                     "to score uncalibrated)")
    nat.add_argument("--no-clean-up", action="store_true",
                     help="score pixel models' masks as predicted (default: largest component per structure, "
                     "holes filled)")
    nat.add_argument("--no-damage", action="store_true", help="skip the damage set")
    nat.add_argument("--max-images", type=int, help="only the first N images of the split (smoke runs)")
    nat.add_argument("--seed", type=int, default=0)
    nat.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    nat.add_argument("--quiet", action="store_true")
    nat.set_defaults(func=_rca_natural)


def _lesions(args: argparse.Namespace) -> int:
    from pathlib import Path

    from cxrkit.classification.lesion_bench import (
        LesionBenchConfig,
        parse_lse_r,
        run_lesion_benchmark,
    )
    from cxrkit.classification.lesion_seeds import run_lesion_seeds
    from cxrkit.cli.shared import find_shared
    from cxrkit.errors import CxrkitError

    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    lse_r = parse_lse_r(args.lse_r) if args.lse_r is not None else None
    if args.summarize_only and not args.seeds:
        raise CxrkitError("--summarize-only needs --seeds")
    cached = args.summarize_only or (args.base_cache is not None and Path(args.base_cache).is_file())
    images = args.images or (None if cached else find_shared("nih/images", "pass --images FOLDER of NIH PNGs"))
    metadata = _bench_metadata(args.metadata)
    cfg = LesionBenchConfig(model=args.model, input_size=args.input_size, epochs=args.epochs, repeats=args.repeats,
                            batch_size=args.batch_size, lr=args.lr, seed=args.seed, num_workers=args.workers,
                            box_method=args.box_method, max_images=args.max_images, lse_r=lse_r,
                            data_seed=args.data_seed, cam_flips=args.cam_flips,
                            cam_flips_train=not args.cam_flips_eval_only, cam_stride=args.cam_stride,
                            dilate=args.dilate, align_views=not args.no_align_views)
    if args.seeds:
        summary = run_lesion_seeds(images, args.out, cfg, args.seeds, metadata=metadata, progress=not args.quiet,
                                   cache=args.base_cache, summarize_only=args.summarize_only)
        sys.stdout.write(_seeds_table(summary))
        return 0
    m = run_lesion_benchmark(images, args.out, cfg, metadata=metadata, progress=not args.quiet, cache=args.base_cache)
    _print_brief(m, train_seconds=m["train_seconds"])
    return 0


_BRIEF = ("auroc", "mean_auroc", "acc_iobb@0.5", "acc_iou@0.1", "acc_iou@0.3", "acc_iou@0.5", "mean_iou")


def _seeds_table(summary: dict) -> str:
    """The headline figures of a multi-seed summary as text: per finding and metric, every run, mean and sd."""
    seeds = summary["seeds"]
    def rule(chosen) -> str:
        if isinstance(chosen, str) or len(set(chosen.values())) == 1:
            return chosen if isinstance(chosen, str) else next(iter(chosen.values()))
        return " / ".join(f"{f} {c}" for f, c in chosen.items())

    lines = [f"seeds {' '.join(map(str, seeds))}; box rule per run: "
             + "; ".join(f"{s}: {rule(summary['box_method'][s])}" for s in seeds),
             f"{'finding':10s} {'metric':13s} " + " ".join(f"{'seed ' + str(s):>8s}" for s in seeds) + "     mean       sd"]
    rows = [("all", summary["overall"])] + list(summary["per_finding"].items())
    for name, d in rows:
        for m in _BRIEF:
            if m in d:
                st = d[m]
                lines.append(f"{name:10s} {m:13s} " + " ".join(f"{v:8.3f}" for v in st["runs"])
                             + f" {st['mean']:8.3f} {st['sd']:8.3f}")
    lines.append("targets on the means: " + ", ".join(f"{k} {'met' if v else 'NOT met'}"
                                                       for k, v in summary["targets_on_means"].items()))
    return "\n".join(lines) + "\n"


def _bench_metadata(given: str | None) -> str | None:
    """NIH metadata for the lesion benchmark: given, 'none', or the shared v2020 file when present."""
    from cxrkit.cli.shared import find_shared

    if given == "none":
        return None
    if given is not None:
        return given
    try:
        return str(find_shared("nih/Data_Entry_2017_v2020.csv.gz", ""))
    except Exception:
        return None


def _print_brief(m: dict, **extra) -> None:
    brief = {"per_finding": {f: {k: round(v, 4) for k, v in d.items() if k in _BRIEF}
                             for f, d in m["per_finding"].items()},
             "overall": m["overall"], "box_method": {k: v for k, v in m["box_method"].items()
                                                     if k not in ("validation", "test_all_candidates")}, **extra}
    sys.stdout.write(json.dumps(brief, indent=2) + "\n")


def _lesions_compose(args: argparse.Namespace) -> int:
    from cxrkit.classification.lesion_compose import compose_runs
    from cxrkit.cli.shared import find_shared

    images = args.images or find_shared("nih/images", "pass --images FOLDER of NIH PNGs")
    m = compose_runs(args.runs, images, args.out, metadata=_bench_metadata(args.metadata), progress=not args.quiet)
    _print_brief(m, composition=m["composition"]["select"])
    return 0


def _rca(args: argparse.Namespace) -> int:
    from cxrkit.cli.shared import find_shared
    from cxrkit.errors import CxrkitError, UsageError
    from cxrkit.io.outputs import check_out_dir
    from cxrkit.models import create_model, load_checkpoint
    from cxrkit.qc.rca import Calibration, RcaEstimator, make_estimator
    from cxrkit.qc.reference import load_reference, resolve_reference
    from cxrkit.qc.validation import compare_sets, run_validation

    check_out_dir(args.out)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    jsrt = args.jsrt or find_shared("segmentation/jsrt", "pass --jsrt FOLDER")
    sets = {}
    for item in [f"reference={args.reference}"] if args.reference else args.reference_sets:
        name, _, path = item.partition("=")
        if item == "jsrt":
            sets[name] = load_reference(jsrt)
        elif item == "shipped" or path:
            sets[name] = resolve_reference(path or "shipped")
        else:
            raise UsageError(f"--reference-sets {item!r}: expected shipped, jsrt or NAME=PATH")
    given = [Calibration.load(c) for c in args.calibration or []]
    used: set[int] = set()
    estimators: dict[str, dict[str, RcaEstimator]] = {}
    for name, reference in sets.items():
        estimators[name] = {}
        for m in args.methods:
            est = make_estimator(reference, m, args.registration, "shipped" if args.calibration is None else None)
            if given:
                sha = None if est.model is None else est.model.card.weights_sha256
                fits = [k for k, c in enumerate(given) if c.fits(m, reference.ids, sha)]
                used.update(fits)
                est = RcaEstimator(reference, m, model=est.model, calibration=given[fits[0]] if fits else None)
            estimators[name][m] = est
    unused = [args.calibration[k] for k in range(len(given)) if k not in used]
    if unused:
        raise UsageError(f"--calibration {unused[0]}: fitted for no reference set and method of this run")
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
    comparison = compare_sets(summary)
    if len(comparison):
        sys.stdout.write(_format_comparison(comparison) + "\n")
    return 0


def _format_comparison(comparison) -> str:
    """Per set and method: r and MAE beside the JSRT set's for the calibrated estimate (else the max), and
    whether r is within 0.03 of the JSRT set's for every structure."""
    lines = []
    for (ref, method), g in comparison.groupby(["reference_set", "method"], sort=False):
        est = "calibrated" if (g["estimate"] == "calibrated").any() else "max"
        g = g[g["estimate"] == est]
        lines.append(f"{ref} vs jsrt, {method} registration, {est} estimate:")
        lines.append(f"  {'structure':<11} {'r ' + ref:>12} {'r jsrt':>8} {'delta r':>8} {'MAE ' + ref:>12} "
                     f"{'MAE jsrt':>9}")
        for _, r in g.iterrows():
            lines.append(f"  {r['structure']:<11} {r['pearson_r']:>12.4f} {r['pearson_r_jsrt']:>8.4f} "
                         f"{r['delta_r']:>+8.4f} {r['mae']:>12.4f} {r['mae_jsrt']:>9.4f}")
        ok = bool((g["delta_r"] >= -0.03).all())
        lines.append(f"  r within 0.03 of the JSRT set's (or above) for every structure: {'yes' if ok else 'NO'}")
    return "\n".join(lines)


def _rca_natural(args: argparse.Namespace) -> int:
    from cxrkit.cli.shared import find_shared
    from cxrkit.qc.natural import load_snapshots, run_natural
    from cxrkit.qc.rca import Calibration, make_estimator
    from cxrkit.qc.reference import load_reference

    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    jsrt = args.jsrt or find_shared("segmentation/jsrt", "pass --jsrt FOLDER")
    reference = load_reference(args.reference or jsrt)
    given = {cal.method: cal for cal in map(Calibration.load, args.calibration or [])}
    estimators = {m: make_estimator(reference, m, args.registration,
                                    given.get(m, "shipped" if args.calibration is None else None))
                  for m in args.methods}
    snapshots = load_snapshots(args.checkpoints)
    summary, dist = run_natural(jsrt, snapshots, estimators, args.out, split=args.split,
                                perturbations=args.perturbations, seed=args.seed, clean_up=not args.no_clean_up,
                                damage=not args.no_damage, max_images=args.max_images, progress=not args.quiet)
    shown = summary[summary["estimate"].isin(["max", "calibrated"])]
    fmt = lambda v: f"{v:.4f}"  # noqa: E731
    sys.stdout.write(f"{len(snapshots)} checkpoints: {', '.join(s.label for s in snapshots)}\n")
    sys.stdout.write("true Dice < 0.9 = failure; r CI: 95% bootstrap over images\n")
    sys.stdout.write(shown.to_string(index=False, float_format=fmt) + "\n\ntrue Dice distribution:\n")
    sys.stdout.write(dist.to_string(index=False, float_format=fmt) + "\n")
    return 0

"""``cxrkit batch segment|predict|analyze``: a manifest of image paths in, sharded Parquet results out.

Idempotent and resumable (a rerun computes only the missing shards), bad images become error rows, and
``--engine ray`` runs the same code on a Ray Data actor pool. See docs/batch.md.

Exit status: 0 done without error rows (also when ``--max-shards`` stopped it early: it says so), 1 done
with error rows or a failed input (an unreadable manifest), 2 a usage error (another job in ``--out``, a bad
option).
"""

from __future__ import annotations

import argparse
import json
import sys

from cxrkit.cli.options import (
    add_device_options,
    add_model_option,
    add_precision_option,
    nonneg_float,
    nonneg_int,
    positive_int,
)

HELP = {"segment": "landmarks + RLE masks per image (CheXmask columns)",
        "predict": "finding probabilities + boxes per image (prob_<finding> columns, boxes as JSON)",
        "analyze": "the full `cxrkit analyze` JSON per image (+ flat ctr, dice_rca_mean, probabilities)"}


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("batch", help="segment / predict / analyze a manifest of images into sharded Parquet "
                              "(resumable; local or Ray)")
    sub = p.add_subparsers(dest="batch_task", metavar="TASK")
    sub.required = True
    for kind in ("segment", "predict", "analyze"):
        t = sub.add_parser(kind, help=HELP[kind], description=HELP[kind])
        _add_common(t, kind)
        t.set_defaults(func=_run, batch_kind=kind)


def _add_common(p: argparse.ArgumentParser, kind: str) -> None:
    p.add_argument("--input", required=True, metavar="MANIFEST",
                   help="CSV or Parquet (.parquet) with a path column; relative paths are taken from the manifest's folder")
    p.add_argument("--out", required=True, metavar="DIR", help=f"output folder: DIR/{kind}/shard-NNNNN.parquet, _plan.json, "
                   "_SUCCESS.json")
    p.add_argument("--path-column", default="path", help="manifest column with the image paths (default: path)")
    p.add_argument("--id-column", help="manifest column with image ids (default: each path relative to the common "
                   "parent folder of the manifest's paths; the file name for one flat folder)")
    p.add_argument("--shard-size", type=positive_int, default=256, help="rows per shard (default 256; fixed for a job)")
    p.add_argument("--engine", choices=("local", "ray"), default="local")
    if kind == "segment":
        add_model_option(p, "landmark model", "hybridgnet (shipped)")
    elif kind == "predict":
        p.add_argument("--model", required=True, metavar="NAME|CKPT",
                       help="classifier: a checkpoint or a registry name with shipped weights (`cxrkit models list`)")
    else:
        add_model_option(p, "classifier (none runs unless named, as in `cxrkit analyze`)", None)
    if kind != "segment":
        p.add_argument("--all-boxes", action="store_true", help="boxes for every finding, not only those above threshold")
    if kind == "analyze":
        add_model_option(p, "landmark model", "hybridgnet (shipped)", flag="--segmentation-model")
    if kind != "predict":
        p.add_argument("--qc", action="store_true", help="quality control by RCA (Dice RCA columns / qc object); "
                       "against the reference set shipped in the package unless --reference names another")
        from cxrkit.cli.qc import add_rca_options

        add_rca_options(p)
    p.add_argument("--batch-size", type=positive_int, default=8, help="images per forward pass (default 8)")
    add_device_options(p)
    add_precision_option(p, "each")
    p.add_argument("--threads", type=positive_int, help="torch CPU threads per worker (ray default: --ray-num-cpus)")
    p.add_argument("--overwrite", action="store_true", help="discard a previous job in DIR/<task> instead of refusing")
    p.add_argument("--redo-errors", action="store_true", help="also recompute shards that hold error rows")
    p.add_argument("--max-shards", type=nonneg_int, help="compute at most N pending shards, then stop (rerun to continue)")
    r = p.add_argument_group("ray engine")
    r.add_argument("--ray-address", help="existing cluster: auto, ray://HEAD:10001 or HEAD:6379 (default: $RAY_ADDRESS, "
                   "else a local instance started for the job)")
    r.add_argument("--ray-actors", type=positive_int, default=2, help="actors in the pool, each with its own model copy (default 2)")
    r.add_argument("--ray-num-cpus", type=nonneg_float, default=1.0, help="CPUs per actor (default 1)")
    r.add_argument("--ray-num-gpus", type=nonneg_float, default=0.0, help="GPUs per actor (default 0; e.g. 1 or 0.5 with --device cuda)")
    r.add_argument("--ray-runtime-env", help="Ray runtime_env as JSON or a .json file (e.g. to pip-install cxrkit on workers)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _runtime_env(text: str | None) -> dict | None:
    from pathlib import Path

    from cxrkit.errors import UsageError

    if not text:
        return None
    try:
        return json.loads(Path(text).read_text() if text.endswith(".json") and Path(text).is_file() else text)
    except (OSError, ValueError) as exc:
        raise UsageError(f"--ray-runtime-env: not JSON or a JSON file ({exc})") from None


def _run(args: argparse.Namespace) -> int:
    from cxrkit.batch import TaskSpec, run_batch

    qc = None
    if getattr(args, "qc", False):
        from cxrkit.cli.qc import rca_kwargs

        qc = rca_kwargs(args)
    spec = TaskSpec(args.batch_kind, model=args.model, segmentation_model=getattr(args, "segmentation_model", None),
                    qc=qc, batch_size=args.batch_size, device=args.device, threads=args.threads,
                    box_policy="all" if getattr(args, "all_boxes", False) else "positive",
                    workers=args.workers if args.engine == "local" else (args.workers or 0), precision=args.precision)
    ray_options = None
    if args.engine == "ray":
        from cxrkit.batch.ray_engine import RayOptions

        ray_options = RayOptions(address=args.ray_address, actors=args.ray_actors, num_cpus=args.ray_num_cpus,
                                 num_gpus=args.ray_num_gpus, runtime_env=_runtime_env(args.ray_runtime_env))
    res = run_batch(args.input, args.out, spec, engine=args.engine, shard_size=args.shard_size,
                    path_column=args.path_column, id_column=args.id_column, overwrite=args.overwrite,
                    redo_errors=args.redo_errors, max_shards=args.max_shards, ray_options=ray_options,
                    progress=not args.quiet)
    n = res.computed_rows
    rate = f", {n / res.seconds:.1f} images/s" if n and res.seconds > 0 else ""
    sys.stdout.write(f"{res.task_dir}: {res.rows} rows in {res.shards}/{res.total_shards} shards "
                     f"({len(res.computed)} computed, {res.skipped} already done), {res.errors} errors, "
                     f"{res.seconds:.1f} s{rate}\n")
    if not res.complete:
        sys.stdout.write(f"incomplete: {res.total_shards - res.shards} shards left; rerun the same command to continue\n")
    return 1 if res.errors else 0

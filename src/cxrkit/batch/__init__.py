"""Batch inference over a manifest: ``cxrkit batch segment|predict|analyze``.

A manifest (CSV or Parquet with a ``path`` column) goes in; sharded Parquet results come out under
``OUT/<task>/`` (see :mod:`cxrkit.batch.shards` for the layout). Jobs are idempotent and resumable: the
shard plan is fixed by the manifest and the shard size, each shard file is committed atomically, and a
rerun computes only the missing shards. A bad image becomes an error row. Two engines run the same
per-shard code: ``local`` (this process) and ``ray`` (Ray Data actor pool, laptop to cluster).

>>> from cxrkit.batch import TaskSpec, run_batch        # doctest: +SKIP
>>> res = run_batch("manifest.csv", "out", TaskSpec("segment"), engine="local", shard_size=256)  # doctest: +SKIP
>>> res.rows, res.errors                                # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from cxrkit.batch.local import run_local
from cxrkit.batch.manifest import Manifest, ManifestRow, read_manifest, write_manifest
from cxrkit.batch.ray_engine import RayOptions, run_ray
from cxrkit.batch.shards import (
    SUCCESS_FILE,
    ShardPlan,
    pending_shards,
    plan_document,
    prepare_dir,
    read_results,
    shard_path,
    summarize,
    write_success,
)
from cxrkit.batch.tasks import KINDS, TaskSpec, build_task, describe
from cxrkit.errors import InputError, UsageError

log = logging.getLogger(__name__)

ENGINES = ("local", "ray")

__all__ = [
    "ENGINES",
    "KINDS",
    "BatchResult",
    "Manifest",
    "ManifestRow",
    "ShardPlan",
    "TaskSpec",
    "build_task",
    "read_manifest",
    "read_results",
    "run_batch",
    "shard_path",
    "write_manifest",
]


@dataclass
class BatchResult:
    """What a :func:`run_batch` call did and where the job stands."""

    task_dir: Path
    rows: int
    errors: int
    shards: int
    total_shards: int
    computed: list[dict] = field(default_factory=list)  # this call's shards: {"shard", "rows", "errors", "seconds"}
    skipped: int = 0  # shards already there
    seconds: float = 0.0
    complete: bool = False

    @property
    def computed_rows(self) -> int:
        return sum(c["rows"] for c in self.computed)


def run_batch(manifest: str | os.PathLike | Manifest, out: str | os.PathLike, spec: TaskSpec, engine: str = "local",
              shard_size: int = 256, path_column: str = "path", id_column: str | None = None,
              overwrite: bool = False, redo_errors: bool = False, max_shards: int | None = None,
              ray_options=None, progress: bool = True) -> BatchResult:
    """Run (or continue) the job ``spec`` over ``manifest`` into ``out/<task>/``.

    Args:
        manifest: CSV/Parquet manifest path (see :func:`read_manifest`) or a read :class:`Manifest`.
        engine: ``local`` or ``ray`` (then ``ray_options``: a :class:`cxrkit.batch.ray_engine.RayOptions`).
        shard_size: rows per shard; part of the plan, so a rerun must use the same.
        overwrite: discard the folder's previous job instead of refusing a different plan.
        redo_errors: also recompute shards that hold error rows (e.g. after fixing files).
        max_shards: compute at most this many pending shards, then stop (the job stays incomplete).

    ``_SUCCESS.json`` (rows, errors, shards, seconds, engine) is written when every shard is committed.
    """
    if engine not in ENGINES:
        raise UsageError(f"unknown engine {engine!r}; choose one of {ENGINES}")
    t0 = time.perf_counter()
    if not isinstance(manifest, Manifest):
        manifest = read_manifest(manifest, path_column, id_column)
    plan = ShardPlan(len(manifest), shard_size)
    task_dir = Path(out) / spec.kind
    prepare_dir(task_dir, plan_document(manifest, plan, describe(spec)), overwrite)
    todo = pending_shards(task_dir, plan, redo_errors)
    skipped = plan.shards - len(todo)
    if max_shards is not None:
        todo = todo[: max(0, max_shards)]
    if todo:
        (task_dir / SUCCESS_FILE).unlink(missing_ok=True)
    log.info("%s: %d shards of %d rows, %d to compute, %d already done", task_dir, plan.shards, shard_size,
             len(todo), skipped)
    if engine == "local":
        computed = run_local(spec, manifest, plan, todo, task_dir, progress)
    else:
        computed = run_ray(spec, manifest, plan, todo, task_dir, ray_options or RayOptions(), progress)
    counts = summarize(task_dir, plan)
    seconds = time.perf_counter() - t0
    complete = not counts["missing_shards"]
    result = BatchResult(task_dir, counts["rows"], counts["errors"], counts["shards"], plan.shards, computed, skipped,
                         seconds, complete)
    if complete:
        if counts["rows"] != plan.rows:  # cannot happen with intact shard files; refuse to bless a bad job
            raise InputError(f"{task_dir}: shards hold {counts['rows']} rows, the manifest has {plan.rows}")
        write_success(task_dir, {"task": spec.kind, "engine": engine, "manifest": str(manifest.source),
                                 "rows": counts["rows"], "errors": counts["errors"], "shards": plan.shards,
                                 "computed_shards": len(computed), "skipped_shards": skipped,
                                 "computed_rows": result.computed_rows, "seconds": round(seconds, 3)})
    return result

"""``--engine local``: every pending shard streamed through one engine pipeline in this process.

The models are loaded once; decoding and post-processing run in the engine's worker processes (``workers``:
all cores by default) while the model stage batches images across shard boundaries, so the machine stays
busy from the first image to the last. Results arrive in manifest order; a shard's file is committed
(atomically) as soon as its last row has arrived.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence

from cxrkit.batch.manifest import Manifest
from cxrkit.batch.shards import ShardPlan, shard_path, write_shard
from cxrkit.batch.tasks import TaskSpec, build_task
from cxrkit.engine import run_pipeline, workers_for

log = logging.getLogger(__name__)


def run_local(spec: TaskSpec, manifest: Manifest, plan: ShardPlan, shards: Sequence[int],
              task_dir: str | os.PathLike, progress: bool = True) -> list[dict]:
    """Compute and commit ``shards``; returns each shard's ``{"shard", "rows", "errors", "seconds"}``.

    An exception (Ctrl-C, a full disk, a killed worker) stops the run: shards already committed stay, the ones
    being computed leave no file, so a rerun continues from there.
    """
    from tqdm.auto import tqdm


    if not shards:
        return []
    task = build_task(spec)
    pairs = [(k, r) for k in shards for r in plan.rows_of(manifest, k)]
    items = [(k, r, task.item(r)) for k, r in pairs]
    todo = {k: len(plan.rows_of(manifest, k)) for k in shards}
    rows: dict[int, list[dict]] = {k: [] for k in shards}
    started = {k: None for k in shards}
    done: list[dict] = []
    job = task.manifest_job()

    class _Items:  # the engine sees the task's items; the shard travels beside them
        def __iter__(self):
            return (it for _, _, it in items)

    lookup = iter(items)
    with tqdm(total=len(items), desc=f"{spec.kind} (local)", unit="img", disable=not progress) as bar:
        def emit(item, result) -> None:
            k, r, _ = next(lookup)  # results come in input order
            if started[k] is None:
                started[k] = time.perf_counter()
            rows[k].append(task.row(r, result))
            bar.update(1)
            if len(rows[k]) == todo[k]:
                write_shard(shard_path(task_dir, k), rows[k], task.schema)
                errors = sum(x["error"] is not None for x in rows[k])
                info = {"shard": k, "rows": len(rows[k]), "errors": errors,
                        "seconds": time.perf_counter() - started[k]}
                log.debug("shard %d: %d rows, %d errors, %.2f s", k, info["rows"], info["errors"], info["seconds"])
                done.append(info)
                del rows[k]


        run_pipeline(job, _Items(), emit, workers=workers_for(spec.workers, len(items)),
                     batch_size=spec.batch_size)
    return done

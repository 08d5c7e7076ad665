"""``--engine local``: the pending shards one after another in this process, models loaded once."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

from cxrkit.batch.manifest import Manifest
from cxrkit.batch.shards import ShardPlan, process_shard
from cxrkit.batch.tasks import TaskSpec, build_task

log = logging.getLogger(__name__)


def run_local(spec: TaskSpec, manifest: Manifest, plan: ShardPlan, shards: Sequence[int],
              task_dir: str | os.PathLike, progress: bool = True) -> list[dict]:
    """Compute and commit ``shards`` in order; returns each shard's ``{"shard", "rows", "errors", "seconds"}``.

    An exception (Ctrl-C, a full disk) stops the loop: shards already committed stay, the one being
    computed leaves no file, so a rerun continues from there.
    """
    from tqdm.auto import tqdm

    if not shards:
        return []
    task = build_task(spec)
    total = sum(len(plan.rows_of(manifest, k)) for k in shards)
    done = []
    with tqdm(total=total, desc=f"{spec.kind} (local)", unit="img", disable=not progress) as bar:
        for k in shards:
            info = process_shard(task, manifest, plan, k, task_dir)
            log.debug("shard %d: %d rows, %d errors, %.2f s", k, info["rows"], info["errors"], info["seconds"])
            done.append(info)
            bar.update(info["rows"])
    return done

"""Shard plan, atomic shard files, the plan check and the success record.

Layout of a task's output folder ``DIR/<task>/``::
    _plan.json            what the job is (manifest digest, rows, shard size, task, models): written first
    shard-00000.parquet   rows [0, S) of the manifest, written atomically (temporary file + os.replace)
    shard-00001.parquet   rows [S, 2S) ...
    _SUCCESS.json         counts (rows, errors, shards, seconds), written last

A shard file exists only once it is complete, so "the file exists" is the done marker: a restarted job
computes only the missing shards. A shard computed twice (a retried Ray task) is replaced atomically by an
identical file, so every manifest row is in the output exactly once. Readers should take
``shard-*.parquet`` (pyarrow and DuckDB skip the ``_``/``.`` files of the folder by themselves).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cxrkit.batch.manifest import Manifest, ManifestRow
from cxrkit.errors import InputError, UsageError, require
from cxrkit.io.atomic import atomic_open, write_text
from cxrkit.io.progress import ProgressRecord, remove_temporaries

log = logging.getLogger(__name__)

PLAN_FILE = "_plan.json"
SUCCESS_FILE = "_SUCCESS.json"
PLAN_VERSION = 2  # 1: the plan before ProgressRecord
# Keys of the plan that must match for a rerun to continue the same job.
_PLAN_KEYS = ("manifest_sha256", "rows", "shard_size", "task", "models", "qc", "box_policy")


@dataclass(frozen=True)
class ShardPlan:
    """Fixed shards of ``shard_size`` rows in manifest order: shard ``k`` covers rows ``[k*S, (k+1)*S)``."""

    rows: int
    shard_size: int

    def __post_init__(self) -> None:
        if self.shard_size < 1:
            raise UsageError(f"shard size must be >= 1, got {self.shard_size}")

    @property
    def shards(self) -> int:
        return -(-self.rows // self.shard_size)

    def bounds(self, k: int) -> tuple[int, int]:
        """``(start, stop)`` manifest rows of shard ``k``."""
        if not 0 <= k < self.shards:
            raise IndexError(f"shard {k} out of range 0..{self.shards - 1}")
        return k * self.shard_size, min((k + 1) * self.shard_size, self.rows)

    def rows_of(self, manifest: Manifest, k: int) -> Sequence[ManifestRow]:
        start, stop = self.bounds(k)
        return manifest.rows[start:stop]


def shard_path(task_dir: str | os.PathLike, k: int) -> Path:
    """``task_dir/shard-0000k.parquet``."""
    return Path(task_dir) / f"shard-{k:05d}.parquet"


def plan_document(manifest: Manifest, plan: ShardPlan, task: dict) -> dict:
    """The ``_plan.json`` content: the manifest (path, digest of its resolved paths and ids), rows, shard
    size and :func:`cxrkit.batch.tasks.describe`'s task, models and options."""
    doc = {"manifest": str(manifest.source), "manifest_sha256": manifest.digest(),
           "rows": plan.rows, "shard_size": plan.shard_size, "shards": plan.shards}
    doc.update(task)
    return doc


def prepare_dir(task_dir: str | os.PathLike, doc: dict, overwrite: bool = False) -> None:
    """Create ``task_dir`` and its ``_plan.json`` (a :class:`~cxrkit.io.progress.ProgressRecord`); an existing
    plan must match ``doc`` on the keys that decide the output (same job) or the call refuses with the differing
    keys, unless ``overwrite`` clears the folder's shards first. Temporaries of killed writers are removed (call
    it only while no job writes into ``task_dir``)."""
    task_dir = Path(task_dir)
    record = ProgressRecord(task_dir / PLAN_FILE, doc, keys=_PLAN_KEYS, version=PLAN_VERSION)
    if overwrite and task_dir.is_dir():
        for p in list(task_dir.glob("shard-*.parquet")) + [task_dir / SUCCESS_FILE]:
            p.unlink(missing_ok=True)
        record.remove()
    elif record.path.is_file():
        record.load(hint="use another --out or --overwrite to start over")  # refuses another job
        remove_temporaries(task_dir, (".shard-*.tmp",))
        return
    elif task_dir.is_dir() and any(task_dir.glob("shard-*.parquet")):
        raise UsageError(f"{task_dir}: has shard files but no {PLAN_FILE}; use another --out or --overwrite")
    task_dir.mkdir(parents=True, exist_ok=True)
    remove_temporaries(task_dir, (".shard-*.tmp",))
    record.save({})


def read_plan(task_dir: str | os.PathLike) -> dict:
    """The plan stored in ``task_dir/_plan.json``."""
    return json.loads((Path(task_dir) / PLAN_FILE).read_text())["plan"]


def shard_counts(path: str | os.PathLike) -> tuple[int, int]:
    """``(rows, error rows)`` of one shard file (reads only its ``error`` column)."""
    pq = require("pyarrow.parquet", "scale")
    col = pq.read_table(path, columns=["error"]).column("error")
    return len(col), len(col) - col.null_count


def pending_shards(task_dir: str | os.PathLike, plan: ShardPlan, redo_errors: bool = False) -> list[int]:
    """Shards without a file (and, with ``redo_errors``, those holding error rows), in order."""
    todo = []
    for k in range(plan.shards):
        p = shard_path(task_dir, k)
        if not p.is_file() or (redo_errors and shard_counts(p)[1] > 0):
            todo.append(k)
    return todo


def write_shard(path: str | os.PathLike, rows: list[dict], schema) -> None:
    """Write ``rows`` as one Parquet file atomically (a unique temporary file beside it, then os.replace)."""
    pa = require("pyarrow", "scale")
    pq = require("pyarrow.parquet", "scale")

    table = pa.Table.from_pylist(rows, schema=schema)
    with atomic_open(path, "wb") as fh:
        pq.write_table(table, fh, compression="zstd")


def process_shard(task, manifest: Manifest, plan: ShardPlan, k: int, task_dir: str | os.PathLike) -> dict:
    """Compute shard ``k`` with ``task`` (a :class:`~cxrkit.batch.tasks.BatchTask`) and commit its file;
    returns ``{"shard", "rows", "errors", "seconds"}``. The one code path of every engine."""
    return compute_and_write(task, plan.rows_of(manifest, k), k, task_dir)


def compute_and_write(task, rows: Sequence[ManifestRow], k: int, task_dir: str | os.PathLike,
                      workers: int | None = 0) -> dict:
    """:func:`process_shard` for rows already sliced out (what a Ray actor receives); ``workers``: the engine's
    worker processes inside this process (0: none)."""
    t = time.perf_counter()
    result = task.run(rows, workers=workers)
    write_shard(shard_path(task_dir, k), result, task.schema)
    errors = sum(r["error"] is not None for r in result)
    return {"shard": k, "rows": len(result), "errors": errors, "seconds": time.perf_counter() - t}


def summarize(task_dir: str | os.PathLike, plan: ShardPlan) -> dict:
    """Counts over the committed shards: rows, errors, shards, and which shards are missing."""
    rows = errors = 0
    missing = []
    for k in range(plan.shards):
        p = shard_path(task_dir, k)
        if not p.is_file():
            missing.append(k)
            continue
        n, e = shard_counts(p)
        rows, errors = rows + n, errors + e
    return {"rows": rows, "errors": errors, "shards": plan.shards - len(missing), "missing_shards": missing}


def write_success(task_dir: str | os.PathLike, record: dict) -> Path:
    """Write ``_SUCCESS.json`` (atomically) and return its path."""
    path = Path(task_dir) / SUCCESS_FILE
    write_text(path, json.dumps(record, indent=1) + "\n")
    return path


def read_results(task_dir: str | os.PathLike):
    """All committed shards of ``task_dir`` as one pandas DataFrame sorted by ``row_index``."""
    import pandas as pd

    pq = require("pyarrow.parquet", "scale")
    files = sorted(Path(task_dir).glob("shard-*.parquet"))
    if not files:
        raise InputError(f"{task_dir}: no shard files")
    frame = pd.concat([pq.read_table(f).to_pandas() for f in files], ignore_index=True)
    return frame.sort_values("row_index", kind="stable").reset_index(drop=True)

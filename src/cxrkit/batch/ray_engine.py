"""``--engine ray``: the same shard computation on Ray Data, with an actor pool per model.

One Ray Data item is one pending shard (its manifest rows). ``map_batches`` sends the items, one at a time,
to a fixed pool of ``actors`` actors of :class:`ShardActor`; each actor builds the task (loads the models)
once in ``__init__`` and, per item, computes the shard's rows and commits the shard file atomically itself
(:func:`cxrkit.batch.shards.compute_and_write`, the code the local engine runs). The driver only streams
the small per-shard summaries back for the progress bar. Actors are created with ``max_restarts=-1`` and
``max_task_retries=-1``: a killed actor is restarted and its shard computed again, and since a shard file
is replaced atomically by an identical one, every row ends up in the output exactly once.

Where Ray runs: ``address`` (``--ray-address``), else ``$RAY_ADDRESS``, else a private local instance with
``actors * num_cpus`` CPUs that is shut down at the end. On a cluster the manifest's images and the output
folder must be on a filesystem every node sees at the same path, and cxrkit must be importable on the
workers (installed in their environment, or shipped with ``runtime_env``).
"""

from __future__ import annotations

import inspect
import json
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from cxrkit.batch.manifest import Manifest, ManifestRow
from cxrkit.batch.shards import ShardPlan, compute_and_write
from cxrkit.batch.tasks import TaskSpec, build_task
from cxrkit.errors import InputError, UsageError, require

log = logging.getLogger(__name__)


class ShardActor:
    """Ray Data callable class: loads the task once, then computes and commits one shard per item (the engine
    inside the actor's process, with ``spec.workers`` worker processes; 0 by default: Ray's actors are the
    parallelism)."""

    def __init__(self, spec: TaskSpec, task_dir: str) -> None:
        self.task = build_task(spec)
        self.task_dir = task_dir

    def __call__(self, batch: dict) -> dict:
        out: dict[str, list] = {"shard": [], "rows": [], "errors": [], "seconds": []}
        for k, rows_json in zip(batch["shard"], batch["rows"]):
            k = int(k)
            self.before_shard(k)
            rows = [ManifestRow(int(i), p, n) for i, p, n in json.loads(str(rows_json))]
            info = compute_and_write(self.task, rows, k, self.task_dir, workers=self.task.spec.workers or 0)
            for key, values in out.items():
                values.append(info[key])
        return out

    def before_shard(self, k: int) -> None:
        """Called before shard ``k`` is computed (a subclass may instrument it, e.g. to inject faults in tests)."""


@dataclass(frozen=True)
class RayOptions:
    """How to run on Ray.

    Attributes:
        address: cluster address (``auto``, ``ray://head:10001``, ``head:6379``); None: ``$RAY_ADDRESS`` or a
            new local instance.
        actors: actor pool size (model replicas working at once).
        num_cpus: CPUs reserved per actor (also its torch threads unless the task spec sets them).
        num_gpus: GPUs per actor (fractions share a GPU); combine with ``device="cuda"`` in the task spec.
        runtime_env: Ray runtime environment for the job (e.g. ``{"pip": ["cxrkit[ray]"]}``), when starting
            or connecting from this process.
        log_to_driver: show the workers' logs here.
        actor: the Ray Data callable class (a :class:`ShardActor` subclass).
    """

    address: str | None = None
    actors: int = 2
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    runtime_env: dict | None = None
    log_to_driver: bool = False
    actor: type = ShardActor

    def __post_init__(self) -> None:
        if self.actors < 1:
            raise UsageError(f"--ray-actors must be >= 1, got {self.actors}")
        if self.num_cpus < 0 or self.num_gpus < 0:
            raise UsageError("--ray-num-cpus and --ray-num-gpus must be >= 0")


def _init(ray, opts: RayOptions) -> bool:
    """Connect to or start Ray unless it is already initialized; True when this call started it."""
    if ray.is_initialized():
        return False
    address = opts.address or os.environ.get("RAY_ADDRESS") or None
    kwargs: dict = {"runtime_env": opts.runtime_env} if opts.runtime_env else {}
    if address is None:
        kwargs.update(num_cpus=max(1, math.ceil(opts.actors * opts.num_cpus)), include_dashboard=False,
                      log_to_driver=opts.log_to_driver, configure_logging=False)
        log.info("starting a local Ray instance with %d CPUs", kwargs["num_cpus"])
    else:
        if not address.startswith("ray://"):  # Ray Client forwards unknown options to the server's ray.init
            kwargs["log_to_driver"] = opts.log_to_driver
        log.info("connecting to Ray at %s", address)
    try:
        ray.init(address=address, **kwargs)
    except (ConnectionError, RuntimeError) as exc:
        if address is None:
            raise
        raise InputError(f"cannot connect to Ray at {address!r} ({str(exc).splitlines()[0] if str(exc) else exc}); "
                          "is the cluster up, and, where it uses token authentication, are RAY_AUTH_MODE=token and "
                          "its token (RAY_AUTH_TOKEN or ~/.ray/auth_token) set here?") from exc
    return True


def _version(ray) -> tuple[int, int]:
    parts = (ray.__version__.split(".") + ["0"])[:2]
    return tuple(int("".join(ch for ch in x if ch.isdigit()) or 0) for x in parts)  # type: ignore[return-value]


def _pool_kwargs(ray, opts: RayOptions) -> dict:
    """The fixed-size, self-healing actor pool in the installed Ray's words.

    ``compute=ActorPoolStrategy(size=N)`` where it takes ``size`` (``concurrency=N`` is deprecated since Ray
    2.51), else ``concurrency``. Ray Data's actor pools restart dead actors and retry their tasks
    (``max_restarts=-1``, ``max_task_retries=-1``) by default in current Ray, where passing them as
    ``ray_remote_args`` is deprecated; older Ray gets them explicitly.
    """
    strategy = getattr(ray.data, "ActorPoolStrategy", None)
    if strategy is not None and "size" in inspect.signature(strategy.__init__).parameters:
        kwargs: dict = {"compute": strategy(size=opts.actors)}
    else:
        kwargs = {"concurrency": opts.actors}
    if _version(ray) < (2, 51):
        kwargs.update(max_restarts=-1, max_task_retries=-1)
    return kwargs


def run_ray(spec: TaskSpec, manifest: Manifest, plan: ShardPlan, shards: Sequence[int], task_dir: str | os.PathLike,
            opts: RayOptions, progress: bool = True) -> list[dict]:
    """Compute and commit ``shards`` on Ray; returns each shard's summary (one per shard, retries folded)."""
    if not shards:
        return []
    ray = require("ray", "ray")
    require("ray.data", "ray")
    from tqdm.auto import tqdm

    if opts.num_gpus == 0 and str(spec.device).startswith("cuda"):
        raise UsageError(f"device {spec.device!r} needs GPUs for the actors: pass --ray-num-gpus")
    spec = spec if spec.threads else replace(spec, threads=max(1, int(opts.num_cpus)))
    items = [{"shard": k, "rows": json.dumps([[r.row_index, r.path, r.image_id] for r in plan.rows_of(manifest, k)])}
             for k in shards]
    started = _init(ray, opts)
    ctx = ray.data.DataContext.get_current()
    bars = ctx.enable_progress_bars
    ctx.enable_progress_bars = False
    done: dict[int, dict] = {}
    try:
        params = inspect.signature(ray.data.from_items).parameters
        blocks = {"override_num_blocks": len(items)} if "override_num_blocks" in params else {"parallelism": len(items)}
        ds = ray.data.from_items(items, **blocks)
        ds = ds.map_batches(opts.actor, batch_size=1, num_cpus=opts.num_cpus, num_gpus=opts.num_gpus or None,
                            fn_constructor_kwargs={"spec": spec, "task_dir": str(Path(task_dir).resolve())},
                            **_pool_kwargs(ray, opts))
        total = sum(len(plan.rows_of(manifest, k)) for k in shards)
        with tqdm(total=total, desc=f"{spec.kind} (ray, {opts.actors} actors)", unit="img",
                  disable=not progress) as bar:
            for row in ds.iter_rows():
                k = int(row["shard"])
                if k not in done:
                    bar.update(int(row["rows"]))
                done[k] = {key: (float(row[key]) if key == "seconds" else int(row[key])) for key in
                           ("shard", "rows", "errors", "seconds")}
    finally:
        ctx.enable_progress_bars = bars
        if started:
            ray.shutdown()
    return [done[k] for k in sorted(done)]

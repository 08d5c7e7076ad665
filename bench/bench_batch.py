"""`cxrkit batch segment` throughput: the local engine vs the Ray engine (2 actors) on the same images, in the
same run.

Both jobs run the same manifest of N real NIH images (default 48 from ../shared/data/nih/images, else the
bundled sample repeated) with the same shard size into fresh folders; images/s is rows / wall time of the
whole job (model loading included; for Ray, actor start-up too, but the start of the local Ray instance is
reported separately). The local engine uses --threads torch threads; each Ray actor 1 CPU and 1 thread.

Both engines run ``--precision auto`` (TaskSpec's default: the card's ``inference_precision``, printed; fp32
for the shipped hybridgnet).

Usage: python bench/bench_batch.py [--images DIR] [--n 48] [--shard-size 8] [--actors 2] [--threads 2] [--tiny]
``--tiny``: 4 images, shards of 2, 1 actor, 1 thread (a smoke run for the test suite; no figure is asserted).
"""

from __future__ import annotations

import argparse
import itertools
import os
import tempfile
import time
from pathlib import Path

from cxrkit.batch import TaskSpec, read_results, run_batch, write_manifest

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images")
    ap.add_argument("--n", type=int, default=48)
    ap.add_argument("--shard-size", type=int, default=8)
    ap.add_argument("--actors", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2, help="torch threads of the local engine")
    ap.add_argument("--tiny", action="store_true", help="4 images, shards of 2, 1 actor, 1 thread: a smoke run")
    args = ap.parse_args()
    if args.tiny:
        args.n, args.shard_size, args.actors, args.threads = 4, 2, 1, 1
    shared = Path(os.environ.get("CXRKIT_SHARED_DATA", REPO.parent / "shared" / "data")) / "nih" / "images"
    folder = Path(args.images) if args.images else (shared if shared.is_dir() else REPO / "src/cxrkit/demo/sample/nih/images")
    paths = list(itertools.islice(itertools.cycle(sorted(folder.glob("*.png"))), args.n))
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    from cxrkit.batch.ray_engine import RayOptions

    with tempfile.TemporaryDirectory() as tmp:
        manifest = write_manifest(paths, Path(tmp) / "manifest.csv")
        t = time.perf_counter()
        local = run_batch(manifest, Path(tmp) / "local", TaskSpec("segment", threads=args.threads),
                          shard_size=args.shard_size, progress=False)
        t_local = time.perf_counter() - t

        t = time.perf_counter()
        ray.init(num_cpus=args.actors, include_dashboard=False, log_to_driver=False, configure_logging=False)
        t_start = time.perf_counter() - t
        try:
            t = time.perf_counter()
            remote = run_batch(manifest, Path(tmp) / "ray", TaskSpec("segment", threads=1), engine="ray",
                               shard_size=args.shard_size, ray_options=RayOptions(actors=args.actors, num_cpus=1),
                               progress=False)
            t_ray = time.perf_counter() - t
        finally:
            ray.shutdown()
        same = read_results(local.task_dir).equals(read_results(remote.task_dir))
    n = len(paths)
    from cxrkit.models import create_model
    from cxrkit.models.device import resolve_precision

    card = create_model("hybridgnet", pretrained=True).card
    print(f"segment, {n} images from {folder}, shards of {args.shard_size}, {os.cpu_count()} CPUs, ray {ray.__version__}; "
          f"precision {TaskSpec('segment').precision} = {resolve_precision(TaskSpec('segment').precision, card, 'cpu')} "
          f"({card.name}'s inference_precision)")
    rows = [(f"local engine ({args.threads} torch threads)", t_local, ""),
            (f"ray engine ({args.actors} actors x 1 CPU, 1 thread)", t_ray,
             f" (+ {t_start:.1f} s to start the local Ray instance)")]
    for label, dt, note in rows:
        print(f"  {label + ':':<42} {dt:6.1f} s  {n / dt:6.2f} images/s{note}")
    print(f"  ray / local: {t_local / t_ray:4.2f}x; results identical: {same}; errors: {local.errors} / {remote.errors}")


if __name__ == "__main__":
    main()

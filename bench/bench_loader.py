"""Training-loader throughput: NIHDataset reading PNGs vs reading the preprocessing cache, same run.

Usage: python bench/bench_loader.py [--images DIR] [--size 224] [--workers 2] [--batch 32] [--passes 3] [--tiny]
Default images: ../shared/data/nih/images (200 real 1024x1024 NIH PNGs), else the bundled sample.
Baseline: NIHDataset over the PNG folder (decode + area resize per sample, as without a cache).
Both loaders use the same DataLoader settings; each runs `passes` epochs after a warm-up epoch (page
cache warm for both); the best epoch is reported, the epochs of the two loaders interleaved. Target: cache
>= 5x the PNG loader.
``--tiny``: 6 images, batch 2, no worker processes, one pass (a smoke run for the test suite; no figure is asserted).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

from cxrkit.data.cache import build_cache
from cxrkit.data.locate import ImageLocator
from cxrkit.data.torch_datasets import NIHDataset, collate

REPO = Path(__file__).resolve().parents[1]


def _epoch(ds, batch: int, workers: int) -> float:
    loader = torch.utils.data.DataLoader(ds, batch_size=batch, num_workers=workers, collate_fn=collate)
    t = time.perf_counter()
    n = sum(len(b["id"]) for b in loader)
    return n / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--passes", type=int, default=3)
    ap.add_argument("--tiny", action="store_true", help="6 images, batch 2, no workers, one pass: a smoke run")
    args = ap.parse_args()
    shared = Path(os.environ.get("CXRKIT_SHARED_DATA", REPO.parent / "shared" / "data")) / "nih" / "images"
    images = Path(args.images) if args.images else (shared if shared.is_dir() else REPO / "src/cxrkit/demo/sample/nih/images")
    locator = ImageLocator(images)
    names = locator.names()
    if args.tiny:
        names, args.batch, args.workers, args.passes = names[:6], 2, 0, 1
    table = pd.DataFrame({"Image Index": names, "Patient ID": [int(n.split("_")[0]) for n in names]})
    from cxrkit.findings import FINDINGS

    for f in FINDINGS:
        table[f] = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        cache = build_cache(names, locator, Path(tmp) / "cache", size=args.size, workers=args.workers, progress=False)
        build_s = time.perf_counter() - t
        sets = {label: NIHDataset(table, source, size=args.size)
                for label, source in (("PNG folder (baseline)", locator), ("preprocessing cache", cache))}
        for ds in sets.values():
            _epoch(ds, args.batch, args.workers)  # warm-up
        results = {label: 0.0 for label in sets}
        for _ in range(args.passes):  # interleaved epochs: load drift hits both loaders alike
            for label, ds in sets.items():
                results[label] = max(results[label], _epoch(ds, args.batch, args.workers))
    print(f"{len(names)} images from {images}, {args.size}px, batch {args.batch}, {args.workers} workers")
    print(f"cache build (decode + resize once, {args.workers} processes): {build_s:.2f} s "
          f"({len(names) / build_s:.0f} img/s)")
    base = results["PNG folder (baseline)"]
    for label, ips in results.items():
        print(f"{label:<28} {ips:9.0f} img/s   {ips / base:6.1f}x")


if __name__ == "__main__":
    main()

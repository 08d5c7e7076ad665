"""Segmentation throughput: the shipped hybridgnet in fp32 (baseline) vs bf16 autocast + channels_last,
batch inference on CPU, and end-to-end `cxrkit segment` time per image (decode, predict, fill, RLE, CSV).

Usage: python bench/bench_segment.py [--images DIR] [--batch 16] [--repeats 3]
Default images: ../shared/data/nih/images (200 real NIH PNGs), else the bundled sample.
(The `unet` pixel baseline named by the issue is not trained yet; it will join this comparison.)
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from cxrkit.io.images import load_gray8
from cxrkit.models import create_model
from cxrkit.segmentation.infer import segment_files

REPO = Path(__file__).resolve().parents[1]


def _throughput(model, x: torch.Tensor, bf16: bool, repeats: int) -> float:
    best = 0.0
    xx = x.contiguous(memory_format=torch.channels_last) if bf16 else x
    m = model.to(memory_format=torch.channels_last) if bf16 else model
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        m(xx[:2])
        for _ in range(repeats):
            t = time.perf_counter()
            m(xx)
            best = max(best, len(x) / (time.perf_counter() - t))
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    shared = REPO.parent / "shared" / "data" / "nih" / "images"
    folder = Path(args.images) if args.images else (shared if shared.is_dir() else REPO / "src/cxrkit/demo/sample/nih/images")
    paths = sorted(folder.glob("*.png"))
    model = create_model("hybridgnet", pretrained=True)
    x, _ = model.preprocess([load_gray8(p) for p in paths[: args.batch]])
    fp32 = _throughput(create_model("hybridgnet", pretrained=True), x, False, args.repeats)
    bf16 = _throughput(create_model("hybridgnet", pretrained=True), x, True, args.repeats)
    print(f"hybridgnet model only, batch {len(x)}, {torch.get_num_threads()} threads:")
    print(f"  fp32 (baseline)            {fp32:8.1f} img/s")
    print(f"  bf16 + channels_last       {bf16:8.1f} img/s   {bf16 / fp32:5.2f}x")
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        segment_files(model, paths, Path(tmp) / "seg.csv", progress=False)
        dt = time.perf_counter() - t
    print(f"cxrkit segment end to end on {len(paths)} images from {folder}: {1000 * dt / len(paths):.1f} ms/image "
          f"(decode + predict + fill + RLE + CSV)")


if __name__ == "__main__":
    main()

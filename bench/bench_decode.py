"""Decode + resize throughput: cxrkit.io.images.load_gray8 vs Pillow open+convert+resize, same images, same run.

Usage: python bench/bench_decode.py [--images DIR] [--size 224] [--repeat 3]
Default images: ../shared/data/nih/images (200 real 1024x1024 NIH PNGs), else the bundled sample.
Each method runs `repeat` passes over all images (after one warm-up pass that fills the page cache);
the best pass is reported, so both methods read from the cache.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from cxrkit.io.images import load_gray8

REPO = Path(__file__).resolve().parents[1]


def pillow_baseline(path: Path, size: int) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("L").resize((size, size), Image.BILINEAR))


def timed(methods, files, size, repeat):
    """Best seconds/image per method; passes alternate between methods so load changes hit both."""
    for fn in methods.values():  # warm-up: page cache, lazy imports
        for f in files:
            fn(f, size)
    best = {name: float("inf") for name in methods}
    for _ in range(repeat):
        for name, fn in methods.items():
            t = time.perf_counter()
            for f in files:
                fn(f, size)
            best[name] = min(best[name], (time.perf_counter() - t) / len(files))
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default = REPO.parent / "shared" / "data" / "nih" / "images"
    if not default.is_dir():
        default = REPO / "src" / "cxrkit" / "demo" / "sample" / "nih" / "images"
    ap.add_argument("--images", type=Path, default=default)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    files = sorted(args.images.glob("*.png"))
    t = timed({"ours": load_gray8, "base": pillow_baseline}, files, args.size, args.repeat)
    ours, base = t["ours"], t["base"]
    print(f"images: {len(files)} from {args.images}, target {args.size}x{args.size}")
    print(f"{'method':42s} {'ms/image':>9s} {'images/s':>9s}")
    print(f"{'Pillow open+convert(L)+resize (baseline)':42s} {base * 1e3:9.2f} {1 / base:9.1f}")
    print(f"{'cxrkit load_gray8 (cv2 gray decode+area)':42s} {ours * 1e3:9.2f} {1 / ours:9.1f}")
    print(f"speed-up: {base / ours:.2f}x (target >= 1.3x)")


if __name__ == "__main__":
    main()

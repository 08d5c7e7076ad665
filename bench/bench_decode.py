"""Decode + resize throughput: cxrkit.io.images.load_gray8 vs Pillow open+convert+resize, same images, same run.

Usage: python bench/bench_decode.py [--images DIR] [--size 224] [--repeat 5] [--tiny]
Default images: ../shared/data/nih/images (200 real 1024x1024 NIH PNGs), else the bundled sample.
Each method runs `repeat` passes over all images (after one warm-up pass that fills the page cache);
the best pass is reported, so both methods read from the cache.
``--tiny``: 4 images, one pass (a smoke run for the test suite; no figure is asserted).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from cxrkit.io.images import load_gray8

REPO = Path(__file__).resolve().parents[1]


def pillow_default(path: Path, size: int) -> np.ndarray:
    """Pillow open + convert('L') + resize with Pillow's default filter (bicubic, antialiased)."""
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("L").resize((size, size)))


def pillow_bilinear(path: Path, size: int) -> np.ndarray:
    """The same with the cheaper bilinear filter."""
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
    default = Path(os.environ.get("CXRKIT_SHARED_DATA", REPO.parent / "shared" / "data")) / "nih" / "images"
    if not default.is_dir():
        default = REPO / "src" / "cxrkit" / "demo" / "sample" / "nih" / "images"
    ap.add_argument("--images", type=Path, default=default)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--tiny", action="store_true", help="4 images, one pass: a smoke run")
    args = ap.parse_args()
    files = sorted(args.images.glob("*.png"))
    if args.tiny:
        files, args.repeat = files[:4], 1
    methods = {
        "Pillow open+convert(L)+resize, default bicubic (baseline)": pillow_default,
        "Pillow open+convert(L)+resize, bilinear (baseline)": pillow_bilinear,
        "cxrkit load_gray8 (cv2 gray decode + area)": load_gray8,
    }
    t = timed(methods, files, args.size, args.repeat)
    ours = t["cxrkit load_gray8 (cv2 gray decode + area)"]
    print(f"images: {len(files)} from {args.images}, target {args.size}x{args.size}, best of {args.repeat} passes")
    print(f"{'method':60s} {'ms/image':>9s} {'images/s':>9s} {'speed-up':>9s}")
    for name, sec in t.items():
        print(f"{name:60s} {sec * 1e3:9.2f} {1 / sec:9.1f} {sec / ours:8.2f}x")
    print("speed-up = baseline time / cxrkit time (target >= 1.3x)")


if __name__ == "__main__":
    main()

"""Benchmark: CheXmask RLE decode/encode, cxrkit vs CheXmask's own style, on the real 1024x1024 masks.

    .venv/bin/python bench/bench_rle.py [--data ../shared/data/chexmask/subsets] [--repeats 7]

Inputs: every RLE mask in the CSVs under ``--data`` (6 datasets + the physicians' files: 2,745 masks,
all 1024 x 1024). Both sides run in the same process, interleaved, on the same strings:

* baseline decode, the style of CheXmask's ``get_mask_from_RLE``: ``[int(x) for x in rle.split()]``,
  ``np.zeros(h * w, uint8)``, a Python loop ``for start, length in zip(...): mask[s:e] = 255``, reshape;
* cxrkit ``rle.decode``: ``np.fromstring`` parse + validation + one ``np.repeat`` of alternating
  False/True over the gap/run lengths (returns bool).

Every call allocates its own output on both sides. Two allocator regimes are measured, each in its
own process, with minor page faults per mask from ``getrusage``:

* warm: glibc's default dynamic mmap threshold; after the first free a 1 MiB block is recycled from
  the heap, so steady-state calls take no page faults (a decode loop that drops each mask);
* cold: ``MALLOC_MMAP_THRESHOLD_=131072`` pins every >= 128 KiB allocation to a fresh ``mmap``, so
  every output page is first-touched (a pipeline that keeps its masks). ``np.zeros`` is a lazy
  calloc: the baseline only faults in the pages its runs touch, while ``np.repeat`` writes (and
  faults) all 256 pages of the mask.

Two pairs are compared: each side allocating a new output per mask, and each side reusing one
output buffer (baseline: ``buf.fill(0)`` then the loop; cxrkit: ``decode(..., out=buf)``, which
writes in 120 KiB chunks so that no large temporary is allocated). Times are
per mask: the median over ``--repeats`` interleaved passes (and the best pass), with the garbage
collector off. Outputs are checked equal before timing.
"""

from __future__ import annotations

import argparse
import csv
import gc
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from cxrkit.io import rle as cxr  # noqa: E402

ORGANS = ("Right Lung", "Left Lung", "Heart")


# --- baselines: the style of CheXmask-Database/DataPostprocessing/utils.py ----------------------
def baseline_decode(rle: str, height: int, width: int) -> np.ndarray:
    runs = np.array([int(x) for x in rle.split()])
    starts = runs[::2]
    lengths = runs[1::2]
    mask = np.zeros((height * width), dtype=np.uint8)
    for start, length in zip(starts, lengths):
        start -= 1
        end = start + length
        mask[start:end] = 255
    return mask.reshape((height, width))


def baseline_decode_reused(rle: str, height: int, width: int, buf: np.ndarray) -> np.ndarray:
    runs = np.array([int(x) for x in rle.split()])
    buf.fill(0)
    for start, length in zip(runs[::2], runs[1::2]):
        start -= 1
        buf[start : start + length] = 255
    return buf.reshape((height, width))


def baseline_encode(mask: np.ndarray) -> str:
    m = (mask / 255).astype(int)
    pixels = np.concatenate([[0], m.flatten(), [0]])
    runs = np.where(pixels[1:] != pixels[:-1])[0] + 1
    runs[1::2] -= runs[::2]
    return " ".join(str(x) for x in runs)


# --- harness ------------------------------------------------------------------------------------
def load_masks(folder: Path) -> list[tuple[str, int, int]]:
    csv.field_size_limit(2**31 - 1)
    out = []
    for path in sorted(folder.glob("*.csv")):
        if "name_mapping" in path.name:
            continue
        with open(path, newline="") as fh:
            for row in csv.DictReader(fh):
                h = int(float(row.get("Height") or 1024))
                w = int(float(row.get("Width") or 1024))
                out.extend((row[c], h, w) for c in ORGANS)
    return out


def run_pass(fn: Callable, items: list) -> tuple[float, int]:
    """Seconds and minor page faults for one pass of ``fn`` over ``items``."""
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    t0 = time.perf_counter()
    for item in items:
        fn(*item)
    dt = time.perf_counter() - t0
    return dt, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0


def bench(cases: dict[str, tuple[Callable, list]], repeats: int) -> dict[str, dict[str, float]]:
    times: dict[str, list[float]] = {k: [] for k in cases}
    faults: dict[str, list[int]] = {k: [] for k in cases}
    gc.disable()
    try:
        for _ in range(repeats):  # interleaved, so drift in machine load hits every case alike
            for name, (fn, items) in cases.items():
                dt, nf = run_pass(fn, items)
                times[name].append(dt / len(items))
                faults[name].append(nf / len(items))
    finally:
        gc.enable()
    return {
        k: {"median_us": statistics.median(v) * 1e6, "best_us": min(v) * 1e6, "faults": statistics.median(faults[k])}
        for k, v in times.items()
    }


def table(title: str, res: dict, base: str, ours: str) -> None:
    print(f"\n{title}")
    print(f"  {'case':62s} {'median us':>10s} {'best us':>9s} {'faults':>7s}")
    for name, r in res.items():
        print(f"  {name:62s} {r['median_us']:10.1f} {r['best_us']:9.1f} {r['faults']:7.1f}")
    print(f"  speedup (median, {base.split(' (')[0]} / {ours.split(' (')[0]}): "
          f"{res[base]['median_us'] / res[ours]['median_us']:.1f}x")


def _decode_u8(s: str, h: int, w: int) -> np.ndarray:
    u = cxr.decode(s, h, w).view(np.uint8)  # the bool array is ours: scale its bytes in place
    np.multiply(u, np.uint8(255), out=u)
    return u


def decode_cases(items: list) -> dict[str, tuple[Callable, list]]:
    buf_u8 = np.empty(1024 * 1024, np.uint8)
    buf_bool = np.empty((1024, 1024), bool)
    return {
        "baseline decode (CheXmask loop, new np.zeros each call)": (baseline_decode, items),
        "cxrkit rle.decode (new bool array each call)": (cxr.decode, items),
        "baseline decode, reused buffer (fill(0) + loop)": (lambda s, h, w: baseline_decode_reused(s, h, w, buf_u8), items),
        "cxrkit rle.decode(out=reused buffer)": (lambda s, h, w: cxr.decode(s, h, w, out=buf_bool), items),
        "cxrkit rle.decode -> uint8 0/255 in place (as baseline returns)": (_decode_u8, items),
        "  parse only: baseline [int(x) for x in s.split()]": (lambda s, h, w: np.array([int(x) for x in s.split()]), items),
        "  parse only: cxrkit parse_runs (fromstring + checks)": (cxr.parse_runs, items),
    }


def decode_report(items: list, repeats: int, regime: str) -> None:
    dec = bench(decode_cases(items), repeats)
    n = list(dec)
    table(f"decode, per 1024x1024 mask, {regime} allocator", dec, n[0], n[1])
    print(f"  speedup, both reusing a buffer: {dec[n[2]]['median_us'] / dec[n[3]]['median_us']:.1f}x")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "chexmask" / "subsets")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--decode-only", choices=("cold",), help=argparse.SUPPRESS)  # child process
    args = ap.parse_args(argv)

    items = load_masks(args.data)
    if args.decode_only:
        decode_report(items, args.repeats, "cold (MALLOC_MMAP_THRESHOLD_=131072: fresh pages per mask)")
        return 0
    if not items:
        print(f"no CheXmask CSVs under {args.data}", file=sys.stderr)
        return 2
    runs = [len(s.split()) // 2 for s, _, _ in items]
    fg = [cxr.area(s, h, w) for s, h, w in items]
    print(f"{len(items)} real masks from {args.data} (sizes {sorted({(h, w) for _, h, w in items})}), "
          f"runs/mask median {int(np.median(runs))} (max {max(runs)}), foreground median {int(np.median(fg)):,} px")
    print(f"python {platform.python_version()}, numpy {np.__version__}, {platform.machine()}, "
          f"{platform.processor() or 'cpu'}; repeats {args.repeats}; per-mask times")

    # correctness first
    for s, h, w in items:
        ours = cxr.decode(s, h, w)
        assert np.array_equal(ours, baseline_decode(s, h, w) == 255)
        assert cxr.encode(ours) == s
    print("check: decode equal to the baseline and encode(decode(s)) == s on all masks")

    decode_report(items, args.repeats, "warm (default glibc)")
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072")
    cold = subprocess.run(
        [sys.executable, __file__, "--data", str(args.data), "--repeats", str(args.repeats), "--decode-only", "cold"],
        env=env, capture_output=True, text=True, check=True,
    )
    print(cold.stdout, end="")

    masks_bool = [(cxr.decode(s, h, w),) for s, h, w in items]
    masks_u8 = [(m.view(np.uint8) * np.uint8(255),) for (m,) in masks_bool]
    enc = bench(
        {
            "baseline encode (CheXmask get_RLE_from_mask style)": (baseline_encode, masks_u8[: max(1, len(items) // 4)]),
            "cxrkit rle.encode": (cxr.encode, masks_bool),
        },
        max(3, args.repeats // 2),
    )

    names = list(enc)
    table("encode, per 1024x1024 mask (baseline timed on a quarter of the masks)", enc, names[0], names[1])
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: CheXmask RLE decode/encode, cxrkit vs CheXmask's own code, on the real 1024x1024 masks.

    .venv/bin/python bench/bench_rle.py [--data ../shared/data/chexmask/subsets] [--repeats 3] [--tiny]

Inputs: every RLE mask of every row of the CSVs under ``--data`` (6 datasets + the physicians' files:
2,745 masks, all 1024 x 1024); without ``../shared/data``, the 12 masks of the bundled sample
(``src/cxrkit/demo/sample/chexmask``).

The baseline is CheXmask's own decoding code (``get_mask_from_RLE`` in CheXmask-Database): ``[int(x)
for x in rle.split()]``, ``np.zeros(h * w, uint8)``, a Python loop ``mask[start:end] = 255`` per run,
reshape. cxrkit is :func:`cxrkit.io.rle.decode` (C parser + validation, ``np.zeros``, one ``np.repeat``
over the span of the runs; bool result). Outputs are checked equal on every mask before timing.

Usage patterns, each timed COLD and WARM, for both decoders:

1. ``discard``: decode, use (count the foreground pixels), drop the mask -- the common loop;
2. ``keep``: decode every mask and keep them all in a list (2.9 GB for the 2,745 masks);
3. ``csv``: decode all masks of the CSVs: read every CSV with ``csv.DictReader``, decode the three
   masks of each row, count their foreground, drop them (reading included, the same code on both sides).

COLD is the first pass in a fresh Python process (fresh allocations: every mask of ``keep`` lands on
pages the process never touched, so page faults are part of the cost); WARM is the best of the next
passes in that process (``keep`` drops its list between passes). Each (pattern, decoder) runs in its
own process, ``--repeats`` times, the processes of the two decoders interleaved; the best pass of each
kind is reported, with minor page faults per mask (``getrusage``). A fault costs the same for both
sides; a fresh cxrkit mask faults in only the pages under the span of its runs, the same pages the
baseline's per-run slices touch.

Then, in this one process, interleaved, best (median) of ``--repeats`` passes: warm decode with and
without a reused output buffer, the parse step alone, and encode. Per-mask times throughout; the
garbage collector is off while timing.
``--tiny``: 12 masks, one repeat, one warm pass (a smoke run for the test suite; no figure is asserted).
"""

from __future__ import annotations

import argparse
import csv
import gc
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from cxrkit.io import rle as cxr  # noqa: E402

ORGANS = ("Right Lung", "Left Lung", "Heart")
SHARED = Path(os.environ.get("CXRKIT_SHARED_DATA", REPO.parent / "shared" / "data")) / "chexmask" / "subsets"
SAMPLE = REPO / "src" / "cxrkit" / "demo" / "sample" / "chexmask"
PATTERNS = ("discard", "keep", "csv")


# --- baselines: CheXmask-Database/DataPostprocessing/utils.py ------------------------------------
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


DECODERS: dict[str, Callable[[str, int, int], np.ndarray]] = {"baseline": baseline_decode, "cxrkit": cxr.decode}


# --- inputs ---------------------------------------------------------------------------------------
def csv_files(folder: Path) -> list[Path]:
    return [p for p in sorted(folder.glob("*.csv")) if "name_mapping" not in p.name]


def iter_csv_masks(folder: Path, limit: int | None = None) -> Iterator[tuple[str, int, int]]:
    """(rle, height, width) of every organ of every row of the CSVs under ``folder`` (at most ``limit``)."""
    csv.field_size_limit(2**31 - 1)
    n = 0
    for path in csv_files(folder):
        with open(path, newline="") as fh:
            for row in csv.DictReader(fh):
                h = int(float(row.get("Height") or 1024))
                w = int(float(row.get("Width") or 1024))
                for c in ORGANS:
                    if limit is not None and n >= limit:
                        return
                    n += 1
                    yield row[c], h, w


def load_masks(folder: Path, limit: int | None = None) -> list[tuple[str, int, int]]:
    return list(iter_csv_masks(folder, limit))


# --- cold / warm per pattern, one fresh process per (pattern, decoder) -----------------------------
def _faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def worker(pattern: str, decoder: str, folder: Path, limit: int | None, passes: int) -> dict:
    """Run ``passes`` passes of ``pattern`` with ``decoder`` in this (fresh) process; per-mask us and faults."""
    dec = DECODERS[decoder]
    items = load_masks(folder, limit)
    out = []
    gc.disable()
    for _ in range(passes):
        f0, t0 = _faults(), time.perf_counter()
        fg = 0
        if pattern == "discard":
            for s, h, w in items:
                fg += int(np.count_nonzero(dec(s, h, w)))
        elif pattern == "keep":
            keep = [dec(s, h, w) for s, h, w in items]
        elif pattern == "csv":
            for s, h, w in iter_csv_masks(folder, limit):
                fg += int(np.count_nonzero(dec(s, h, w)))
        else:
            raise SystemExit(f"unknown pattern {pattern}")
        dt, nf = time.perf_counter() - t0, _faults() - f0
        if pattern == "keep":
            fg = sum(int(np.count_nonzero(m)) for m in keep)  # checked, not timed
            del keep
        out.append({"us": 1e6 * dt / len(items), "faults": nf / len(items), "foreground": fg})
    return {"n": len(items), "passes": out}


def patterns_report(folder: Path, limit: int | None, repeats: int, passes: int) -> dict:
    """Best cold and best warm pass per (pattern, decoder) over ``repeats`` fresh processes each."""
    res: dict[tuple[str, str], list[dict]] = {}
    for _ in range(repeats):
        for pattern in PATTERNS:
            for decoder in DECODERS:  # interleaved: machine-load drift hits both sides alike
                cmd = [sys.executable, __file__, "--data", str(folder), "--worker", pattern, decoder,
                       "--passes", str(passes)] + ([] if limit is None else ["--limit", str(limit)])
                proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
                if proc.returncode:
                    raise SystemExit(f"worker {pattern} {decoder} failed:\n{proc.stderr}")
                res.setdefault((pattern, decoder), []).append(json.loads(proc.stdout.strip().splitlines()[-1]))
    print(f"\nusage patterns, per 1024x1024 mask: cold = first pass in a fresh process, warm = best later pass "
          f"(best of {repeats} processes each; faults = minor page faults per mask)")
    print(f"  {'pattern':50s} {'decoder':9s} {'cold us':>8s} {'faults':>7s} {'warm us':>8s} {'faults':>7s}")
    summary = {}
    labels = {"discard": "(a) decode, count pixels, discard",
              "keep": "(b) decode and keep every mask (list)",
              "csv": "(c) all masks of the CSVs (read + decode + count)"}
    for pattern in PATTERNS:
        fgs = {p["foreground"] for d in DECODERS for r in res[(pattern, d)] for p in r["passes"]}
        assert len(fgs) == 1, f"{pattern}: foreground counts differ between decoders: {fgs}"
        row = {}
        for decoder in DECODERS:
            runs = res[(pattern, decoder)]
            cold = min((r["passes"][0] for r in runs), key=lambda p: p["us"])
            warm_passes = [p for r in runs for p in r["passes"][1:]]
            warm = min(warm_passes, key=lambda p: p["us"]) if warm_passes else None
            row[decoder] = (cold, warm)
            print(f"  {labels[pattern]:50s} {decoder:9s} {cold['us']:8.1f} {cold['faults']:7.1f} "
                  + (f"{warm['us']:8.1f} {warm['faults']:7.1f}" if warm else f"{'-':>8s} {'-':>7s}"))
        cold_x = row["baseline"][0]["us"] / row["cxrkit"][0]["us"]
        warm_x = (row["baseline"][1]["us"] / row["cxrkit"][1]["us"]) if row["cxrkit"][1] else float("nan")
        print(f"  {'':50s} {'speed-up':9s} {cold_x:7.2f}x {'':7s} {warm_x:7.2f}x")
        summary[pattern] = {"cold": cold_x, "warm": warm_x}
    return summary


# --- in-process, interleaved ----------------------------------------------------------------------
def run_pass(fn: Callable, items: list) -> tuple[float, int]:
    """Seconds and minor page faults for one pass of ``fn`` over ``items``."""
    f0 = _faults()
    t0 = time.perf_counter()
    for item in items:
        fn(*item)
    dt = time.perf_counter() - t0
    return dt, _faults() - f0


def bench(cases: dict[str, tuple[Callable, list]], repeats: int) -> dict[str, dict[str, float]]:
    times: dict[str, list[float]] = {k: [] for k in cases}
    faults: dict[str, list[float]] = {k: [] for k in cases}
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
    print(f"  {'case':66s} {'median us':>10s} {'best us':>9s} {'faults':>7s}")
    for name, r in res.items():
        print(f"  {name:66s} {r['median_us']:10.1f} {r['best_us']:9.1f} {r['faults']:7.1f}")
    print(f"  speed-up of cxrkit over the baseline: best {res[base]['best_us'] / res[ours]['best_us']:.2f}x, "
          f"median {res[base]['median_us'] / res[ours]['median_us']:.2f}x")


def _count(fn: Callable) -> Callable:
    return lambda s, h, w: np.count_nonzero(fn(s, h, w))


def decode_cases(items: list) -> dict[str, tuple[Callable, list]]:
    buf_u8 = np.empty(1024 * 1024, np.uint8)
    buf_bool = np.empty((1024, 1024), bool)
    return {
        "baseline: CheXmask loop, new np.zeros per mask, count pixels": (_count(baseline_decode), items),
        "cxrkit rle.decode, new array per mask, count pixels": (_count(cxr.decode), items),
        "baseline, one reused buffer (fill(0) + loop), count pixels": (
            _count(lambda s, h, w: baseline_decode_reused(s, h, w, buf_u8)), items),
        "cxrkit rle.decode(out=one reused buffer), count pixels": (
            _count(lambda s, h, w: cxr.decode(s, h, w, out=buf_bool)), items),
        "  parse only: baseline [int(x) for x in s.split()]": (lambda s, h, w: np.array([int(x) for x in s.split()]), items),
        "  parse only: cxrkit parse_runs (C parser + checks)": (cxr.parse_runs, items),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=None,
                    help="folder of CheXmask CSVs (default ../shared/data/chexmask/subsets, else the bundled sample)")
    ap.add_argument("--repeats", type=int, default=3, help="fresh processes per (pattern, decoder); in-process passes")
    ap.add_argument("--passes", type=int, default=3, help="passes per fresh process (1 cold + the rest warm)")
    ap.add_argument("--limit", type=int, default=None, help="use only the first N masks")
    ap.add_argument("--tiny", action="store_true", help="12 masks, one repeat, one warm pass: a smoke run")
    ap.add_argument("--worker", nargs=2, metavar=("PATTERN", "DECODER"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    folder = args.data or (SHARED if SHARED.is_dir() else SAMPLE)
    if args.worker:
        print(json.dumps(worker(*args.worker, folder, args.limit, args.passes)))
        return 0
    if args.tiny:
        args.limit, args.repeats, args.passes = 12, 1, 2

    items = load_masks(folder, args.limit)
    if not items:
        print(f"no CheXmask CSVs under {folder}", file=sys.stderr)
        return 2
    runs = [len(s.split()) // 2 for s, _, _ in items]
    fg = [cxr.area(s, h, w) for s, h, w in items]
    print(f"{len(items)} real masks from {len(csv_files(folder))} CSVs in {folder} (sizes "
          f"{sorted({(h, w) for _, h, w in items})}), runs/mask median {int(np.median(runs))} (max {max(runs)}), "
          f"foreground median {int(np.median(fg)):,} px")
    print(f"python {platform.python_version()}, numpy {np.__version__}, {platform.machine()}; per-mask times")

    # correctness first
    for s, h, w in items:
        ours = cxr.decode(s, h, w)
        assert np.array_equal(ours, baseline_decode(s, h, w) == 255)
        assert cxr.encode(ours) == s
    print("check: decode equal to the baseline and encode(decode(s)) == s on all masks")

    summary = patterns_report(folder, args.limit, args.repeats, args.passes)

    dec = bench(decode_cases(items), args.repeats)
    n = list(dec)
    table(f"warm decode in this process, interleaved, best and median of {args.repeats} passes", dec, n[0], n[1])
    print(f"  speed-up, both reusing one buffer: best {dec[n[2]]['best_us'] / dec[n[3]]['best_us']:.2f}x")

    masks_bool = [(cxr.decode(s, h, w),) for s, h, w in items]
    masks_u8 = [(m.view(np.uint8) * np.uint8(255),) for (m,) in masks_bool]
    enc = bench(
        {
            "baseline encode (CheXmask get_RLE_from_mask)": (baseline_encode, masks_u8[: max(1, len(items) // 4)]),
            "cxrkit rle.encode": (cxr.encode, masks_bool),
        },
        args.repeats,
    )
    names = list(enc)
    table("encode, per 1024x1024 mask (baseline timed on a quarter of the masks)", enc, names[0], names[1])
    print("\nsummary (speed-up of cxrkit over the baseline, best passes): "
          + "; ".join(f"{p} cold {v['cold']:.2f}x, warm {v['warm']:.2f}x" for p, v in summary.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())

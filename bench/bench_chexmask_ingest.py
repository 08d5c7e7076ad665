"""Benchmark: stream a >= 1 GB CheXmask CSV and decode every mask; rows/s and peak RSS vs pandas baselines.

    .venv/bin/python bench/bench_chexmask_ingest.py [--size-gb 1.0] [--slice-mb 256] [--keep] [--tmp DIR]

1. Builds a CSV of ``--size-gb`` GB in a temporary folder by repeating the 305 real HybridGNet rows of
   the six CheXmask CSVs under ``--data`` (rewritten under the ChestX-ray8 header; Padchest's blank
   and ``1024.0`` Height/Width are kept; ids get a ``#copy`` suffix), and a slice of its first
   ``--slice-mb`` MB (whole rows).
2. Runs each method in a fresh Python process and reads its peak RSS from ``/proc/self/status``
   (``VmHWM``):

   * ``cxrkit stream``: :func:`cxrkit.data.chexmask.iter_records` + ``record.masks()`` (all three
     masks of every row decoded), on the full file and on the slice;
   * ``pandas.read_csv`` (whole file in memory) + CheXmask's loop decode (``get_mask_from_RLE``
     style), on the slice only: its memory grows with the file;
   * ``pandas.read_csv(chunksize=1000)`` + the same loop decode, on the slice.

   Every method counts the foreground pixels of all masks; the counts must agree.
3. Deletes the folder unless ``--keep``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "bench"))

from _chexmask_csv import build  # noqa: E402

ORGAN_COLUMNS = ("Right Lung", "Left Lung", "Heart")


def vm_hwm_mb() -> float:
    """Peak resident set size of this process in MB (VmHWM), falling back to ru_maxrss."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:  # pragma: no cover - not Linux
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024




# --- workers (run in a child process each) ------------------------------------------------------
def baseline_decode(rle: str, height: int, width: int):
    import numpy as np

    runs = np.array([int(x) for x in rle.split()])
    mask = np.zeros((height * width), dtype=np.uint8)
    for start, length in zip(runs[::2], runs[1::2]):
        start -= 1
        mask[start : start + length] = 255
    return mask.reshape((height, width))


def _size(v) -> int:
    import math

    return 1024 if v is None or (isinstance(v, float) and math.isnan(v)) or v == "" else int(float(v))


def worker(mode: str, path: str) -> dict:
    import numpy as np
    import pandas as pd  # noqa: F401  (same imports in every worker: comparable RSS)

    from cxrkit.data.chexmask import iter_records

    rss0 = vm_hwm_mb()
    t0 = time.perf_counter()
    rows = fg = 0
    parse_s = 0.0
    if mode == "stream":
        for rec in iter_records(path):
            for m in rec.masks().values():
                fg += int(np.count_nonzero(m))
            rows += 1
    elif mode == "pandas_full":
        df = pd.read_csv(path, keep_default_na=False, dtype=str)
        parse_s = time.perf_counter() - t0
        for h, w, *rles in zip(df["Height"], df["Width"], *(df[c] for c in ORGAN_COLUMNS)):
            for r in rles:
                fg += int(np.count_nonzero(baseline_decode(r, _size(h), _size(w))))
            rows += 1
    elif mode == "pandas_chunked":
        for chunk in pd.read_csv(path, keep_default_na=False, dtype=str, chunksize=1000):
            for h, w, *rles in zip(chunk["Height"], chunk["Width"], *(chunk[c] for c in ORGAN_COLUMNS)):
                for r in rles:
                    fg += int(np.count_nonzero(baseline_decode(r, _size(h), _size(w))))
                rows += 1
    else:
        raise SystemExit(f"unknown mode {mode}")
    seconds = time.perf_counter() - t0
    return {"mode": mode, "rows": rows, "seconds": seconds, "parse_s": parse_s, "foreground": fg,
            "rss_after_imports_mb": rss0, "peak_rss_mb": vm_hwm_mb()}


def run_worker(mode: str, path: Path) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--worker", mode, str(path)], capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"worker {mode} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "chexmask" / "subsets")
    ap.add_argument("--size-gb", type=float, default=1.0, help="size of the big CSV in GB (10^9 bytes), default 1.0")
    ap.add_argument("--slice-mb", type=float, default=256, help="size of the slice for the pandas baselines (MB, 10^6)")
    ap.add_argument("--tmp", type=Path, default=None, help="folder for the temporary files (default: system temp)")
    ap.add_argument("--keep", action="store_true", help="keep the generated CSVs")
    ap.add_argument("--worker", nargs=2, metavar=("MODE", "CSV"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(*args.worker)))
        return 0

    tmp = Path(tempfile.mkdtemp(prefix="cxrkit_ingest_", dir=args.tmp))
    try:
        big, small = tmp / "chexmask_big.csv", tmp / "chexmask_slice.csv"
        t0 = time.perf_counter()
        n, n_slice = build(args.data, big, int(args.size_gb * 1e9), small, int(args.slice_mb * 1e6),
                           make_id=lambda rid, k: f"{rid}#{k}")
        big_mb, small_mb = big.stat().st_size / 1e6, small.stat().st_size / 1e6
        print(f"built {big} : {big_mb:,.0f} MB, {n:,} rows; slice {small_mb:,.0f} MB, {n_slice:,} rows "
              f"({time.perf_counter() - t0:.1f} s)")
        print(f"python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} cpus; one process per line\n")
        runs = [
            ("cxrkit stream (iter_records + masks())", "stream", big, big_mb),
            ("cxrkit stream (iter_records + masks())", "stream", small, small_mb),
            ("baseline: pandas.read_csv whole file + CheXmask loop decode", "pandas_full", small, small_mb),
            ("baseline: pandas.read_csv chunksize=1000 + CheXmask loop", "pandas_chunked", small, small_mb),
        ]
        results = []
        print(f"{'method':62s} {'input':>9s} {'rows':>7s} {'s':>7s} {'rows/s':>8s} {'MB/s':>6s} {'peak RSS MB':>11s}")
        for label, mode, path, mb in runs:
            r = run_worker(mode, path)
            results.append((label, path, r))
            extra = f"  (read_csv {r['parse_s']:.1f} s)" if r["parse_s"] else ""
            print(f"{label:62s} {mb:7,.0f}MB {r['rows']:7,d} {r['seconds']:7.1f} {r['rows'] / r['seconds']:8,.0f} "
                  f"{mb / r['seconds']:6.1f} {r['peak_rss_mb']:11,.0f}{extra}")
        slice_fg = {r["foreground"] for _, p, r in results if p == small}
        assert len(slice_fg) == 1, f"foreground pixel counts differ between methods: {slice_fg}"
        big_r = results[0][2]
        assert big_r["rows"] == n and big_r["peak_rss_mb"] < 1024, big_r
        print(f"\nchecks: all methods decode the same {slice_fg.pop():,} foreground pixels on the slice; "
              f"streaming peak RSS {big_r['peak_rss_mb']:.0f} MB on {big_mb:,.0f} MB "
              f"(interpreter + imports: {big_r['rss_after_imports_mb']:.0f} MB) < 1024 MB")
        full = next(r for lbl, p, r in results if r["mode"] == "pandas_full")
        print(f"pandas whole-file peak RSS grows with the input: {full['peak_rss_mb']:.0f} MB for {small_mb:.0f} MB "
              f"({(full['peak_rss_mb'] - full['rss_after_imports_mb']) / small_mb:.1f} MB per MB of CSV)")
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: stream a >= 1 GB CheXmask CSV and decode every mask; rows/s and peak RSS vs pandas read_csv.

    .venv/bin/python bench/bench_chexmask_ingest.py [--size-gb 1.0] [--slice-mb 256] [--repeat 3] [--keep] [--tmp DIR] [--tiny]

1. Builds a CSV of ``--size-gb`` GB in a temporary folder by repeating the 305 real HybridGNet rows of
   the six CheXmask CSVs under ``--data`` (rewritten under the ChestX-ray8 header; Padchest's blank
   and ``1024.0`` Height/Width are kept; ids get a ``#copy`` suffix), and a slice of its first
   ``--slice-mb`` MB (whole rows).
2. Runs each method in a fresh Python process and reads its peak RSS from ``/proc/self/status``
   (``VmHWM``). Every method decodes every mask with THE SAME decoder, :func:`cxrkit.io.rle.decode`,
   and counts its foreground pixels (the counts must agree), so the ratios measure how the CSV is read:

   * ``cxrkit stream``: :func:`cxrkit.data.chexmask.iter_records` + ``record.masks()`` (one row in
     memory at a time);
   * baseline ``pandas.read_csv`` of the whole file (``dtype=str``) + the same decode per row; its
     memory grows with the file;
   * baseline ``pandas.read_csv(chunksize=1000)`` + the same decode.

   On the slice the three run ``--repeat`` times, interleaved, best run reported (rows/s, and the peak
   RSS of that run); the streaming reader also runs once on the full file (flat memory: its peak RSS
   must stay below 1 GB).
3. Deletes the folder unless ``--keep``.
``--tiny``: a 3 MB file and a 1 MB slice, one run each (a smoke run for the test suite; no figure is
asserted). Without ``../shared/data`` the bundled sample rows are used.
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

from _chexmask_csv import SAMPLE, SHARED, build  # noqa: E402

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
def _size(v) -> int:
    import math

    return 1024 if v is None or (isinstance(v, float) and math.isnan(v)) or v == "" else int(float(v))


def worker(mode: str, path: str) -> dict:
    import numpy as np
    import pandas as pd  # noqa: F401  (same imports in every worker: comparable RSS)

    from cxrkit.data.chexmask import iter_records
    from cxrkit.io.rle import decode

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
            h, w = _size(h), _size(w)
            for r in rles:
                fg += int(np.count_nonzero(decode(r, h, w)))
            rows += 1
    elif mode == "pandas_chunked":
        for chunk in pd.read_csv(path, keep_default_na=False, dtype=str, chunksize=1000):
            for h, w, *rles in zip(chunk["Height"], chunk["Width"], *(chunk[c] for c in ORGAN_COLUMNS)):
                h, w = _size(h), _size(w)
                for r in rles:
                    fg += int(np.count_nonzero(decode(r, h, w)))
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
    ap.add_argument("--data", type=Path, default=None,
                    help="CheXmask CSV folder (default ../shared/data/chexmask/subsets, else the bundled sample)")
    ap.add_argument("--size-gb", type=float, default=1.0, help="size of the big CSV in GB (10^9 bytes), default 1.0")
    ap.add_argument("--slice-mb", type=float, default=256, help="size of the slice for the comparison (MB, 10^6)")
    ap.add_argument("--repeat", type=int, default=3, help="interleaved runs of each method on the slice (best reported)")
    ap.add_argument("--tmp", type=Path, default=None, help="folder for the temporary files (default: system temp)")
    ap.add_argument("--keep", action="store_true", help="keep the generated CSVs")
    ap.add_argument("--tiny", action="store_true", help="3 MB file, 1 MB slice, one run each: a smoke run")
    ap.add_argument("--worker", nargs=2, metavar=("MODE", "CSV"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(*args.worker)))
        return 0
    data = args.data or (SHARED if SHARED.is_dir() else SAMPLE)
    if args.tiny:
        args.size_gb, args.slice_mb, args.repeat = 0.003, 1, 1

    tmp = Path(tempfile.mkdtemp(prefix="cxrkit_ingest_", dir=args.tmp))
    try:
        big, small = tmp / "chexmask_big.csv", tmp / "chexmask_slice.csv"
        t0 = time.perf_counter()
        n, n_slice = build(data, big, int(args.size_gb * 1e9), small, int(args.slice_mb * 1e6),
                           make_id=lambda rid, k: f"{rid}#{k}")
        big_mb, small_mb = big.stat().st_size / 1e6, small.stat().st_size / 1e6
        print(f"built {big} : {big_mb:,.0f} MB, {n:,} rows; slice {small_mb:,.0f} MB, {n_slice:,} rows "
              f"({time.perf_counter() - t0:.1f} s) from {data}")
        print(f"python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} cpus; one process per run; "
              f"every method decodes with cxrkit.io.rle.decode\n")
        methods = {
            "stream": "cxrkit stream (iter_records + masks())",
            "pandas_full": "baseline: pandas.read_csv whole file + same decode",
            "pandas_chunked": "baseline: pandas.read_csv chunksize=1000 + same decode",
        }
        runs: dict[str, list[dict]] = {m: [] for m in methods}
        for _ in range(args.repeat):
            for mode in methods:  # interleaved, so load drift hits every method alike
                runs[mode].append(run_worker(mode, small))
        best = {m: min(v, key=lambda r: r["seconds"]) for m, v in runs.items()}
        big_r = run_worker("stream", big)
        print(f"{'method':58s} {'input':>9s} {'rows':>7s} {'s':>7s} {'rows/s':>8s} {'MB/s':>6s} {'peak RSS MB':>11s}")

        def line(label: str, r: dict, mb: float) -> None:
            extra = f"  (read_csv {r['parse_s']:.1f} s)" if r["parse_s"] else ""
            print(f"{label:58s} {mb:7,.0f}MB {r['rows']:7,d} {r['seconds']:7.1f} {r['rows'] / r['seconds']:8,.0f} "
                  f"{mb / r['seconds']:6.1f} {r['peak_rss_mb']:11,.0f}{extra}")

        print(f"slice, best of {args.repeat}:")
        for mode, label in methods.items():
            line(label, best[mode], small_mb)
        print("full file, once:")
        line(methods["stream"], big_r, big_mb)
        slice_fg = {r["foreground"] for v in runs.values() for r in v}
        assert len(slice_fg) == 1, f"foreground pixel counts differ between methods: {slice_fg}"
        assert big_r["rows"] == n and big_r["peak_rss_mb"] < 1024, big_r
        s, f, c = best["stream"], best["pandas_full"], best["pandas_chunked"]
        print(f"\nstreaming vs read_csv, same decoder, on the slice: {f['seconds'] / s['seconds']:.2f}x the rows/s of "
              f"read_csv whole file ({s['peak_rss_mb']:.0f} vs {f['peak_rss_mb']:.0f} MB peak RSS), "
              f"{c['seconds'] / s['seconds']:.2f}x of read_csv chunked ({c['peak_rss_mb']:.0f} MB)")
        print(f"checks: all methods decode the same {slice_fg.pop():,} foreground pixels on the slice; "
              f"streaming peak RSS {big_r['peak_rss_mb']:.0f} MB on {big_mb:,.0f} MB "
              f"(interpreter + imports: {big_r['rss_after_imports_mb']:.0f} MB) < 1024 MB")
        print(f"pandas whole-file peak RSS grows with the input: {f['peak_rss_mb']:.0f} MB for {small_mb:.0f} MB "
              f"({(f['peak_rss_mb'] - f['rss_after_imports_mb']) / small_mb:.1f} MB per MB of CSV)")
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

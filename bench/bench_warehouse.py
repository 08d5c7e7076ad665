"""Benchmark: CheXmask CSV -> Parquet conversion (rows/s, peak RSS) and a query on Parquet (DuckDB) vs the CSV (pandas).

    .venv/bin/python bench/bench_warehouse.py [--size-gb 1.0] [--small-gb 0.25] [--tmp DIR] [--keep]

1. Builds a CSV of ``--size-gb`` GB (10^9 bytes) in a temporary folder by repeating the 305 real
   HybridGNet rows of the six CheXmask CSVs under ``--data`` (rewritten under the ChestX-ray8 header,
   Padchest's blank Height/Width kept), each copy with a unique id ``copy<k>/<original id>``, so
   ``image_index`` is still the original file name and the ChestX-ray8 copies join the NIH metadata;
   plus a ``--small-gb`` prefix of it (whole rows).
2. Converts both with ``cxrkit chexmask to-parquet`` (one fresh process each, peak RSS from
   ``os.wait4``'s ``ru_maxrss``): rows/s and peak RSS, which must not grow with the input (flat
   memory). Baseline on the small CSV: ``pandas.read_csv`` (whole file) + ``DataFrame.to_parquet``
   (no derived columns), whose memory grows with the file.
3. The example query (images labelled Cardiomegaly with CTR > 0.5 and Dice RCA (Mean) >= 0.7) and a
   per-copy Dice aggregate, timed in a fresh process each:

   * ``cxrkit query`` (DuckDB over the Parquet files + the NIH metadata);
   * baseline: ``pandas.read_csv`` of the big CSV, the NIH join and Dice filter in pandas, then the
     CTR of the remaining rows from their decoded masks (``cxrkit.anatomy.measure.measure_masks``).

   Both must give the same rows.
4. Deletes the folder unless ``--keep``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
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

EXAMPLE_SQL = (
    'SELECT c.image_id, c.ctr, c."Dice RCA (Mean)" FROM chexmask c JOIN nih n ON n."Image Index" = c.image_index '
    'WHERE n.Cardiomegaly = 1 AND c.ctr > 0.5 AND c."Dice RCA (Mean)" >= 0.7'
)
AGG_SQL = ('SELECT count(*) AS n, avg("Dice RCA (Mean)") AS dice, avg(qc_pass::INT) AS qc_rate, '
           'avg(ctr) AS ctr FROM chexmask')




def run_measured(cmd: list[str]) -> tuple[float, float, str]:
    """Run ``cmd``; returns (seconds, peak RSS MB of that process, stdout)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate()
    seconds = time.perf_counter() - t0
    # RUSAGE_CHILDREN would be a maximum over every child so far, so each measured command runs under a
    # `--rss` wrapper that reaps it with os.wait4 and prints that one process's peak RSS last.
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{err}")
    lines = out.strip().splitlines()
    info = json.loads(lines[-1])
    return seconds, info["peak_rss_mb"], "\n".join(lines[:-1])


def wrapped(argv: list[str]) -> list[str]:
    """A command running ``argv`` (a Python module's argv) in a child process that prints its peak RSS."""
    return [sys.executable, __file__, "--rss", *argv]


def rss_wrapper(argv: list[str]) -> int:
    """Run ``python argv`` as a child, pass its stdout through, then print {"peak_rss_mb"} from os.wait4."""
    proc = subprocess.Popen([sys.executable, *argv], stdout=subprocess.PIPE, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    sys.stdout.write(out)
    print(json.dumps({"peak_rss_mb": usage.ru_maxrss / 1024}))
    return proc.returncode


# --- workers ----------------------------------------------------------------------------------------
def worker_pandas_to_parquet(src: str, dst: str) -> None:
    import pandas as pd

    df = pd.read_csv(src, dtype=str, keep_default_na=False)
    df.to_parquet(dst, compression="zstd", index=False)
    print(f"rows {len(df)}")


def worker_pandas_query(src: str, nih_path: str) -> None:
    import math

    import pandas as pd

    from cxrkit.anatomy.measure import measure_masks
    from cxrkit.data.nih import read_metadata
    from cxrkit.io.rle import decode

    t0 = time.perf_counter()
    df = pd.read_csv(src, keep_default_na=False, dtype=str)
    read_s = time.perf_counter() - t0
    nih = read_metadata(nih_path)
    mean = pd.to_numeric(df["Dice RCA (Mean)"], errors="coerce")
    mx = pd.to_numeric(df["Dice RCA (Max)"], errors="coerce")
    dice = mean.where(~(mx < mean), mx)  # CheXmask's swapped Padchest values, repaired as cxrkit does
    agg = {"n": len(df), "dice": float(dice.mean())}
    image_index = df["Image Index"].str.rsplit("/", n=1).str[-1]
    cardio = set(nih.loc[nih["Cardiomegaly"] == 1, "Image Index"])
    cand = df[(dice >= 0.7) & image_index.isin(cardio)]
    hits = []
    for rid, h, w, rl, ll, heart in zip(cand["Image Index"], cand["Height"], cand["Width"], cand["Right Lung"],
                                        cand["Left Lung"], cand["Heart"]):
        h = int(float(h)) if h.strip() else 1024
        w = int(float(w)) if w.strip() else 1024
        ctr = measure_masks(decode(rl, h, w), decode(ll, h, w), decode(heart, h, w)).ctr
        if not math.isnan(ctr) and ctr > 0.5:
            hits.append(rid)
    print(f"read_csv {read_s:.1f} s; {len(cand)} candidates decoded")
    print(json.dumps({"rows": sorted(hits), "agg": agg}))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "chexmask" / "subsets")
    ap.add_argument("--nih", type=Path, default=REPO.parent / "shared" / "data" / "nih" / "Data_Entry_2017_v2020.csv.gz")
    ap.add_argument("--size-gb", type=float, default=1.0, help="size of the big CSV in GB (10^9 bytes), default 1.0")
    ap.add_argument("--small-gb", type=float, default=0.25, help="size of the small CSV (flat-memory check), default 0.25")
    ap.add_argument("--tmp", type=Path, default=None, help="folder for the temporary files (default: system temp)")
    ap.add_argument("--keep", action="store_true", help="keep the generated files")
    ap.add_argument("--rss", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    ap.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.rss:
        return rss_wrapper(args.rss)
    if args.worker:
        {"pandas_to_parquet": worker_pandas_to_parquet, "pandas_query": worker_pandas_query}[args.worker[0]](*args.worker[1:])
        return 0

    tmp = Path(tempfile.mkdtemp(prefix="cxrkit_warehouse_", dir=args.tmp))
    cli = ["-m", "cxrkit.cli.main"]
    try:
        big, small = tmp / "chexmask_big.csv", tmp / "chexmask_small.csv"
        t0 = time.perf_counter()
        n, n_small = build(args.data, big, int(args.size_gb * 1e9), small, int(args.small_gb * 1e9),
                           make_id=lambda rid, k: f"copy{k}/{rid}")
        big_mb, small_mb = big.stat().st_size / 1e6, small.stat().st_size / 1e6
        print(f"built {big}: {big_mb:,.0f} MB, {n:,} rows; {small.name}: {small_mb:,.0f} MB, {n_small:,} rows "
              f"({time.perf_counter() - t0:.1f} s)")
        print(f"python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} cpus; one process per line\n")

        print(f"{'conversion':58s} {'input':>9s} {'rows':>7s} {'s':>7s} {'rows/s':>7s} {'MB/s':>6s} {'peak RSS MB':>11s}")
        conv = {}
        for label, path, mb, rows in (("cxrkit chexmask to-parquet", small, small_mb, n_small),
                                      ("cxrkit chexmask to-parquet", big, big_mb, n)):
            out = tmp / f"pq_{path.stem}"
            s, rss, text = run_measured(wrapped([*cli, "chexmask", "to-parquet", str(path), "--out", str(out), "--quiet"]))
            conv[path] = (s, rss, out)
            assert f"{rows} rows" in text, text
            print(f"{label:58s} {mb:7,.0f}MB {rows:7,d} {s:7.1f} {rows / s:7,.0f} {mb / s:6.1f} {rss:11,.0f}")
        s, rss, _ = run_measured(wrapped([__file__, "--worker", "pandas_to_parquet", str(small), str(tmp / "pandas.parquet")]))
        print(f"{'baseline: pandas.read_csv + to_parquet (no derived cols)':58s} {small_mb:7,.0f}MB {n_small:7,d} "
              f"{s:7.1f} {n_small / s:7,.0f} {small_mb / s:6.1f} {rss:11,.0f}")
        rss_small, rss_big = conv[small][1], conv[big][1]
        pq_mb = sum(f.stat().st_size for f in conv[big][2].rglob("*.parquet")) / 1e6
        print(f"\nflat memory: peak RSS {rss_small:.0f} MB for {small_mb:,.0f} MB vs {rss_big:.0f} MB for {big_mb:,.0f} MB "
              f"of CSV ({rss_big / rss_small:.2f}x for {big_mb / small_mb:.1f}x the input); pandas baseline "
              f"{rss:.0f} MB for {small_mb:,.0f} MB")
        print(f"Parquet size: {pq_mb:,.0f} MB for {big_mb:,.0f} MB of CSV")
        assert rss_big < 1.5 * rss_small + 50, "conversion memory grows with the input"

        print(f"\n{'query on the ' + format(big_mb, ',.0f') + ' MB data':58s} {'s':>7s} {'peak RSS MB':>11s}  result")
        pq_dir = str(conv[big][2])
        s_ex, rss_ex, text = run_measured(wrapped([*cli, "query", EXAMPLE_SQL, "--data", pq_dir, "--nih-metadata",
                                                   str(args.nih), "--format", "json"]))
        duck_rows = sorted(r["image_id"] for r in json.loads(text))
        print(f"{'cxrkit query: Cardiomegaly & ctr > 0.5 & Dice >= 0.7 (+NIH)':58s} {s_ex:7.1f} {rss_ex:11,.0f}  "
              f"{len(duck_rows)} rows")
        s_agg, rss_agg, text = run_measured(wrapped([*cli, "query", AGG_SQL, "--data", pq_dir, "--format", "json"]))
        agg = json.loads(text)[0]
        print(f"{'cxrkit query: count, mean Dice, QC rate, mean CTR':58s} {s_agg:7.1f} {rss_agg:11,.0f}  "
              f"n={agg['n']:,} dice={agg['dice']:.4f} qc={agg['qc_rate']:.3f} ctr={agg['ctr']:.4f}")
        s_pd, rss_pd, text = run_measured(wrapped([__file__, "--worker", "pandas_query", str(big), str(args.nih)]))
        lines = text.splitlines()
        res = json.loads(lines[-1])
        print(f"{'baseline: pandas.read_csv + NIH join + decode for CTR':58s} {s_pd:7.1f} {rss_pd:11,.0f}  "
              f"{len(res['rows'])} rows ({lines[0]})")
        assert res["rows"] == duck_rows, "DuckDB and pandas disagree on the example query"
        assert res["agg"]["n"] == agg["n"] and abs(res["agg"]["dice"] - agg["dice"]) < 1e-9
        print(f"\nchecks: same {len(duck_rows)} rows from DuckDB and pandas; example query {s_pd / s_ex:.1f}x faster on "
              f"Parquet (times include process start and reading the NIH metadata, "
              f"{s_agg:.1f} s for the aggregate without it)")
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

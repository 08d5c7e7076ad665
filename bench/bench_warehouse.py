"""Benchmark: CheXmask CSV -> Parquet conversion (rows/s, peak RSS), then one query three ways: DuckDB on the
Parquet (cxrkit), pandas on the same Parquet, pandas on the CSV.

    .venv/bin/python bench/bench_warehouse.py [--size-gb 1.0] [--small-gb 0.25] [--repeat 3] [--tmp DIR] [--keep] [--tiny]

1. Builds a CSV of ``--size-gb`` GB (10^9 bytes) in a temporary folder by repeating the 305 real
   HybridGNet rows of the six CheXmask CSVs under ``--data`` (rewritten under the ChestX-ray8 header,
   Padchest's blank Height/Width kept), each copy with a unique id ``copy<k>/<original id>``, so
   ``image_index`` is still the original file name and the ChestX-ray8 copies join the NIH metadata;
   plus a ``--small-gb`` prefix of it (whole rows).
2. Conversion cost: ``cxrkit chexmask to-parquet`` of both (one fresh process each, peak RSS from
   ``os.wait4``'s ``ru_maxrss``; the derived columns, CTR included, are computed here): seconds,
   rows/s and peak RSS, which must not grow with the input (flat memory). Baseline on the small CSV:
   ``pandas.read_csv`` (whole file) + ``DataFrame.to_parquet`` (no derived columns), whose memory grows
   with the file. Best of ``--repeat`` runs each, the runs interleaved.
3. The example query (images labelled Cardiomegaly with CTR > 0.5 and Dice RCA (Mean) >= 0.7, joined
   with the NIH metadata), best of ``--repeat`` interleaved runs each:

   * in ONE process, interleaved: cxrkit's DuckDB query (:func:`cxrkit.warehouse.query.connect` +
     ``run_query``) vs pandas reading THE SAME Parquet files (``read_parquet``, pyarrow engine, only the
     four columns needed) + the join and filter in pandas. Both read the NIH metadata with the same
     :func:`cxrkit.data.nih.read_metadata` (its time is printed separately);
   * end to end, a fresh process each: the ``cxrkit query`` command, and pandas on the CSV
     (``read_csv`` of the big CSV, the NIH join and Dice filter, then the CTR of the remaining rows from
     their decoded masks, ``cxrkit.anatomy.measure.measure_masks``) -- what one pays without the
     conversion.

   All must give the same rows (and the aggregate ``count, mean Dice`` the same values); the
   conversion cost is printed beside the query times with the number of queries after which
   converting first pays off.
4. Deletes the folder unless ``--keep``.
``--tiny``: a 3 MB CSV (1 MB prefix), one run of everything (a smoke run for the test suite; no figure is
asserted). Without ``../shared/data`` the bundled sample rows and NIH metadata are used.
"""

from __future__ import annotations

import argparse
import json
import math
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

from _chexmask_csv import SAMPLE, SHARED, build  # noqa: E402

SHARED_NIH = Path(os.environ.get("CXRKIT_SHARED_DATA", REPO.parent / "shared" / "data")) / "nih" / "Data_Entry_2017_v2020.csv.gz"
SAMPLE_NIH = REPO / "src" / "cxrkit" / "demo" / "sample" / "nih" / "Data_Entry_2017_v2020.csv.gz"

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


def worker_parquet_queries(pq_dir: str, nih_path: str, repeat: str) -> None:
    """In this one process, interleaved, best of ``repeat``: cxrkit's DuckDB query vs pandas on the same Parquet."""
    import pandas as pd

    from cxrkit.data.nih import read_metadata
    from cxrkit.warehouse.query import connect, run_query

    def duck() -> tuple[list[str], dict, float]:
        con = connect([pq_dir], nih_metadata=nih_path)  # reads the NIH metadata; the Parquet views are lazy
        t0 = time.perf_counter()
        rows = sorted(r[0] for r in run_query(con, EXAMPLE_SQL).fetchall())
        query_s = time.perf_counter() - t0
        n, dice = run_query(con, 'SELECT count(*), avg("Dice RCA (Mean)") FROM chexmask').fetchall()[0]
        con.close()
        return rows, {"n": int(n), "dice": float(dice)}, query_s

    def pandas_parquet() -> tuple[list[str], dict, float]:
        nih = read_metadata(nih_path)
        t0 = time.perf_counter()
        df = pd.read_parquet(pq_dir, engine="pyarrow", columns=["image_id", "image_index", "ctr", "Dice RCA (Mean)"])
        cardio = nih.loc[nih["Cardiomegaly"] == 1, ["Image Index"]]
        j = df.merge(cardio, left_on="image_index", right_on="Image Index", how="inner")
        hit = j[(j["ctr"] > 0.5) & (j["Dice RCA (Mean)"] >= 0.7)]
        query_s = time.perf_counter() - t0
        return sorted(hit["image_id"]), {"n": len(df), "dice": float(df["Dice RCA (Mean)"].mean())}, query_s

    total: dict[str, list[float]] = {"duckdb": [], "pandas": []}
    query: dict[str, list[float]] = {"duckdb": [], "pandas": []}
    results = {}
    for _ in range(int(repeat)):
        for name, fn in (("duckdb", duck), ("pandas", pandas_parquet)):
            t0 = time.perf_counter()
            rows, agg, q = fn()
            total[name].append(time.perf_counter() - t0)
            query[name].append(q)
            results[name] = (rows, agg)
    (r_d, a_d), (r_p, a_p) = results["duckdb"], results["pandas"]
    assert r_d == r_p, "DuckDB and pandas disagree on the example query"
    assert a_d["n"] == a_p["n"] and abs(a_d["dice"] - a_p["dice"]) < 1e-9, (a_d, a_p)
    print(json.dumps({"total": {k: min(v) for k, v in total.items()}, "query": {k: min(v) for k, v in query.items()},
                      "rows": r_d, "agg": a_d}))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=None,
                    help="CheXmask CSV folder (default ../shared/data/chexmask/subsets, else the bundled sample)")
    ap.add_argument("--nih", type=Path, default=None,
                    help="NIH metadata (default ../shared/data/nih/Data_Entry_2017_v2020.csv.gz, else the bundled one)")
    ap.add_argument("--size-gb", type=float, default=1.0, help="size of the big CSV in GB (10^9 bytes), default 1.0")
    ap.add_argument("--small-gb", type=float, default=0.25, help="size of the small CSV (flat-memory check), default 0.25")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each conversion and query (best reported)")
    ap.add_argument("--tmp", type=Path, default=None, help="folder for the temporary files (default: system temp)")
    ap.add_argument("--keep", action="store_true", help="keep the generated files")
    ap.add_argument("--tiny", action="store_true", help="3 MB CSV, one run each: a smoke run")
    ap.add_argument("--rss", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    ap.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.rss:
        return rss_wrapper(args.rss)
    if args.worker:
        {"pandas_to_parquet": worker_pandas_to_parquet, "pandas_query": worker_pandas_query,
         "parquet_queries": worker_parquet_queries}[args.worker[0]](*args.worker[1:])
        return 0
    args.data = args.data or (SHARED if SHARED.is_dir() else SAMPLE)
    args.nih = args.nih or (SHARED_NIH if SHARED_NIH.is_file() else SAMPLE_NIH)
    if args.tiny:
        args.size_gb, args.small_gb, args.repeat = 0.003, 0.001, 1
    rep = args.repeat

    tmp = Path(tempfile.mkdtemp(prefix="cxrkit_warehouse_", dir=args.tmp))
    cli = ["-m", "cxrkit.cli.main"]
    try:
        big, small = tmp / "chexmask_big.csv", tmp / "chexmask_small.csv"
        t0 = time.perf_counter()
        n, n_small = build(args.data, big, int(args.size_gb * 1e9), small, int(args.small_gb * 1e9),
                           make_id=lambda rid, k: f"copy{k}/{rid}")
        big_mb, small_mb = big.stat().st_size / 1e6, small.stat().st_size / 1e6
        print(f"built {big}: {big_mb:,.0f} MB, {n:,} rows; {small.name}: {small_mb:,.0f} MB, {n_small:,} rows "
              f"({time.perf_counter() - t0:.1f} s) from {args.data}")
        print(f"python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} cpus; "
              f"best of {rep} interleaved runs, one process per run\n")

        # --- conversion cost ----------------------------------------------------------------------
        conv: dict[str, list[tuple[float, float]]] = {"small": [], "big": [], "pandas": []}
        out = {"small": tmp / "pq_small", "big": tmp / "pq_big"}
        for _ in range(rep):
            for key, path, rows in (("small", small, n_small), ("big", big, n)):
                shutil.rmtree(out[key], ignore_errors=True)  # a fresh conversion each run
                s, rss, text = run_measured(wrapped([*cli, "chexmask", "to-parquet", str(path), "--out", str(out[key]),
                                                     "--quiet"]))
                assert f"{rows} rows" in text, text
                conv[key].append((s, rss))
            s, rss, _ = run_measured(wrapped([__file__, "--worker", "pandas_to_parquet", str(small),
                                              str(tmp / "pandas.parquet")]))
            conv["pandas"].append((s, rss))
        best = {k: min(v) for k, v in conv.items()}  # (seconds, rss) of the fastest run
        print(f"{'conversion':58s} {'input':>9s} {'rows':>7s} {'s':>7s} {'rows/s':>7s} {'MB/s':>6s} {'peak RSS MB':>11s}")
        for label, key, mb, rows in (("cxrkit chexmask to-parquet (+ derived columns, CTR)", "small", small_mb, n_small),
                                     ("cxrkit chexmask to-parquet (+ derived columns, CTR)", "big", big_mb, n),
                                     ("baseline: pandas.read_csv + to_parquet (no derived cols)", "pandas", small_mb, n_small)):
            s, rss = best[key]
            print(f"{label:58s} {mb:7,.0f}MB {rows:7,d} {s:7.1f} {rows / s:7,.0f} {mb / s:6.1f} {rss:11,.0f}")
        rss_small, rss_big = max(r for _, r in conv["small"]), max(r for _, r in conv["big"])
        pq_mb = sum(f.stat().st_size for f in out["big"].rglob("*.parquet")) / 1e6
        print(f"\nflat memory: peak RSS {rss_small:.0f} MB for {small_mb:,.0f} MB vs {rss_big:.0f} MB for {big_mb:,.0f} MB "
              f"of CSV ({rss_big / rss_small:.2f}x for {big_mb / small_mb:.1f}x the input); pandas baseline "
              f"{best['pandas'][1]:.0f} MB for {small_mb:,.0f} MB")
        print(f"Parquet size: {pq_mb:,.0f} MB for {big_mb:,.0f} MB of CSV")
        if not args.tiny:
            assert rss_big < 1.5 * rss_small + 50, "conversion memory grows with the input"

        # --- the query, three ways ------------------------------------------------------------------
        pq_dir = str(out["big"])
        cli_runs, csv_runs = [], []
        for _ in range(rep):
            cli_runs.append(run_measured(wrapped([*cli, "query", EXAMPLE_SQL, "--data", pq_dir, "--nih-metadata",
                                                  str(args.nih), "--format", "json"])))
            csv_runs.append(run_measured(wrapped([__file__, "--worker", "pandas_query", str(big), str(args.nih)])))
        inproc = json.loads(subprocess.run(
            [sys.executable, __file__, "--worker", "parquet_queries", pq_dir, str(args.nih), str(rep)],
            capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1])
        s_cli, rss_cli, text = min(cli_runs)
        duck_rows = sorted(r["image_id"] for r in json.loads(text))
        s_csv, rss_csv, text = min(csv_runs)
        lines = text.splitlines()
        res = json.loads(lines[-1])
        tot, qry = inproc["total"], inproc["query"]
        print(f"\nquery: Cardiomegaly & ctr > 0.5 & Dice RCA (Mean) >= 0.7, joined with the NIH metadata, on the "
              f"{big_mb:,.0f} MB data")
        print(f"  in one process, interleaved, best of {rep}: {'query only':>12s} {'+ NIH metadata read':>20s}")
        print(f"    {'cxrkit DuckDB query on the Parquet (run_query; connect)':66s} {qry['duckdb']:9.2f} s {tot['duckdb']:17.2f} s")
        print(f"    {'baseline: pandas read_parquet (pyarrow, 4 columns), same files':66s} {qry['pandas']:9.2f} s "
              f"{tot['pandas']:17.2f} s")
        print(f"    {'pandas / DuckDB':66s} {qry['pandas'] / qry['duckdb']:9.2f}x {tot['pandas'] / tot['duckdb']:17.2f}x")
        print(f"  end to end, fresh process (interpreter start and imports included), best of {rep}:")
        print(f"    {'cxrkit query (the command)':66s} {s_cli:7.2f} s  peak RSS {rss_cli:,.0f} MB  {len(duck_rows)} rows")
        print(f"    {'baseline: pandas read_csv + NIH join + decode for CTR (no conversion)':66s} {s_csv:7.2f} s  "
              f"peak RSS {rss_csv:,.0f} MB  {len(res['rows'])} rows ({lines[0]})")
        assert res["rows"] == duck_rows == inproc["rows"], "DuckDB and pandas disagree on the example query"
        assert res["agg"]["n"] == inproc["agg"]["n"] and abs(res["agg"]["dice"] - inproc["agg"]["dice"]) < 1e-9, \
            (res["agg"], inproc["agg"])
        conv_s = best["big"][0]
        gain = s_csv - s_cli
        breakeven = f"{math.ceil(conv_s / gain)}" if gain > 0 else "never (the CSV query is not slower)"
        print(f"\nchecks: the same {len(duck_rows)} rows from DuckDB, pandas on the Parquet and pandas on the CSV")
        print(f"conversion cost beside the query: to-parquet {conv_s:.1f} s once ({n / conv_s:,.0f} rows/s), then "
              f"{s_cli:.2f} s per query vs {s_csv:.2f} s per query on the CSV ({s_csv / s_cli:.1f}x); convert + 1 query "
              f"= {conv_s + s_cli:.1f} s; converting pays off from query {breakeven}")
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

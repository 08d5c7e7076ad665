"""Benchmark: per-class AUROC + 95% bootstrap CIs on a ChestX-ray14-sized test set, cxrkit vs a naive loop.

    .venv/bin/python bench/bench_auroc.py [--n-boot 1000] [--naive-boot 1000] [--repeat 3] [--synthetic] [--tiny]

Data: the real reference predictions (``../shared/data/nih/reference_predictions/preds.csv``, 22,433
test images x 14 findings, labels from ``Data_Entry_2017_v2020.csv.gz``) when present, else (or with
``--synthetic``) a synthetic set of the same shape and prevalences.

Both sides run in the same process on the same arrays and draw the same image-level resamples:

* naive: for each resample and each class, index the resampled rows (``np.take``) and compute the AUROC
  from scratch with one ``argsort`` + tie-averaged ranks (the textbook Mann-Whitney formula), i.e.
  ``n_boot x 14`` sorts of 22k values;
* cxrkit ``auroc_table``: the resample is a count per image; per class the negatives are sorted once and
  each block of resamples is a gather, one cumulative sum and two gathers (no sort per resample).

``--naive-boot`` below ``--n-boot`` runs the naive side on fewer resamples and prints the time scaled
to ``--n-boot`` (marked "extrapolated"). The CI bounds of both sides are checked equal (same resamples).
Both sides run ``--repeat`` times, interleaved; the best run of each is reported.
``--tiny``: 20 resamples, one run (a smoke run for the test suite; no figure is asserted).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from cxrkit.findings import FINDINGS  # noqa: E402
from cxrkit.metrics.auroc import auroc_table, bootstrap_counts  # noqa: E402

SHARED = Path(os.environ.get("CXRKIT_SHARED_DATA", REPO.parent / "shared" / "data"))


def load(synthetic: bool) -> tuple[np.ndarray, np.ndarray, str]:
    preds = SHARED / "nih" / "reference_predictions" / "preds.csv"
    meta = SHARED / "nih" / "Data_Entry_2017_v2020.csv.gz"
    if not synthetic and preds.exists() and meta.exists():
        from cxrkit.classification.evaluate import match_labels, read_predictions
        from cxrkit.data.nih import read_metadata

        p = read_predictions(preds)
        labels = match_labels(p, read_metadata(meta))
        return labels, p[list(FINDINGS)].to_numpy(float), f"real reference predictions ({len(p)} images)"
    rng = np.random.default_rng(0)
    n = 22433
    prevalence = np.array([0.108, 0.026, 0.123, 0.176, 0.051, 0.06, 0.012, 0.049, 0.043, 0.018, 0.023, 0.016,
                           0.033, 0.002])
    labels = (rng.uniform(size=(n, 14)) < prevalence).astype(float)
    scores = np.round(1 / (1 + np.exp(-(rng.normal(size=(n, 14)) + 1.5 * labels - 2))), 6)
    return labels, scores, f"synthetic ({n} images)"


def naive_auroc(y: np.ndarray, s: np.ndarray) -> float:
    order = np.argsort(s, kind="mergesort")
    ss = s[order]
    ranks = np.empty(len(s))
    # average ranks of ties
    starts = np.flatnonzero(np.r_[True, ss[1:] != ss[:-1]])
    ends = np.r_[starts[1:], len(ss)]
    avg = (starts + ends + 1) / 2.0
    ranks[order] = np.repeat(avg, ends - starts)
    n_pos = y.sum()
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    return float((ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def naive_table(labels, scores, n_boot, seed, block=200):
    rng = np.random.default_rng(seed)
    n, k = labels.shape
    boot = np.full((n_boot, k), np.nan)
    done = 0
    while done < n_boot:  # same resamples as auroc_table: the same counts, expanded to row indices
        counts = bootstrap_counts(n, min(block, n_boot - done), rng)
        for c in counts:
            idx = np.repeat(np.arange(n), c)
            for j in range(k):
                y = labels[idx, j]
                keep = ~np.isnan(y)
                boot[done, j] = naive_auroc(y[keep], scores[idx, j][keep])
            done += 1
    return np.nanpercentile(boot, [2.5, 97.5], axis=0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--naive-boot", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3, help="interleaved runs of each side (best reported)")
    ap.add_argument("--synthetic", action="store_true")
    ap.add_argument("--tiny", action="store_true", help="20 resamples, one run: a smoke run")
    args = ap.parse_args()
    if args.tiny:
        args.n_boot, args.naive_boot, args.repeat = 20, 20, 1
    labels, scores, what = load(args.synthetic)
    print(f"data: {what}, {labels.shape[1]} findings; python {platform.python_version()}, numpy {np.__version__}, "
          f"{os.cpu_count()} CPUs; best of {args.repeat} interleaved runs")

    fast = slow = float("inf")
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        table = auroc_table(labels, scores, FINDINGS, n_boot=args.n_boot, seed=0)
        fast = min(fast, time.perf_counter() - t0)
        t0 = time.perf_counter()
        lo_hi = naive_table(labels, scores, args.naive_boot, seed=0)
        slow = min(slow, time.perf_counter() - t0)
    print(f"cxrkit auroc_table : {fast:7.2f} s for {args.n_boot} resamples (point AUROCs + CIs + mean)")
    scaled = slow * args.n_boot / max(args.naive_boot, 1)
    tag = "" if args.naive_boot == args.n_boot else f" (ran {args.naive_boot}, {slow:.2f} s; extrapolated)"
    print(f"naive argsort loop : {scaled:7.2f} s for {args.n_boot} resamples{tag}")
    print(f"speed-up           : {scaled / fast:7.1f}x")
    if args.naive_boot == args.n_boot:
        diff = np.nanmax(np.abs(lo_hi.T - table[["ci_low", "ci_high"]].to_numpy()[:14]))
        print(f"max |CI difference| between the two (same resamples): {diff:.2e}")
    print(f"mean AUROC {table.auroc.iloc[-1]:.4f} (95% CI {table.ci_low.iloc[-1]:.4f}-{table.ci_high.iloc[-1]:.4f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

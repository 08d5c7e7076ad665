"""AUROC with ties, ROC curves, and image-level bootstrap confidence intervals (vectorized).

Conventions: ``y_true`` holds 1 (positive), 0 (negative) or NaN (unknown, dropped); ``y_score`` is any
real score (higher = more likely positive). AUROC is the Mann-Whitney statistic with ties counted as
half, identical to ``sklearn.metrics.roc_auc_score``; NaN when a class has no positives or negatives.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from cxrkit.findings import FINDINGS


def _clean(y_true, y_score) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true, dtype=np.float64).ravel()
    s = np.asarray(y_score, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"y_true has {y.size} values, y_score {s.size}")
    keep = ~np.isnan(y)
    if np.isnan(s[keep]).any():
        raise ValueError("y_score has NaN where the label is known")
    y, s = y[keep], s[keep]
    bad = (y != 0) & (y != 1)
    if bad.any():
        raise ValueError(f"labels must be 1, 0 or NaN; got {np.unique(y[bad])[:5].tolist()}")
    return y, s


def _groups(sorted_scores: np.ndarray) -> np.ndarray:
    """Start index of each run of equal values in an ascending array."""
    return np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])


def auroc(y_true, y_score) -> float:
    """Area under the ROC curve (ties count half); NaN if positives or negatives are missing."""
    y, s = _clean(y_true, y_score)
    n_pos = y.sum()
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    s_sorted, y_sorted = s[order], y[order]
    starts = _groups(s_sorted)
    pos_g = np.add.reduceat(y_sorted, starts)
    neg_g = np.add.reduceat(1 - y_sorted, starts)
    neg_below = np.cumsum(neg_g) - neg_g
    return float((pos_g * (neg_below + 0.5 * neg_g)).sum() / (n_pos * n_neg))


def roc_curve(y_true, y_score) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """False/true positive rates at every distinct threshold (descending), starting at (0, 0)."""
    y, s = _clean(y_true, y_score)
    order = np.argsort(-s, kind="mergesort")
    s_sorted, y_sorted = s[order], y[order]
    last = np.r_[np.flatnonzero(s_sorted[1:] != s_sorted[:-1]), s_sorted.size - 1]
    tp = np.cumsum(y_sorted)[last]
    fp = np.cumsum(1 - y_sorted)[last]
    p, n = max(y.sum(), 1), max(y.size - y.sum(), 1)
    return np.r_[0.0, fp / n], np.r_[0.0, tp / p], np.r_[np.inf, s_sorted[last]]


def _weighted_auroc(y: np.ndarray, s: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """AUROC for each row of ``weights`` (B, n): resampling counts of every sample (bootstrap)."""
    order = np.argsort(s, kind="mergesort")
    s_sorted, y_sorted = s[order], y[order]
    w = weights[:, order].astype(np.float64)
    starts = _groups(s_sorted)
    pos_g = np.add.reduceat(w * y_sorted, starts, axis=1)
    neg_g = np.add.reduceat(w * (1 - y_sorted), starts, axis=1)
    neg_below = np.cumsum(neg_g, axis=1) - neg_g
    num = (pos_g * (neg_below + 0.5 * neg_g)).sum(axis=1)
    den = pos_g.sum(axis=1) * neg_g.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / den, np.nan)


def bootstrap_counts(n: int, n_boot: int, rng: np.random.Generator, chunk: int | None = None) -> np.ndarray:
    """(n_boot, n) counts: how often each of n items is drawn in each image-level resample."""
    return rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(np.int32)


def bootstrap_auroc_ci(y_true, y_score, n_boot: int = 1000, level: float = 0.95,
                       rng: np.random.Generator | None = None) -> tuple[float, float]:
    """Percentile bootstrap CI of the AUROC, resampling samples with replacement."""
    y, s = _clean(y_true, y_score)
    rng = rng if rng is not None else np.random.default_rng(0)
    stats = _weighted_auroc(y, s, bootstrap_counts(y.size, n_boot, rng))
    lo, hi = np.nanpercentile(stats, [50 * (1 - level), 50 * (1 + level)])
    return float(lo), float(hi)


def auroc_table(labels: np.ndarray, scores: np.ndarray, names: Sequence[str] = FINDINGS, n_boot: int = 1000,
                seed: int = 0, level: float = 0.95, block: int = 250) -> pd.DataFrame:
    """Per-class AUROC with bootstrap CIs, then a ``mean`` row (mean of the per-class AUROCs).

    ``labels`` (N, K) 1/0/NaN, ``scores`` (N, K). The bootstrap resamples *images* (rows): every class
    and the mean use the same resamples, so the mean's CI accounts for the correlation between classes.
    Columns: ``finding, auroc, ci_low, ci_high, n_pos, n_neg``.
    """
    labels = np.asarray(labels, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    if labels.shape != scores.shape or labels.ndim != 2 or labels.shape[1] != len(names):
        raise ValueError(f"labels {labels.shape} and scores {scores.shape} must both be (N, {len(names)})")
    n, k = labels.shape
    rng = np.random.default_rng(seed)
    boot = np.full((n_boot, k), np.nan)
    point = np.full(k, np.nan)
    for start in range(0, n_boot, block):  # blocks of resamples bound the memory (block x N counts)
        counts = bootstrap_counts(n, min(block, n_boot - start), rng)
        for j in range(k):
            keep = ~np.isnan(labels[:, j])
            if start == 0:
                point[j] = auroc(labels[keep, j], scores[keep, j])
            if n_boot and not np.isnan(point[j]):
                boot[start : start + counts.shape[0], j] = _weighted_auroc(labels[keep, j], scores[keep, j], counts[:, keep])
    if n_boot == 0:
        for j in range(k):
            keep = ~np.isnan(labels[:, j])
            point[j] = auroc(labels[keep, j], scores[keep, j])
    q = [50 * (1 - level), 50 * (1 + level)]
    rows = []
    for j, name in enumerate(names):
        keep = ~np.isnan(labels[:, j])
        lo, hi = (np.nanpercentile(boot[:, j], q) if n_boot and np.isfinite(boot[:, j]).any() else (np.nan, np.nan))
        rows.append({"finding": name, "auroc": point[j], "ci_low": lo, "ci_high": hi,
                     "n_pos": int((labels[keep, j] == 1).sum()), "n_neg": int((labels[keep, j] == 0).sum())})
    valid = ~np.isnan(point)
    mean_boot = np.nanmean(boot[:, valid], axis=1) if n_boot and valid.any() else np.array([np.nan])
    lo, hi = np.nanpercentile(mean_boot, q) if np.isfinite(mean_boot).any() else (np.nan, np.nan)
    rows.append({"finding": "mean", "auroc": float(point[valid].mean()) if valid.any() else np.nan, "ci_low": lo,
                 "ci_high": hi, "n_pos": int(sum(r["n_pos"] for r in rows)), "n_neg": int(sum(r["n_neg"] for r in rows))})
    return pd.DataFrame(rows, columns=["finding", "auroc", "ci_low", "ci_high", "n_pos", "n_neg"])

"""AUROC with ties, ROC curves, and image-level bootstrap confidence intervals (vectorized).

Conventions: ``y_true`` holds 1 (positive), 0 (negative) or NaN (unknown, dropped); ``y_score`` is any
real score (higher = more likely positive). AUROC is the Mann-Whitney statistic with ties counted as
half, identical to ``sklearn.metrics.roc_auc_score``; NaN when a class has no positives or negatives.

Bootstrap (percentile method). One resample draws N *images* with replacement; it is stored as a count
per image (how often it was drawn), and every class (and the mean over classes) is scored on the same
resamples. For one class, with the negatives sorted by score once, the weighted Mann-Whitney numerator of
a resample is ``sum_i w_i * (C[lo_i] + C[hi_i]) / 2`` over the positives ``i``, where ``C`` is the running
sum of the negatives' counts and ``lo_i`` / ``hi_i`` the numbers of negatives scoring below / not above
``s_i`` (found once with ``searchsorted``). A block of resamples is therefore one gather, one cumulative sum
over the negatives and two gathers over the positives: no sort per resample.
"""

from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np
import pandas as pd

from cxrkit.findings import FINDINGS

TABLE_COLUMNS: tuple[str, ...] = ("finding", "auroc", "ci_low", "ci_high", "n_pos", "n_neg")


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


def auroc(y_true, y_score) -> float:
    """Area under the ROC curve (ties count half); NaN if positives or negatives are missing."""
    y, s = _clean(y_true, y_score)
    pos, neg = s[y == 1], np.sort(s[y == 0])
    if pos.size == 0 or neg.size == 0:
        return float("nan")
    lo = np.searchsorted(neg, pos, side="left")  # negatives strictly below each positive
    hi = np.searchsorted(neg, pos, side="right")  # ... plus the tied ones
    return float((lo.sum() + hi.sum()) / (2.0 * pos.size * neg.size))


def roc_curve(y_true, y_score) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """False/true positive rates at every distinct threshold (descending), starting at (0, 0).

    ``thresholds[0]`` is ``inf``; point ``k`` counts the samples scoring ``>= thresholds[k]`` as positive.
    The trapezoidal area under (fpr, tpr) equals :func:`auroc`.
    """
    y, s = _clean(y_true, y_score)
    order = np.argsort(-s, kind="mergesort")
    s_sorted, y_sorted = s[order], y[order]
    last = np.r_[np.flatnonzero(s_sorted[1:] != s_sorted[:-1]), s_sorted.size - 1]
    tp = np.cumsum(y_sorted)[last]
    fp = np.cumsum(1 - y_sorted)[last]
    p, n = max(y.sum(), 1), max(y.size - y.sum(), 1)
    return np.r_[0.0, fp / n], np.r_[0.0, tp / p], np.r_[np.inf, s_sorted[last]]


def bootstrap_counts(n: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(n_boot, n) int32 counts: how often each of n items is drawn in each resample of size n."""
    if n_boot <= 0 or n <= 0:
        return np.zeros((max(n_boot, 0), max(n, 0)), dtype=np.int32)
    draws = rng.integers(0, n, size=(n_boot, n))
    draws += (np.arange(n_boot) * n)[:, None]
    return np.bincount(draws.ravel(), minlength=n_boot * n).reshape(n_boot, n).astype(np.int32)


class _ClassBootstrap:
    """Per-class precomputation for weighted (bootstrap) AUROC from resampling counts over all images."""

    def __init__(self, y: np.ndarray, s: np.ndarray, image_index: np.ndarray):
        pos = y == 1
        neg_order = np.argsort(s[~pos], kind="mergesort")
        self.neg_idx = image_index[~pos][neg_order]  # negatives' image rows, by ascending score
        neg_sorted = s[~pos][neg_order]
        self.pos_idx = image_index[pos]
        self.lo = np.searchsorted(neg_sorted, s[pos], side="left")
        self.hi = np.searchsorted(neg_sorted, s[pos], side="right")

    def aurocs(self, counts: np.ndarray) -> np.ndarray:
        """AUROC of each resample (row of ``counts``, shape (B, N_images)); NaN where a class is empty."""
        b = counts.shape[0]
        cum = np.zeros((b, self.neg_idx.size + 1), dtype=np.int32)
        np.cumsum(counts[:, self.neg_idx], axis=1, dtype=np.int32, out=cum[:, 1:])
        wp = counts[:, self.pos_idx]
        num = (wp * (cum[:, self.lo] + cum[:, self.hi])).sum(axis=1, dtype=np.int64)
        den = 2.0 * wp.sum(axis=1, dtype=np.int64) * cum[:, -1].astype(np.int64)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(den > 0, num / den, np.nan)


def bootstrap_aurocs(labels, scores, n_boot: int = 1000, rng: np.random.Generator | None = None,
                     block: int = 200) -> np.ndarray:
    """(n_boot, K) AUROC of each class on each image-level resample (NaN where a class lacks a side).

    ``labels`` (N, K) 1/0/NaN, ``scores`` (N, K). Every class uses the same resamples of the N rows, so
    statistics across classes (the mean AUROC) keep their correlation. ``block`` resamples are scored at
    a time (memory about 12 bytes x block x N).
    """
    labels = np.asarray(labels, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    if labels.ndim == 1:
        labels, scores = labels[:, None], scores[:, None]
    if labels.shape != scores.shape or labels.ndim != 2:
        raise ValueError(f"labels {labels.shape} and scores {scores.shape} must have the same (N, K) shape")
    rng = rng if rng is not None else np.random.default_rng(0)
    n, k = labels.shape
    rows = np.arange(n)
    classes = []
    for j in range(k):
        keep = ~np.isnan(labels[:, j])
        y, s = _clean(labels[keep, j], scores[keep, j])
        classes.append(_ClassBootstrap(y, s, rows[keep]) if (y == 1).any() and (y == 0).any() else None)
    out = np.full((max(n_boot, 0), k), np.nan)
    for start in range(0, max(n_boot, 0), block):
        counts = bootstrap_counts(n, min(block, n_boot - start), rng)
        for j, c in enumerate(classes):
            if c is not None:
                out[start : start + counts.shape[0], j] = c.aurocs(counts)
    return out


def _percentiles(values: np.ndarray, level: float) -> tuple[float, float]:
    values = values[np.isfinite(values)]
    if values.size == 0:
        return float("nan"), float("nan")
    lo, hi = np.percentile(values, [50 * (1 - level), 50 * (1 + level)])
    return float(lo), float(hi)


def bootstrap_auroc_ci(y_true, y_score, n_boot: int = 1000, level: float = 0.95,
                       rng: np.random.Generator | None = None) -> tuple[float, float]:
    """Percentile bootstrap CI of the AUROC, resampling samples with replacement (NaN labels dropped first).

    ``rng`` (a ``numpy.random.Generator``) makes it reproducible; default ``default_rng(0)``.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    y, s = _clean(y_true, y_score)
    return _percentiles(bootstrap_aurocs(y, s, n_boot, rng)[:, 0], level)


def auroc_table(labels: np.ndarray, scores: np.ndarray, names: Sequence[str] = FINDINGS, n_boot: int = 1000,
                seed: int = 0, level: float = 0.95, block: int = 200) -> pd.DataFrame:
    """Per-class AUROC with bootstrap CIs, then a ``mean`` row (mean of the per-class AUROCs).

    ``labels`` (N, K) 1/0/NaN, ``scores`` (N, K), ``names`` the K class names. The bootstrap resamples
    *images* (rows) with ``numpy.random.default_rng(seed)``; every class and the mean use the same
    resamples, so the mean's CI accounts for the correlation between classes. A class without positives
    or negatives gets NaN and is left out of the mean (and of the mean's resamples). ``n_boot=0`` gives NaN
    CIs. The ``mean`` row's ``n_pos`` / ``n_neg`` are the sums over classes.
    Columns: ``finding, auroc, ci_low, ci_high, n_pos, n_neg``.
    """
    labels = np.asarray(labels, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    if labels.shape != scores.shape or labels.ndim != 2 or labels.shape[1] != len(names):
        raise ValueError(f"labels {labels.shape} and scores {scores.shape} must both be (N, {len(names)})")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    k = labels.shape[1]
    point = np.array([auroc(labels[:, j], scores[:, j]) for j in range(k)])
    boot = bootstrap_aurocs(labels, scores, n_boot, np.random.default_rng(seed), block=block)
    rows = []
    for j, name in enumerate(names):
        lo, hi = _percentiles(boot[:, j], level) if not np.isnan(point[j]) else (np.nan, np.nan)
        rows.append({"finding": name, "auroc": point[j], "ci_low": lo, "ci_high": hi,
                     "n_pos": int((labels[:, j] == 1).sum()), "n_neg": int((labels[:, j] == 0).sum())})
    valid = ~np.isnan(point)
    if valid.any():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a resample where every class is NaN
            mean_boot = np.nanmean(boot[:, valid], axis=1) if n_boot > 0 else np.array([np.nan])
        lo, hi = _percentiles(mean_boot, level)
        mean = float(point[valid].mean())
    else:
        lo = hi = mean = np.nan
    rows.append({"finding": "mean", "auroc": mean, "ci_low": lo, "ci_high": hi,
                 "n_pos": int(sum(r["n_pos"] for r in rows)), "n_neg": int(sum(r["n_neg"] for r in rows))})
    return pd.DataFrame(rows, columns=list(TABLE_COLUMNS))

"""AUROC, ROC curves and bootstrap CIs against brute-force pairwise counting (no sklearn)."""

from __future__ import annotations

import numpy as np
import pytest

from cxrkit.metrics.auroc import (
    auroc,
    auroc_table,
    bootstrap_auroc_ci,
    bootstrap_aurocs,
    bootstrap_counts,
    roc_curve,
)


def brute(y, s):
    """Pairwise Mann-Whitney: P(score_pos > score_neg) + 0.5 P(tie), NaN labels dropped."""
    y, s = np.asarray(y, float), np.asarray(s, float)
    keep = ~np.isnan(y)
    y, s = y[keep], s[keep]
    p, n = s[y == 1], s[y == 0]
    if not len(p) or not len(n):
        return float("nan")
    return ((p[:, None] > n[None]).sum() + 0.5 * (p[:, None] == n[None]).sum()) / (len(p) * len(n))


@pytest.mark.parametrize("seed", range(6))
def test_auroc_matches_pairwise_with_ties(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 400))
    y = rng.integers(0, 2, n).astype(float)
    y[rng.uniform(size=n) < 0.1] = np.nan
    s = np.round(rng.normal(np.nan_to_num(y), 1.0), int(rng.integers(0, 3)))  # heavy ties at 0 decimals
    assert auroc(y, s) == pytest.approx(brute(y, s), abs=1e-12, nan_ok=True)


def test_auroc_edge_cases():
    assert np.isnan(auroc([1, 1], [0.2, 0.3]))  # no negatives
    assert np.isnan(auroc([0, 0, np.nan], [0.2, 0.3, 0.1]))  # no positives after dropping NaN
    assert np.isnan(auroc([], []))
    assert auroc([0, 1, np.nan], [0.1, 0.9, np.nan]) == 1.0  # NaN label dropped (its NaN score too)
    assert auroc([0, 1], [0.9, 0.1]) == 0.0
    assert auroc([0, 1, 0, 1], [0.5] * 4) == 0.5  # all tied
    assert auroc([0, 1, 1], [0.2, 0.2, 0.7]) == 0.75
    with pytest.raises(ValueError, match="labels must be 1, 0 or NaN"):
        auroc([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="NaN where the label is known"):
        auroc([0, 1], [0.1, np.nan])
    with pytest.raises(ValueError, match="3 values"):
        auroc([0, 1, 1], [0.1, 0.2])


def test_auroc_is_invariant_to_monotone_transforms_and_flips_with_negation():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 500)
    s = rng.normal(y, 1.0)
    assert auroc(y, np.exp(s)) == pytest.approx(auroc(y, s), abs=1e-15)
    assert auroc(y, -s) == pytest.approx(1 - auroc(y, s), abs=1e-12)


def test_roc_curve_area_equals_auroc():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 200)
    s = np.round(rng.normal(y, 1.0), 1)
    fpr, tpr, thr = roc_curve(y, s)
    assert fpr[0] == tpr[0] == 0 and fpr[-1] == tpr[-1] == 1
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0) and np.all(np.diff(thr) < 0)
    assert np.trapezoid(tpr, fpr) == pytest.approx(auroc(y, s), abs=1e-12)
    k = 5  # each point counts the scores >= its threshold as positive
    assert tpr[k] == pytest.approx(((s >= thr[k]) & (y == 1)).sum() / y.sum())


def test_bootstrap_counts_are_resamples():
    c = bootstrap_counts(50, 7, np.random.default_rng(0))
    assert c.shape == (7, 50) and (c.sum(axis=1) == 50).all() and c.min() >= 0


def test_weighted_bootstrap_equals_auroc_of_explicit_resamples():
    rng = np.random.default_rng(4)
    n = 120
    labels = rng.integers(0, 2, (n, 3)).astype(float)
    labels[rng.uniform(size=(n, 3)) < 0.15] = np.nan
    scores = np.round(rng.normal(np.nan_to_num(labels), 1.0), 1)
    boot = bootstrap_aurocs(labels, scores, n_boot=25, rng=np.random.default_rng(9), block=10)
    counts = bootstrap_counts(n, 10, np.random.default_rng(9))  # the first block draws these
    for b in range(10):
        idx = np.repeat(np.arange(n), counts[b])
        for j in range(3):
            assert boot[b, j] == pytest.approx(brute(labels[idx, j], scores[idx, j]), abs=1e-12, nan_ok=True)


def test_bootstrap_is_seeded_and_brackets_the_estimate():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 400)
    s = rng.normal(y, 1.5)
    a = bootstrap_auroc_ci(y, s, 300, rng=np.random.default_rng(5))
    b = bootstrap_auroc_ci(y, s, 300, rng=np.random.default_rng(5))
    c = bootstrap_auroc_ci(y, s, 300, rng=np.random.default_rng(6))
    assert a == b and a != c
    assert a[0] < auroc(y, s) < a[1] and a[1] - a[0] < 0.2
    narrow = bootstrap_auroc_ci(y, s, 300, level=0.5, rng=np.random.default_rng(5))
    assert a[0] < narrow[0] < narrow[1] < a[1]


def test_auroc_table_layout_mean_and_reproducibility():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 400)
    s = rng.normal(y, 1.5)
    labels = np.stack([y, 1 - y, np.zeros_like(y)], 1).astype(float)  # third class: no positives
    labels[0, 1] = np.nan
    scores = np.stack([s, -s, s], 1)
    t = auroc_table(labels, scores, names=("A", "B", "C"), n_boot=200, seed=3)
    assert list(t.finding) == ["A", "B", "C", "mean"]
    assert list(t.columns) == ["finding", "auroc", "ci_low", "ci_high", "n_pos", "n_neg"]
    assert np.isnan(t.auroc[2]) and np.isnan(t.ci_low[2])
    assert t.auroc[3] == pytest.approx((t.auroc[0] + t.auroc[1]) / 2)  # NaN class left out of the mean
    assert t.n_pos[1] + t.n_neg[1] == 399
    ok = t.drop(index=2)
    assert (ok.ci_low <= ok.auroc).all() and (ok.auroc <= ok.ci_high).all()
    assert auroc_table(labels, scores, names=("A", "B", "C"), n_boot=200, seed=3).equals(t)
    assert not auroc_table(labels, scores, names=("A", "B", "C"), n_boot=200, seed=4).equals(t)
    t0 = auroc_table(labels, scores, names=("A", "B", "C"), n_boot=0)
    assert t0.auroc.equals(t.auroc) and t0.ci_low.isna().all()
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        auroc_table(labels, scores, names=("A", "B"))

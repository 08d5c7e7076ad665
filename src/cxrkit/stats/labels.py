"""Label statistics: counts, prevalence and the co-occurrence matrix in the NIH README's form."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cxrkit.findings import FINDINGS, NO_FINDING


def cooccurrence(labels: np.ndarray) -> np.ndarray:
    """14x14 co-occurrence counts of a ``(N, 14)`` 0/1 label matrix (NaN counts as absent).

    Off-diagonal ``[i, j]``: images carrying both finding i and finding j. Diagonal ``[i, i]``:
    images carrying finding i *alone* (no other finding), as in the NIH README's table.
    """
    y = np.nan_to_num(np.asarray(labels, dtype=np.float64)) > 0.5
    if y.ndim != 2 or y.shape[1] != len(FINDINGS):
        raise ValueError(f"labels must have shape (N, {len(FINDINGS)}), got {y.shape}")
    yi = y.astype(np.int64)
    matrix = yi.T @ yi
    alone = yi[y.sum(axis=1) == 1].sum(axis=0)
    np.fill_diagonal(matrix, alone)
    return matrix


def cooccurrence_frame(labels: np.ndarray) -> pd.DataFrame:
    """:func:`cooccurrence` as a DataFrame with the finding names as index and columns."""
    return pd.DataFrame(cooccurrence(labels), index=list(FINDINGS), columns=list(FINDINGS))


def prevalence(labels: np.ndarray) -> pd.DataFrame:
    """Per-finding positive count and prevalence, plus a ``No Finding`` row.

    Columns: ``finding, positives, known, prevalence`` (prevalence = positives / known images).
    """
    y = np.asarray(labels, dtype=np.float64)
    known = (~np.isnan(y)).sum(axis=0)
    pos = (np.nan_to_num(y) > 0.5).sum(axis=0)
    none = int(((np.nan_to_num(y) > 0.5).sum(axis=1) == 0).sum())
    rows = [(f, int(p), int(k), p / k if k else float("nan")) for f, p, k in zip(FINDINGS, pos, known)]
    rows.append((NO_FINDING, none, len(y), none / len(y) if len(y) else float("nan")))
    return pd.DataFrame(rows, columns=["finding", "positives", "known", "prevalence"])


def findings_per_image(labels: np.ndarray) -> pd.Series:
    """Histogram of the number of positive findings per image (index 0..14)."""
    k = (np.nan_to_num(np.asarray(labels, dtype=np.float64)) > 0.5).sum(axis=1)
    counts = np.bincount(k, minlength=len(FINDINGS) + 1)
    return pd.Series(counts, index=range(len(counts)), name="images")

"""Statistics shared by the tasks and benchmarks: correlation coefficients over paired values.

NaN pairs (either value missing) are dropped first; fewer than 3 pairs, or a constant side, give NaN.
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from cxrkit.errors import InputError


def nanmean(values: Iterable[float]) -> float:
    """Mean of the values that are not NaN (NaN when none is)."""
    v = [x for x in values if not math.isnan(x)]
    return float(sum(v) / len(v)) if v else float("nan")


def paired(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The two sequences as float arrays, without the pairs where either value is not finite."""
    a, b = np.asarray(x, dtype=np.float64).ravel(), np.asarray(y, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise InputError(f"correlation needs two sequences of the same length, got {a.size} and {b.size}")
    ok = np.isfinite(a) & np.isfinite(b)
    return a[ok], b[ok]


def pearson(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> float:
    """Pearson r over the pairs where both values are finite; NaN with < 3 pairs or a constant side."""
    a, b = paired(x, y)
    if a.size < 3:
        return float("nan")
    da, db = a - a.mean(), b - b.mean()
    den = math.sqrt(float((da * da).sum()) * float((db * db).sum()))
    if den == 0.0:
        return float("nan")
    return float(np.clip(float((da * db).sum()) / den, -1.0, 1.0))


def _rank(v: np.ndarray) -> np.ndarray:
    """Ranks 1..n, ties given their average rank."""
    return pd.Series(v).rank(method="average").to_numpy()


def spearman(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> float:
    """Spearman rho (Pearson r of the average ranks) over the finite pairs; NaN as for :func:`pearson`."""
    a, b = paired(x, y)
    return pearson(_rank(a), _rank(b)) if a.size else float("nan")


__all__ = ["nanmean", "paired", "pearson", "spearman"]

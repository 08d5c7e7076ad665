"""Age, sex and view-position distributions of a canonical NIH metadata table."""

from __future__ import annotations

import numpy as np
import pandas as pd

AGE_BINS: tuple[int, ...] = (0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 200)


def age_distribution(df: pd.DataFrame, bins: tuple[int, ...] = AGE_BINS) -> pd.DataFrame:
    """Image counts per age bin (years, left-closed) and sex. Columns: ``age_bin, F, M, total``."""
    labels = [f"{lo}-{hi - 1}" if hi < 200 else f"{lo}+" for lo, hi in zip(bins[:-1], bins[1:])]
    cut = pd.cut(df["Patient Age"], bins=list(bins), right=False, labels=labels)
    table = pd.crosstab(cut, df["Patient Gender"]).reindex(index=labels, columns=["F", "M"], fill_value=0)
    table["total"] = table.sum(axis=1)
    table.index.name = "age_bin"
    return table.reset_index()


def categorical_distribution(df: pd.DataFrame, column: str) -> pd.DataFrame:
    """Image counts and fractions per value of ``column`` (e.g. ``Patient Gender``, ``View Position``)."""
    counts = df[column].value_counts().sort_index()
    return pd.DataFrame({column: counts.index, "images": counts.to_numpy(), "fraction": (counts / counts.sum()).to_numpy()})


def age_summary(df: pd.DataFrame) -> dict[str, float]:
    """Mean, median, min, max age (years) and the count of implausible ages (> 120)."""
    a = df["Patient Age"].to_numpy(dtype=np.float64)
    return {
        "mean": float(np.mean(a)),
        "median": float(np.median(a)),
        "min": float(np.min(a)),
        "max": float(np.max(a)),
        "implausible_over_120": int((a > 120).sum()),
    }

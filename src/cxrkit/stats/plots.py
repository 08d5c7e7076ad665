"""Plots of dataset statistics (matplotlib, Agg backend, written atomically as PNG)."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from cxrkit.findings import FINDINGS
from cxrkit.viz import pyplot, save_figure


def _figure(*args, **kwargs):
    plt = pyplot()
    return plt, plt.figure(*args, **kwargs)


def _save(plt, fig, path: str | os.PathLike) -> None:
    save_figure(fig, path)


def plot_cooccurrence(matrix: np.ndarray, path: str | os.PathLike, title: str = "Co-occurrence") -> None:
    """Heatmap of the 14x14 co-occurrence matrix (log colour scale, counts written in cells)."""
    plt, fig = _figure(figsize=(9, 8))
    ax = fig.add_subplot(111)
    m = np.asarray(matrix, dtype=float)
    im = ax.imshow(np.log10(m + 1), cmap="viridis")
    ax.set_xticks(range(len(FINDINGS)), FINDINGS, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(FINDINGS)), FINDINGS, fontsize=8)
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            ax.text(j, i, f"{int(m[i, j])}", ha="center", va="center", fontsize=5.5,
                    color="white" if m[i, j] < m.max() / 3 else "black")
    fig.colorbar(im, ax=ax, label="log10(images + 1)", shrink=0.8)
    ax.set_title(f"{title} (diagonal: finding alone)")
    _save(plt, fig, path)


def plot_prevalence(prev: dict[str, pd.DataFrame], path: str | os.PathLike) -> None:
    """Grouped bar chart of per-finding prevalence, one bar group per split."""
    plt, fig = _figure(figsize=(10, 4.5))
    ax = fig.add_subplot(111)
    names = list(prev)
    width = 0.8 / max(1, len(names))
    for k, split in enumerate(names):
        df = prev[split]
        x = np.arange(len(df))
        ax.bar(x + k * width, df["prevalence"] * 100, width, label=f"{split} (n={int(df['known'].max())})")
    ax.set_xticks(np.arange(len(df)) + width * (len(names) - 1) / 2, df["finding"], rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("prevalence (% of images)")
    ax.legend(fontsize=8)
    ax.set_title("Finding prevalence per split")
    _save(plt, fig, path)


def plot_demographics(df: pd.DataFrame, path: str | os.PathLike) -> None:
    """Age histogram by sex and view-position counts side by side."""
    plt, fig = _figure(figsize=(10, 3.8))
    ax1 = fig.add_subplot(121)
    ages = df["Patient Age"].clip(upper=100)
    for sex, color in (("F", "tab:red"), ("M", "tab:blue")):
        ax1.hist(ages[df["Patient Gender"] == sex], bins=np.arange(0, 102, 2), alpha=0.55, label=sex, color=color)
    ax1.set_xlabel("age (years, >100 clipped)")
    ax1.set_ylabel("images")
    ax1.legend()
    ax2 = fig.add_subplot(122)
    counts = df["View Position"].value_counts()
    ax2.bar(counts.index, counts.to_numpy(), color="tab:gray")
    ax2.set_ylabel("images")
    ax2.set_title("view position")
    ax1.set_title("age by sex")
    _save(plt, fig, path)

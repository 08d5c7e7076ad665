"""The validation's text table, CSV files and plots."""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cxrkit.benchmarks.chexmask_validation.common import AVERAGE, STRUCTURES, _one
from cxrkit.errors import InputError
from cxrkit.io.atomic import write_text
from cxrkit.metrics.stats import pearson
from cxrkit.viz import pyplot, save_figure

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

log = logging.getLogger(__name__)

from cxrkit.benchmarks.chexmask_validation.validate import ValidationResult


def _pm(mean: float, std: float) -> str:
    if math.isnan(mean):
        return "-"
    return f"{mean:.3f}" + (f"±{std:.3f}" if not math.isnan(std) else "")


def _r(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:+.2f}"


def format_summary(summary: "pd.DataFrame") -> str:
    """A readable fixed-width table of :func:`summarize`'s output (Dice as mean±sd; r = Pearson,
    rho = Spearman of ``Dice RCA (Mean)`` with the true Dice)."""
    if summary.empty:
        return "no matched images"
    phys_a, phys_b = _one(summary["physician_a"]), _one(summary["physician_b"])
    head = (f"{'dataset':<15} {'structure':<10} {'n':>4}  {'HG vs A':>12} {'HG vs B':>12} {'A vs B':>12}  "
            f"{'RCA':>5}  {'r(A)':>5} {'r(B)':>5} {'r(AB)':>5} {'rho(AB)':>7} {'MAE':>5}")
    legend = (f"A = {phys_a or '-'}, B = {phys_b or '-'}; HG = HybridGNet (CheXmask); Dice mean±sd in the 1024 space; "
              "RCA = mean Dice RCA (Mean); r/rho = Pearson/Spearman of Dice RCA (Mean) with the true Dice "
              "vs A, vs B, vs the mean of both (AB); MAE = mean |RCA - Dice vs AB|")
    lines = [legend, head, "-" * len(head)]
    last = None
    for row in summary.itertuples(index=False):
        if last is not None and row.structure != last:
            lines.append("")
        last = row.structure
        lines.append(
            f"{row.dataset:<15} {row.structure:<10} {row.n:>4}  "
            f"{_pm(row.dice_vs_a_mean, row.dice_vs_a_std):>12} {_pm(row.dice_vs_b_mean, row.dice_vs_b_std):>12} "
            f"{_pm(row.dice_a_vs_b_mean, row.dice_a_vs_b_std):>12}  "
            f"{'-' if math.isnan(row.dice_rca_mean_mean) else f'{row.dice_rca_mean_mean:.3f}':>5}  "
            f"{_r(row.pearson_rca_vs_a):>5} {_r(row.pearson_rca_vs_b):>5} {_r(row.pearson_rca_vs_ab_mean):>5} "
            f"{_r(row.spearman_rca_vs_ab_mean):>7} "
            f"{'-' if math.isnan(row.mae_rca_vs_ab_mean) else f'{row.mae_rca_vs_ab_mean:.3f}':>5}"
        )
    return "\n".join(lines)


def write_outputs(result: ValidationResult, out: str | os.PathLike, *, plots: bool = True) -> dict[str, Path]:
    """Write ``per_image.csv``, ``summary.csv``, ``unmatched.csv`` and the plots into ``out`` (atomically)."""
    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{folder}: exists and is not a folder")
    folder.mkdir(parents=True, exist_ok=True)
    paths = {
        "per_image": folder / "per_image.csv",
        "summary": folder / "summary.csv",
        "unmatched": folder / "unmatched.csv",
    }
    write_text(paths["per_image"], result.per_image.to_csv(index=False, float_format="%.6f", lineterminator="\n"))
    write_text(paths["summary"], result.summary.to_csv(index=False, float_format="%.6f", lineterminator="\n"))
    write_text(paths["unmatched"], result.unmatched.to_csv(index=False, lineterminator="\n"))
    if plots and len(result.per_image):
        paths["scatter"] = folder / "rca_vs_true_dice.png"
        paths["boxplots"] = folder / "dice_boxplots.png"
        plot_rca_scatter(result.per_image, paths["scatter"])
        plot_dice_boxplots(result.per_image, paths["boxplots"])
    log.info("wrote %s", ", ".join(str(p) for p in paths.values()))
    return paths


def plot_rca_scatter(per_image: "pd.DataFrame", path: str | os.PathLike, true_column: str = "dice_vs_ab_mean") -> None:
    """Scatter of ``Dice RCA (Mean)`` (y) against the true Dice (x, default vs the mean of both
    physicians), one panel per structure and ``average``, coloured by dataset; dashed: y = x."""
    plt = pyplot()
    panels = (*STRUCTURES, AVERAGE)
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.3), squeeze=False)
    datasets = list(dict.fromkeys(per_image["dataset"]))
    cmap = plt.get_cmap("tab10")
    for ax, structure in zip(axes[0], panels):
        sub = per_image[per_image["structure"] == structure]
        for k, name in enumerate(datasets):
            d = sub[sub["dataset"] == name]
            ax.scatter(d[true_column], d["dice_rca_mean"], s=14, alpha=0.75, color=cmap(k % 10), label=name)
        x = sub[true_column].to_numpy(dtype=float)
        y = sub["dice_rca_mean"].to_numpy(dtype=float)
        finite = np.concatenate([x[np.isfinite(x)], y[np.isfinite(y)]])
        lo = min(0.5, float(finite.min())) if finite.size else 0.5
        ax.plot([lo, 1], [lo, 1], "k--", lw=0.8)
        ax.set_xlim(lo - 0.01, 1.005)
        ax.set_ylim(lo - 0.01, 1.005)
        ax.set_title(f"{structure} (r={_r(pearson(y, x))}, n={int(np.isfinite(x).sum())})", fontsize=10)
        ax.set_xlabel(f"true Dice ({true_column})")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("Dice RCA (Mean)")
    axes[0][0].legend(fontsize=7, loc="lower right")
    fig.suptitle("CheXmask: RCA quality estimate vs Dice with the physicians' masks")
    save_figure(fig, path)


def plot_dice_boxplots(per_image: "pd.DataFrame", path: str | os.PathLike) -> None:
    """Per-dataset Dice boxplots, one panel per structure: HybridGNet vs A, vs B, and A vs B."""
    plt = pyplot()
    datasets = list(dict.fromkeys(per_image["dataset"]))
    kinds = (("dice_vs_a", "HG vs A", "#4c72b0"), ("dice_vs_b", "HG vs B", "#55a868"), ("dice_a_vs_b", "A vs B", "#c44e52"))
    fig, axes = plt.subplots(1, len(STRUCTURES), figsize=(5.5 * len(STRUCTURES), 4.5), squeeze=False, sharey=True)
    width = 0.25
    for ax, structure in zip(axes[0], STRUCTURES):
        sub = per_image[per_image["structure"] == structure]
        for k, (col, label, color) in enumerate(kinds):
            data, pos = [], []
            for i, name in enumerate(datasets):
                v = sub.loc[sub["dataset"] == name, col].to_numpy(dtype=float)
                v = v[np.isfinite(v)]
                if v.size:
                    data.append(v)
                    pos.append(i + (k - 1) * width)
            if data:
                bp = ax.boxplot(data, positions=pos, widths=width * 0.9, patch_artist=True, showfliers=True,
                                flierprops={"markersize": 3})
                for box in bp["boxes"]:
                    box.set_facecolor(color)
                    box.set_alpha(0.7)
            ax.plot([], [], color=color, lw=6, alpha=0.7, label=label)
        ax.set_xticks(range(len(datasets)))
        ax.set_xticklabels(datasets, rotation=30, ha="right", fontsize=8)
        ax.set_title(structure)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel("Dice (1024 space)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="upper right", ncol=len(kinds))
    fig.suptitle("CheXmask technical validation: Dice per dataset")
    save_figure(fig, path)

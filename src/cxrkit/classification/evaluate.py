"""``cxrkit evaluate``: per-class AUROC with bootstrap CIs from a predictions CSV, beside published numbers.

Predictions CSV: an ``Image Index`` column and one probability column per finding, named ``FINDING`` or
``prob_FINDING`` (all 14; when both exist ``prob_FINDING`` is used). Labels come from any NIH metadata
file, matched by ``Image Index``. Outputs under ``out_dir`` (each written atomically):

``auroc.csv``          ``finding, auroc, ci_low, ci_high, n_pos, n_neg``: 14 rows then ``mean``
``comparison.csv/.md`` the same AUROCs beside the published ones (below), clearly labelled by split
``roc_curves.png``     one ROC panel per finding;  ``roc_overlay.png``: all 14 curves on one plot
"""

from __future__ import annotations

import io
import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd

from cxrkit.data.nih import read_metadata
from cxrkit.errors import InputError, UsageError
from cxrkit.findings import FINDINGS
from cxrkit.io.atomic import write_bytes, write_text
from cxrkit.metrics.auroc import auroc, auroc_table, roc_curve

log = logging.getLogger(__name__)

# --- Published AUROCs ------------------------------------------------------------------------------------
# CheXNet: Rajpurkar et al., "CheXNet: Radiologist-Level Pneumonia Detection on Chest X-Rays with Deep
# Learning", arXiv 1711.05225, Table 2 (DenseNet-121). Per-class values as reproduced in the README of
# github.com/arnoweng/CheXNet (column "CheXNet", linking arXiv 1711.05225); their mean is 0.8414 (the paper's
# 0.841). CheXNet used its own random 70/10/20 patient split, NOT the official test list: not directly
# comparable with an official-split evaluation.
CHEXNET: dict[str, float] = dict(zip(FINDINGS, (0.8094, 0.9248, 0.8638, 0.7345, 0.8676, 0.7802, 0.7680, 0.8887,
                                                 0.7901, 0.8878, 0.9371, 0.8047, 0.8062, 0.9164)))
CHEXNET_MEAN = 0.841

# Wang et al. 2017, ChestX-ray14 on the official patient-wise split, ResNet-50 (arXiv 1705.02315, later
# versions): mean AUROC 0.745 as quoted in the project's issue 4. The per-class values of that table could
# not be verified from a primary source in this environment, so they are deliberately left out.
WANG2017_OFFICIAL_MEAN = 0.745

# Wang et al., CVPR 2017 (the conference version): ResNet-50, W-CEL loss, ChestX-ray8 = only the first 8
# findings, a random 70/10/20 split of the 2017 image set. Verified against the paper's text (AUC table,
# row "ResNet-50" / "W-CEL"). Different label set and split: shown for context only.
WANG2017_CVPR_RESNET50: dict[str, float] = dict(zip(FINDINGS[:8], (0.7069, 0.8141, 0.7362, 0.6128, 0.5609,
                                                                    0.7164, 0.6333, 0.7891)))

COMPARISON_COLUMNS = {
    "wang2017_resnet50_official_split": "Wang 2017 ResNet-50, official split (mean only; per-class not verified)",
    "wang2017_cvpr_resnet50_chestxray8_random_split":
        "Wang 2017 CVPR ResNet-50, ChestX-ray8 (8 findings, random split)",
    "chexnet_2017_other_split": "CheXNet 2017 DenseNet-121 (own random split, not the official one)",
}


def _examples(values, k: int = 3) -> str:
    return ", ".join(repr(v) for v in list(values)[:k])


def read_predictions(path: str | os.PathLike) -> pd.DataFrame:
    """Read a predictions CSV into ``Image Index`` + the 14 finding columns (validated).

    Raises :class:`CxrkitError` naming the file for: a missing ``Image Index`` or finding column, empty or
    duplicated image names, and values that are missing or outside [0, 1] (counts and examples given).
    """
    path = Path(path)
    try:
        frame = pd.read_csv(path, dtype={"Image Index": str})
    except FileNotFoundError:
        raise UsageError(f"{path}: predictions file not found") from None
    except Exception as exc:  # pandas raises many types for a bad CSV
        raise InputError(f"{path}: not a readable CSV ({exc})") from exc
    frame.columns = [str(c).strip() for c in frame.columns]
    if "Image Index" not in frame.columns:
        raise InputError(f"{path}: no 'Image Index' column (columns: {list(frame.columns)[:8]})")
    if frame.empty:
        raise InputError(f"{path}: no prediction rows")
    cols: dict[str, str] = {}
    missing = []
    for f in FINDINGS:
        if f"prob_{f}" in frame.columns:
            cols[f] = f"prob_{f}"
            if f in frame.columns:
                log.warning("%s: both %r and 'prob_%s' present; using 'prob_%s'", path, f, f, f)
        elif f in frame.columns:
            cols[f] = f
        else:
            missing.append(f)
    if missing:
        raise InputError(f"{path}: no probability column for {missing} (expected FINDING or prob_FINDING "
                          f"for each of {', '.join(FINDINGS)})")
    names = frame["Image Index"].astype("string").str.strip()
    blank = names.isna() | (names == "")
    if blank.any():
        rows = np.flatnonzero(blank.to_numpy()) + 2
        raise InputError(f"{path}: {int(blank.sum())} rows have an empty 'Image Index', "
                          f"e.g. lines {rows[:3].tolist()}")
    dup = names[names.duplicated()]
    if len(dup):
        raise InputError(f"{path}: {len(dup)} duplicated images, e.g. {_examples(dup.unique())}")
    out = pd.DataFrame({"Image Index": names.astype(str).to_numpy()})
    raw = frame[[cols[f] for f in FINDINGS]]
    values = raw.apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    for what, bad in (("missing or not numbers", np.isnan(values)),
                      ("outside [0, 1]", ~np.isnan(values) & ((values < 0) | (values > 1)))):
        if bad.any():
            r, c = np.argwhere(bad)[0]
            raise InputError(
                f"{path}: {int(bad.sum())} probabilities are {what} ({int(bad.any(axis=1).sum())} images), e.g. "
                f"line {r + 2} ({out['Image Index'].iloc[r]}) column {cols[FINDINGS[c]]!r}: {raw.iat[r, c]!r}")
    for j, f in enumerate(FINDINGS):
        out[f] = values[:, j]
    return out


def match_labels(preds: pd.DataFrame, meta: pd.DataFrame, predictions_name: str = "predictions",
                 metadata_name: str = "metadata") -> np.ndarray:
    """(N, 14) labels of ``meta`` (canonical table) for the rows of ``preds``, matched by ``Image Index``."""
    index = meta.drop_duplicates("Image Index").set_index("Image Index")
    unknown = preds.loc[~preds["Image Index"].isin(index.index), "Image Index"]
    if len(unknown):
        raise InputError(f"{predictions_name}: {len(unknown)} of {len(preds)} images are not in {metadata_name}, "
                          f"e.g. {_examples(unknown)}")
    return index.loc[preds["Image Index"], list(FINDINGS)].to_numpy(dtype=np.float64)


def evaluate_predictions(predictions: str | os.PathLike, metadata: str | os.PathLike, out_dir: str | os.PathLike,
                         n_boot: int = 1000, seed: int = 0, plots: bool = True) -> pd.DataFrame:
    """Compute the AUROC table and write ``auroc.csv``, ``comparison.csv/.md`` and ROC plots under ``out_dir``.

    Returns the table (columns ``finding, auroc, ci_low, ci_high, n_pos, n_neg``; 14 rows then ``mean``).
    95% percentile bootstrap CIs from ``n_boot`` image-level resamples seeded with ``seed``.
    """
    if n_boot < 0:
        raise UsageError(f"n_boot must be >= 0, got {n_boot}")
    preds = read_predictions(predictions)
    labels = match_labels(preds, read_metadata(metadata), str(predictions), str(metadata))
    scores = preds[list(FINDINGS)].to_numpy(dtype=np.float64)
    table = auroc_table(labels, scores, FINDINGS, n_boot=n_boot, seed=seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "auroc.csv", table.to_csv(index=False, float_format="%.6f", lineterminator="\n"))
    comparison = comparison_table(table)
    write_text(out / "comparison.csv", comparison.to_csv(index=False, float_format="%.4f", lineterminator="\n"))
    write_text(out / "comparison.md", comparison_markdown(comparison, len(preds), n_boot))
    if plots:
        plot_rocs(out, labels, scores)
    log.info("evaluated %d images: mean AUROC %.4f", len(preds), table["auroc"].iloc[-1])
    return table


def comparison_table(table: pd.DataFrame) -> pd.DataFrame:
    """This evaluation's AUROCs beside the published ones (NaN where a number is not available/verified)."""
    rows = []
    for r in table.itertuples(index=False):
        if r.finding == "mean":
            wang, cvpr, chexnet = WANG2017_OFFICIAL_MEAN, np.nan, CHEXNET_MEAN
        else:
            wang, cvpr, chexnet = np.nan, WANG2017_CVPR_RESNET50.get(r.finding, np.nan), CHEXNET.get(r.finding, np.nan)
        rows.append({"finding": r.finding, "this_auroc": r.auroc, "ci_low": r.ci_low, "ci_high": r.ci_high,
                     "wang2017_resnet50_official_split": wang,
                     "wang2017_cvpr_resnet50_chestxray8_random_split": cvpr,
                     "chexnet_2017_other_split": chexnet})
    return pd.DataFrame(rows)


def _fmt(v: float) -> str:
    return "-" if v is None or not np.isfinite(v) else f"{v:.3f}"


def comparison_markdown(comp: pd.DataFrame, n_images: int, n_boot: int) -> str:
    """Markdown version of :func:`comparison_table`, with the sources and caveats spelled out."""
    lines = [
        f"# AUROC on {n_images} images beside published results",
        "",
        f"95% CI: percentile bootstrap over {n_boot} image-level resamples. `-`: not available or not verified.",
        "",
        "| finding | this evaluation | 95% CI | " + " | ".join(COMPARISON_COLUMNS.values()) + " |",
        "|---|---|---|" + "---|" * len(COMPARISON_COLUMNS),
    ]
    for r in comp.itertuples(index=False):
        ci = "-" if not np.isfinite(r.ci_low) else f"{r.ci_low:.3f}-{r.ci_high:.3f}"
        pub = " | ".join(_fmt(getattr(r, c)) for c in COMPARISON_COLUMNS)
        lines.append(f"| {r.finding} | {_fmt(r.this_auroc)} | {ci} | {pub} |")
    lines += [
        "",
        "Sources and caveats:",
        "- Wang et al. 2017 (arXiv 1705.02315), ChestX-ray14, ResNet-50 on the official patient-wise split: "
        "mean 0.745. Its per-class values could not be verified here and are omitted.",
        "- Wang et al., CVPR 2017 (conference version): ResNet-50 with the weighted loss on ChestX-ray8 "
        "(first 8 findings only) and a random split; its mean is not comparable with a 14-finding mean.",
        "- CheXNet (Rajpurkar et al. 2017, arXiv 1711.05225, Table 2): DenseNet-121 on its own random split of "
        "ChestX-ray14, not the official test list; mean 0.841.",
    ]
    return "\n".join(lines) + "\n"


def plot_rocs(out: str | os.PathLike, labels: np.ndarray, scores: np.ndarray,
              names: tuple[str, ...] = FINDINGS) -> list[Path]:
    """Write ``roc_curves.png`` (one panel per finding) and ``roc_overlay.png`` (all curves) under ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    ncols = 5
    nrows = max(1, -(-len(names) // ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 3.2 * nrows), sharex=True, sharey=True, squeeze=False)
    fig2, ax2 = plt.subplots(figsize=(6.5, 6.5))
    for j, f in enumerate(names):
        ax = axes.flat[j]
        a = auroc(labels[:, j], scores[:, j])
        if not np.isnan(a):
            fpr, tpr, _ = roc_curve(labels[:, j], scores[:, j])
            ax.plot(fpr, tpr, lw=1.2)
            ax2.plot(fpr, tpr, lw=1, label=f"{f} ({a:.3f})")
        ax.plot([0, 1], [0, 1], "k:", lw=0.7)
        ax.set_title(f"{f} ({_fmt(a)})", fontsize=10)
        ax.set_aspect("equal")
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.supxlabel("false positive rate")
    fig.supylabel("true positive rate")
    ax2.plot([0, 1], [0, 1], "k:", lw=0.7)
    ax2.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC curves", xlim=(0, 1), ylim=(0, 1))
    ax2.legend(fontsize=7, loc="lower right")
    written = []
    for figure, name in ((fig, "roc_curves.png"), (fig2, "roc_overlay.png")):
        buf = io.BytesIO()
        figure.savefig(buf, format="png", dpi=100, bbox_inches="tight")
        plt.close(figure)
        write_bytes(out / name, buf.getvalue())
        written.append(out / name)
    return written

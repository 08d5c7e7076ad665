"""``cxrkit evaluate``: per-class AUROC with bootstrap CIs from a predictions CSV, beside published numbers.

Predictions CSV: an ``Image Index`` column and one probability column per finding, named ``FINDING`` or
``prob_FINDING`` (all 14). Labels come from any NIH metadata file, matched by ``Image Index``.
"""

from __future__ import annotations

import io
import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd

from cxrkit.errors import CxrkitError
from cxrkit.findings import FINDINGS
from cxrkit.io.atomic import write_bytes, write_text
from cxrkit.metrics.auroc import auroc_table, roc_curve

log = logging.getLogger(__name__)

# Wang et al., "ChestX-ray8", CVPR 2017, updated results on the official patient-wise split (ChestX-ray14,
# ResNet-50; arXiv 1705.02315v5 Table 4). Their mean is 0.745.
PAPER_RESNET50 = dict(zip(FINDINGS, (0.7003, 0.8100, 0.7585, 0.6614, 0.6933, 0.6687, 0.6580, 0.7993, 0.7032,
                                     0.8052, 0.8330, 0.7859, 0.6835, 0.8717)))
# Rajpurkar et al., "CheXNet", 2017 (arXiv 1711.05225 Table 2): DenseNet-121 on a *random* split of their
# own (not the official one, so not directly comparable). Their mean is 0.841.
CHEXNET = dict(zip(FINDINGS, (0.8094, 0.9248, 0.8638, 0.7345, 0.8676, 0.7802, 0.7680, 0.8887, 0.7901, 0.8878,
                              0.9371, 0.8047, 0.8062, 0.9164)))


def read_predictions(path: str | os.PathLike) -> pd.DataFrame:
    """Read a predictions CSV into ``Image Index`` + the 14 finding columns (validated)."""
    path = Path(path)
    try:
        frame = pd.read_csv(path)
    except FileNotFoundError:
        raise CxrkitError(f"{path}: predictions file not found") from None
    except Exception as exc:
        raise CxrkitError(f"{path}: not a readable CSV ({exc})") from exc
    if "Image Index" not in frame.columns:
        raise CxrkitError(f"{path}: no 'Image Index' column (columns: {list(frame.columns)[:8]})")
    cols = {}
    missing = []
    for f in FINDINGS:
        name = f if f in frame.columns else f"prob_{f}" if f"prob_{f}" in frame.columns else None
        if name is None:
            missing.append(f)
        else:
            cols[f] = name
    if missing:
        raise CxrkitError(f"{path}: no probability column for {missing} (expected FINDING or prob_FINDING)")
    out = frame[["Image Index"] + [cols[f] for f in FINDINGS]].copy()
    out.columns = ["Image Index", *FINDINGS]
    dup = out["Image Index"][out["Image Index"].duplicated()]
    if len(dup):
        raise CxrkitError(f"{path}: {len(dup)} duplicated images, e.g. {dup.iloc[:3].tolist()}")
    values = out[list(FINDINGS)].apply(pd.to_numeric, errors="coerce")
    bad = values.isna() | (values < 0) | (values > 1)
    if bad.any().any():
        r, c = np.argwhere(bad.to_numpy())[0]
        raise CxrkitError(f"{path}: {int(bad.to_numpy().sum())} values are not probabilities in [0, 1], e.g. row "
                          f"{r + 2} ({out['Image Index'].iloc[r]}) column {cols[FINDINGS[c]]!r}: "
                          f"{frame[cols[FINDINGS[c]]].iloc[r]!r}")
    out[list(FINDINGS)] = values
    return out


def evaluate_predictions(predictions: str | os.PathLike, metadata: str | os.PathLike, out_dir: str | os.PathLike,
                         n_boot: int = 1000, seed: int = 0, plots: bool = True) -> pd.DataFrame:
    """Compute the AUROC table and write ``auroc.csv``, ``comparison.csv/.md`` and ROC plots under ``out_dir``."""
    from cxrkit.data.nih import read_metadata

    preds = read_predictions(predictions)
    meta = read_metadata(metadata).set_index("Image Index")
    unknown = preds.loc[~preds["Image Index"].isin(meta.index), "Image Index"]
    if len(unknown):
        raise CxrkitError(f"{predictions}: {len(unknown)} of {len(preds)} images are not in {metadata}, "
                          f"e.g. {unknown.iloc[:3].tolist()}")
    labels = meta.loc[preds["Image Index"], list(FINDINGS)].to_numpy(dtype=np.float64)
    scores = preds[list(FINDINGS)].to_numpy(dtype=np.float64)
    table = auroc_table(labels, scores, FINDINGS, n_boot=n_boot, seed=seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "auroc.csv", table.to_csv(index=False, float_format="%.6f", lineterminator="\n"))
    comparison = comparison_table(table)
    write_text(out / "comparison.csv", comparison.to_csv(index=False, float_format="%.4f", lineterminator="\n"))
    write_text(out / "comparison.md", _markdown(comparison, len(preds)))
    if plots:
        _plot_rocs(out, labels, scores)
    log.info("evaluated %d images: mean AUROC %.4f", len(preds), table["auroc"].iloc[-1])
    return table


def comparison_table(table: pd.DataFrame) -> pd.DataFrame:
    """This evaluation's AUROCs beside the paper's ResNet-50 (official split) and CheXNet (own split)."""
    rows = []
    for r in table.itertuples(index=False):
        if r.finding == "mean":
            paper, chexnet = np.mean(list(PAPER_RESNET50.values())), np.mean(list(CHEXNET.values()))
        else:
            paper, chexnet = PAPER_RESNET50[r.finding], CHEXNET[r.finding]
        rows.append({"finding": r.finding, "this_auroc": r.auroc, "ci_low": r.ci_low, "ci_high": r.ci_high,
                     "wang2017_resnet50_official_split": paper, "chexnet_2017_other_split": chexnet})
    return pd.DataFrame(rows)


def _markdown(comp: pd.DataFrame, n: int) -> str:
    lines = [f"AUROC on {n} images (95% bootstrap CI) beside published results. Wang et al. 2017 (ResNet-50) "
             "used the official split; CheXNet used its own random split, so it is not directly comparable.", "",
             "| finding | this evaluation | 95% CI | Wang 2017 ResNet-50 (official split) | CheXNet (other split) |",
             "|---|---|---|---|---|"]
    for r in comp.itertuples(index=False):
        lines.append(f"| {r.finding} | {r.this_auroc:.4f} | {r.ci_low:.4f}-{r.ci_high:.4f} | "
                     f"{r.wang2017_resnet50_official_split:.4f} | {r.chexnet_2017_other_split:.4f} |")
    return "\n".join(lines) + "\n"


def _plot_rocs(out: Path, labels: np.ndarray, scores: np.ndarray) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cxrkit.metrics.auroc import auroc

    fig, axes = plt.subplots(3, 5, figsize=(16, 10), sharex=True, sharey=True)
    fig2, ax2 = plt.subplots(figsize=(6, 6))
    for j, f in enumerate(FINDINGS):
        keep = ~np.isnan(labels[:, j])
        ax = axes.flat[j]
        a = auroc(labels[keep, j], scores[keep, j])
        if not np.isnan(a):
            fpr, tpr, _ = roc_curve(labels[keep, j], scores[keep, j])
            ax.plot(fpr, tpr)
            ax2.plot(fpr, tpr, lw=1, label=f"{f} {a:.3f}")
        ax.plot([0, 1], [0, 1], "k:", lw=0.7)
        ax.set_title(f"{f} ({a:.3f})", fontsize=10)
    axes.flat[-1].axis("off")
    fig.supxlabel("false positive rate")
    fig.supylabel("true positive rate")
    ax2.plot([0, 1], [0, 1], "k:", lw=0.7)
    ax2.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC, 14 findings")
    ax2.legend(fontsize=7, loc="lower right")
    for figure, name in ((fig, "roc_curves.png"), (fig2, "roc_overlay.png")):
        buf = io.BytesIO()
        figure.savefig(buf, format="png", dpi=100, bbox_inches="tight")
        plt.close(figure)
        write_bytes(out / name, buf.getvalue())

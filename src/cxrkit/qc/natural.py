"""Does RCA measure quality on natural failures? (``cxrkit bench rca-natural``)

``cxrkit bench rca`` (:mod:`cxrkit.qc.validation`) draws most of its range from expert masks damaged on
purpose. This protocol follows CheXmask's own validation instead (Gaggion et al. 2023: 10 UNet
checkpoints x 76 test images, Pearson r 0.933 between Dice RCA (Max) and the real Dice): only what
segmentation models actually output.

* **natural** outputs: every given checkpoint (e.g. the ``checkpoints/step-NNNNN.pt`` snapshots that
  ``cxrkit segmentation train --save-every N`` keeps, of hybridgnet and unet) segments every image of a
  JSRT split, as it is and under each perturbation of ``cxrkit segmentation evaluate`` (same images, same
  random draws: :func:`cxrkit.segmentation.evaluate.perturbation_rng`; the expert masks rotate with a
  rotated image). Pixel models' masks get the standard clean-up (largest component per structure, holes
  filled; :mod:`cxrkit.segmentation.postprocess`) unless ``clean_up=False``. RCA registers the image that
  was segmented (the perturbed one), once for all checkpoints.
* **damage**: for comparison, the degraded expert masks of ``cxrkit bench rca``
  (:func:`cxrkit.qc.validation.degradations`, the same seed and draws), on the clean images.

Per output and structure: the true Dice against the SCR masks (at the image's 1024 px) and, per RCA
method, the raw mean / max over references and the calibrated estimate. ``all`` is the mean of the three
structures' true Dice against ``Dice RCA (Max)`` / ``(Mean)`` / ``(Calibrated)`` (as CheXmask's Dice RCA).
Agreement (:func:`agreement`): Pearson r (with a 95 % bootstrap CI over images), mean absolute error,
and the AUROC of the estimate for flagging true Dice < 0.9 (a low estimate = a failure).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cxrkit.data.jsrt import read_jsrt
from cxrkit.errors import UsageError
from cxrkit.io.atomic import write_text
from cxrkit.io.images import load_gray8
from cxrkit.metrics.auroc import auroc
from cxrkit.metrics.segmentation import dice
from cxrkit.models import load_checkpoint
from cxrkit.qc.reference import STRUCTURES
from cxrkit.qc.validation import degradations
from cxrkit.segmentation.evaluate import (
    PERTURBATIONS,
    perturb_with_truth,
    perturbation_rng,
    predict_for_evaluation,
)
from cxrkit.viz import pyplot, save_figure

log = logging.getLogger(__name__)

FAIL_BELOW = 0.9
KEYS = (*STRUCTURES, "all")
_STEP = re.compile(r"step-(\d+)\.pt$")


@dataclass(frozen=True)
class Snapshot:
    """One checkpoint whose outputs are scored: ``label`` (``<model>@<step>``), the model family (the
    card's name), the training step (from ``step-NNNNN.pt``; None for other file names) and the module."""

    label: str
    family: str
    step: int | None
    path: Path
    model: object


def find_checkpoints(paths: Sequence[str | os.PathLike]) -> list[Path]:
    """Checkpoint files from files or folders: a training run folder (its ``checkpoints/step-*.pt``), a
    folder of ``step-*.pt`` snapshots, or any other folder (its ``*.pt``); each folder's files by step."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_file():
            found.append(p)
            continue
        if not p.is_dir():
            raise UsageError(f"--checkpoints {p}: no such file or folder")
        folder = p / "checkpoints" if (p / "checkpoints").is_dir() else p
        files = sorted(folder.glob("step-*.pt")) or sorted(folder.glob("*.pt"))
        if not files:
            raise UsageError(f"--checkpoints {p}: no step-*.pt or *.pt checkpoints in {folder}")
        found.extend(sorted(files, key=lambda f: (_step(f) is None, _step(f) or 0, f.name)))
    return found


def _step(path: Path) -> int | None:
    m = _STEP.search(path.name)
    return int(m.group(1)) if m else None


def load_snapshots(paths: Sequence[str | os.PathLike]) -> list[Snapshot]:
    """Load every checkpoint :func:`find_checkpoints` finds; labels ``<model>@<step>`` (or the file stem),
    with the run folder's name added where two would be equal."""
    files = find_checkpoints(paths)
    snaps = []
    for f in files:
        model = load_checkpoint(f)
        step = _step(f)
        family = model.card.name
        snaps.append(Snapshot(f"{family}@{step}" if step is not None else f"{family}:{f.stem}", family, step, f, model))
    labels = [s.label for s in snaps]
    out = []
    for s in snaps:
        if labels.count(s.label) > 1:
            run = s.path.parent.parent.name if s.path.parent.name == "checkpoints" else s.path.parent.name
            s = Snapshot(f"{run}/{s.label}", s.family, s.step, s.path, s.model)
        out.append(s)
    if len({s.label for s in out}) != len(out):
        raise UsageError(f"--checkpoints: the same checkpoint is given twice ({sorted(labels)})")
    return out


def _score_rows(image_id: str, image: np.ndarray, truth: Mapping[str, np.ndarray],
                candidates: Mapping[str, Mapping[str, np.ndarray]], meta: Mapping[str, dict],
                estimators: Mapping[str, object]) -> list[dict]:
    """Rows (one per candidate and key of :data:`KEYS`) with the true Dice and each method's estimates;
    one registration of ``image`` per method for all candidates."""

    names = list(candidates)
    per_method = {m: est.estimate_many(image, [candidates[n] for n in names]) for m, est in estimators.items()}
    rows = []
    for i, n in enumerate(names):
        true = {s: dice(candidates[n][s], truth[s]) for s in STRUCTURES}
        true["all"] = float(np.mean([true[s] for s in STRUCTURES]))
        for k in KEYS:
            row = {"image": image_id, **meta[n], "structure": k, "true_dice": true[k]}
            for method, ests in per_method.items():
                e = ests[i]
                row[f"{method}_max"] = e.max if k == "all" else e.per_structure_max[k]
                row[f"{method}_mean"] = e.mean if k == "all" else e.per_structure_mean[k]
                row[f"{method}_calibrated"] = np.nan if e.calibrated is None else e.calibrated[k]
            rows.append(row)
    return rows


def natural_outputs(jsrt: str | os.PathLike, snapshots: Sequence[Snapshot], estimators: Mapping[str, object],
                    split: str = "test", perturbations: Sequence[str] | None = None, seed: int = 0,
                    clean_up: bool = True, max_images: int | None = None, progress: bool = True) -> pd.DataFrame:
    """One row per (image, perturbation, snapshot, key) of the natural-output set (see the module doc)."""
    from tqdm.auto import tqdm


    kinds = tuple(perturbations or PERTURBATIONS)
    rows: list[dict] = []
    for case in tqdm(read_jsrt(jsrt, split=split)[:max_images], desc=f"natural outputs ({split})", disable=not progress):
        image = load_gray8(case.image)
        truth0 = case.load_masks()
        for index, kind in enumerate(kinds):
            img, truth, _ = perturb_with_truth(image, truth0, kind, perturbation_rng(seed, case.id, index))
            cands, meta = {}, {}
            for s in snapshots:
                scored, _, pts = predict_for_evaluation(s.model, img, clean_up)
                cands[s.label] = scored
                meta[s.label] = {"set": "natural", "perturbation": kind, "candidate": s.label, "model": s.family,
                                 "step": s.step, "cleaned": bool(clean_up and pts is None)}
            rows += _score_rows(case.id, img, truth, cands, meta, estimators)
    return pd.DataFrame(rows)


def damage_outputs(jsrt: str | os.PathLike, estimators: Mapping[str, object], split: str = "test", seed: int = 0,
                   max_images: int | None = None, progress: bool = True) -> pd.DataFrame:
    """One row per (image, degraded expert mask, key): ``cxrkit bench rca``'s damage set."""
    from tqdm.auto import tqdm


    rng = np.random.default_rng(seed)  # consumed image by image, as cxrkit bench rca does
    rows: list[dict] = []
    for case in tqdm(read_jsrt(jsrt, split=split)[:max_images], desc=f"damage set ({split})", disable=not progress):
        image = load_gray8(case.image)
        truth = case.load_masks()
        cands = degradations(truth, image.shape[0] / 1024, rng)
        meta = {n: {"set": "damage", "perturbation": "none", "candidate": n, "model": "damage", "step": None,
                    "cleaned": False} for n in cands}
        rows += _score_rows(case.id, image, truth, cands, meta, estimators)
    return pd.DataFrame(rows)


def pearson(true: np.ndarray, est: np.ndarray) -> float:
    """Pearson r; NaN when either side is constant."""
    true, est = np.asarray(true, float), np.asarray(est, float)
    if true.size < 2 or true.std() == 0 or est.std() == 0:
        return float("nan")
    return float(np.corrcoef(true, est)[0, 1])


def agreement(true: np.ndarray, est: np.ndarray, fail_below: float = FAIL_BELOW) -> dict[str, float]:
    """Pearson r, mean absolute error, and the AUROC of ``-est`` for flagging ``true < fail_below`` (NaN
    when every output is on one side); ``failures`` = how many are below."""
    true, est = np.asarray(true, float), np.asarray(est, float)
    fail = (true < fail_below).astype(np.int64)
    auc = float(auroc(fail, -est)) if 0 < fail.sum() < fail.size else float("nan")
    return {"n": int(true.size), "failures": int(fail.sum()), "pearson_r": pearson(true, est),
            "mae": float(np.abs(true - est).mean()), "auroc_fail": auc}


def pearson_ci(true: np.ndarray, est: np.ndarray, groups: np.ndarray, n_boot: int = 1000, seed: int = 0,
               level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap CI of Pearson r resampling whole groups (images) with replacement: each
    resample's r from per-group sums (counts @ sums), so one matrix product per block of resamples."""
    true, est = np.asarray(true, float), np.asarray(est, float)
    codes, uniq = pd.factorize(np.asarray(groups))
    k = len(uniq)
    if k < 2:
        return float("nan"), float("nan")
    sums = np.stack([np.bincount(codes, w, minlength=k)
                     for w in (np.ones_like(true), true, est, true * true, est * est, true * est)], 1)
    rng = np.random.default_rng(seed)
    counts = np.stack([np.bincount(rng.integers(0, k, k), minlength=k) for _ in range(n_boot)]).astype(float)
    n, sx, sy, sxx, syy, sxy = (counts @ sums).T
    cov = sxy - sx * sy / n
    vx, vy = sxx - sx * sx / n, syy - sy * sy / n
    with np.errstate(invalid="ignore", divide="ignore"):
        r = cov / np.sqrt(vx * vy)
    r = r[np.isfinite(r)]
    if r.size == 0:
        return float("nan"), float("nan")
    lo, hi = np.percentile(r, [50 * (1 - level), 50 * (1 + level)])
    return float(lo), float(hi)


def estimate_columns(per_output: pd.DataFrame) -> list[str]:
    """The ``<method>_<estimate>`` columns present with at least one value."""
    return [c for c in per_output.columns if c.endswith(("_max", "_mean", "_calibrated")) and per_output[c].notna().any()]


def summarize(per_output: pd.DataFrame, fail_below: float = FAIL_BELOW, n_boot: int = 1000) -> pd.DataFrame:
    """Agreement per set (natural / damage), group, method, estimate and key, with a bootstrap CI of r
    over images. Groups: ``all`` outputs of the set; per model family of the natural set; and, for the
    damage set beside a natural one, ``natural_range``: the damaged masks whose true Dice lies within the
    natural outputs' range (min to max, per key), which shows how much of r comes from the range."""
    recs = []
    natural = per_output[per_output["set"] == "natural"]
    for set_name, g_set in per_output.groupby("set", sort=False):
        groups = [("all", g_set)]
        if set_name == "natural" and g_set["model"].nunique() > 1:
            groups += list(g_set.groupby("model", sort=False))
        if set_name == "damage" and not natural.empty:
            span = natural.groupby("structure")["true_dice"].agg(["min", "max"])
            lo, hi = g_set["structure"].map(span["min"]), g_set["structure"].map(span["max"])
            groups.append(("natural_range", g_set[(g_set["true_dice"] >= lo) & (g_set["true_dice"] <= hi)]))
        for group, g in groups:
            for col in estimate_columns(per_output):
                method, estimate = col.rsplit("_", 1)
                for k in KEYS:
                    sub = g[g["structure"] == k]
                    if len(sub) < 2 or sub[col].isna().all():
                        continue
                    a = agreement(sub["true_dice"], sub[col], fail_below)
                    lo, hi = pearson_ci(sub["true_dice"], sub[col], sub["image"], n_boot)
                    recs.append({"set": set_name, "group": group, "method": method, "estimate": estimate,
                                 "structure": k, **a, "r_ci_low": lo, "r_ci_high": hi})
    cols = ["set", "group", "method", "estimate", "structure", "n", "failures", "pearson_r", "r_ci_low", "r_ci_high",
            "mae", "auroc_fail"]
    return pd.DataFrame(recs, columns=cols)


def true_dice_distribution(per_output: pd.DataFrame, fail_below: float = FAIL_BELOW) -> pd.DataFrame:
    """Quantiles, standard deviation and the share below ``fail_below`` of the true Dice per set and key."""
    recs = []
    for (set_name, k), g in per_output.groupby(["set", "structure"], sort=False):
        t = g["true_dice"].to_numpy(float)
        q = np.percentile(t, [0, 5, 25, 50, 75, 95, 100])
        recs.append({"set": set_name, "structure": k, "n": t.size, "min": q[0], "p05": q[1], "p25": q[2],
                     "median": q[3], "p75": q[4], "p95": q[5], "max": q[6], "std": float(t.std()),
                     f"share_below_{fail_below:g}": float((t < fail_below).mean())})
    return pd.DataFrame(recs)


_COLOURS = {"hybridgnet": "tab:blue", "unet": "tab:green", "damage": "tab:orange"}


def plot(per_output: pd.DataFrame, column: str, path: str | os.PathLike, fail_below: float = FAIL_BELOW) -> None:
    """Estimate vs true Dice, one panel per key, points coloured by model (damage: orange)."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(KEYS), figsize=(4 * len(KEYS), 4.2))
    lo = max(0.0, min(per_output["true_dice"].min(), per_output[column].min()) - 0.02)
    for ax, k in zip(axes, KEYS):
        g = per_output[per_output["structure"] == k]
        for model, sub in g.groupby("model", sort=False):
            ax.scatter(sub["true_dice"], sub[column], s=4, alpha=0.35, c=_COLOURS.get(model, "tab:grey"), label=model)
        ax.plot([0, 1], [0, 1], "k--", lw=0.8)
        ax.axvline(fail_below, color="grey", lw=0.5)
        a = agreement(g["true_dice"], g[column], fail_below)
        ax.set_title(f"{k}: r={a['pearson_r']:.3f} MAE={a['mae']:.3f}")
        ax.set_xlabel("true Dice (vs SCR)")
        ax.set_xlim(lo, 1.005)
        ax.set_ylim(lo, 1.005)
    axes[0].set_ylabel(f"RCA estimate ({column})")
    axes[0].legend(loc="upper left", markerscale=3)
    fig.tight_layout()
    save_figure(fig, path)


def run_natural(jsrt: str | os.PathLike, snapshots: Sequence[Snapshot], estimators: Mapping[str, object],
                out: str | os.PathLike, split: str = "test", perturbations: Sequence[str] | None = None,
                seed: int = 0, clean_up: bool = True, damage: bool = True, max_images: int | None = None,
                progress: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Build and score both sets; write ``per_output.csv``, ``summary.csv``, ``true_dice_distribution.csv``
    and ``<set>_<method>_<estimate>.png`` (max and calibrated) to ``out``; return (summary, distribution)."""

    if not snapshots:
        raise UsageError("rca-natural needs at least one checkpoint (--checkpoints)")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    parts = [natural_outputs(jsrt, snapshots, estimators, split, perturbations, seed, clean_up, max_images, progress)]
    if damage:
        parts.append(damage_outputs(jsrt, estimators, split, seed, max_images, progress))
    per_output = pd.concat(parts, ignore_index=True)
    per_output["step"] = per_output["step"].astype("Int64")
    write_text(out / "per_output.csv", per_output.to_csv(index=False, float_format="%.6f", lineterminator="\n"))
    summary = summarize(per_output)
    write_text(out / "summary.csv", summary.to_csv(index=False, float_format="%.5f", lineterminator="\n"))
    dist = true_dice_distribution(per_output)
    write_text(out / "true_dice_distribution.csv", dist.to_csv(index=False, float_format="%.5f", lineterminator="\n"))
    for set_name, g in per_output.groupby("set", sort=False):
        for col in estimate_columns(per_output):
            if col.endswith(("_max", "_calibrated")):
                plot(g, col, out / f"{set_name}_{col}.png")
    log.info("RCA on natural outputs written to %s", out)
    return summary, dist

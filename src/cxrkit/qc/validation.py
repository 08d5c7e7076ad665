"""Does RCA measure quality? Segmentations of known, varied quality on JSRT, true Dice vs RCA estimate.

For every image of a JSRT split, candidates are built and scored against the SCR expert masks (true
Dice, per structure and the mean of the three) and by RCA (no ground truth):

* model outputs: each model given (``name -> module``; landmark or pixel models), on the image as it
  is and on a low-contrast version (the image RCA then registers is the one that was segmented);
* the expert masks degraded on purpose, one structure at a time or all together: erosion and dilation
  (10, 25, 50 px at 1024), shifts (25, 60, 120 px), rotations about the image centre (5, 10, 20
  degrees), a cut-off part (the upper or lower 30 % of the structure removed), the two lungs swapped,
  and the heart replaced by the left lung.

Reported per structure and overall (``all``: the mean of the three vs ``Dice RCA``): Pearson r, mean
absolute error and the AUROC of the estimate for detecting true Dice < 0.7 (low estimate = failure).
Several reference sets can be scored in the same run on the same candidates (``reference_set`` column;
``cxrkit bench rca --reference-sets shipped jsrt``): the shipped NIH set against the JSRT expert set.
Reference images never come from the evaluated split (the JSRT set is 16 training ids; the shipped set is
NIH images).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from cxrkit.data.jsrt import read_jsrt
from cxrkit.io.atomic import write_text
from cxrkit.io.images import load_gray8
from cxrkit.metrics.auroc import auroc
from cxrkit.metrics.segmentation import dice
from cxrkit.qc.rca import fit_calibration
from cxrkit.qc.reference import STRUCTURES
from cxrkit.segmentation.evaluate import perturb
from cxrkit.segmentation.infer import predict_masks
from cxrkit.viz import pyplot, save_figure

log = logging.getLogger(__name__)

FAIL_BELOW = 0.7
Masks = dict[str, np.ndarray]


def _rotate(m: np.ndarray, deg: float) -> np.ndarray:
    h, w = m.shape
    a = cv2.getRotationMatrix2D((w / 2, h / 2), deg, 1.0)
    return cv2.warpAffine(m.astype(np.uint8), a, (w, h), flags=cv2.INTER_NEAREST) > 0


def _shift(m: np.ndarray, dx: int, dy: int) -> np.ndarray:
    a = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(m.astype(np.uint8), a, (m.shape[1], m.shape[0]), flags=cv2.INTER_NEAREST) > 0


def _morph(m: np.ndarray, px: int, dilate: bool) -> np.ndarray:
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * px + 1, 2 * px + 1))
    op = cv2.dilate if dilate else cv2.erode
    return op(m.astype(np.uint8), k) > 0


def _cut(m: np.ndarray, upper: bool, frac: float = 0.3) -> np.ndarray:
    ys = np.nonzero(m.any(axis=1))[0]
    if ys.size == 0:
        return m
    out = m.copy()
    cut = int(ys[0] + frac * (ys[-1] - ys[0] + 1))
    if upper:
        out[: cut] = False
    else:
        out[ys[-1] - (cut - ys[0]) + 1:] = False
    return out


def degradations(truth: Masks, scale: float, rng: np.random.Generator) -> dict[str, Masks]:
    """Named degraded copies of the expert masks (sizes in px at 1024 times ``scale``)."""
    out: dict[str, Masks] = {}

    def each(name: str, fn: Callable[[np.ndarray], np.ndarray], which: tuple[str, ...] = STRUCTURES) -> None:
        out[name] = {s: (fn(truth[s]) if s in which else truth[s]) for s in STRUCTURES}

    for px in (10, 25, 50):
        r = max(1, round(px * scale))
        each(f"erode{px}", lambda m, r=r: _morph(m, r, False))
        each(f"dilate{px}", lambda m, r=r: _morph(m, r, True))
    for px in (25, 60, 120):
        ang = rng.uniform(0, 2 * np.pi)
        dx, dy = round(px * scale * np.cos(ang)), round(px * scale * np.sin(ang))
        each(f"shift{px}", lambda m, dx=dx, dy=dy: _shift(m, dx, dy))
        s = STRUCTURES[int(rng.integers(3))]
        each(f"shift{px}_{s}", lambda m, dx=dx, dy=dy: _shift(m, dx, dy), (s,))
    for deg in (5, 10, 20):
        sign = 1 if rng.random() < 0.5 else -1
        each(f"rotate{deg}", lambda m, d=deg * sign: _rotate(m, d))
    for s in STRUCTURES:
        each(f"cut_upper_{s}", lambda m: _cut(m, True), (s,))
        each(f"cut_lower_{s}", lambda m: _cut(m, False), (s,))
    out["swap_lungs"] = {"right_lung": truth["left_lung"], "left_lung": truth["right_lung"], "heart": truth["heart"]}
    out["heart_is_left_lung"] = {**truth, "heart": truth["left_lung"]}
    return out


def model_masks(model, image: np.ndarray) -> Masks:

    return predict_masks(model, image)[0]


def _by_set(estimators: Mapping[str, object]) -> dict[str, dict[str, object]]:
    """``{set: {method: estimator}}`` from that or from a flat ``{method: estimator}`` (one set, "reference")."""
    if all(hasattr(e, "estimate_many") for e in estimators.values()):
        return {"reference": dict(estimators)}
    return {name: dict(by_method) for name, by_method in estimators.items()}


def build_and_score(jsrt: str | os.PathLike, estimators: Mapping[str, object], models: Mapping[str, object],
                    split: str = "test", seed: int = 0, progress: bool = True,
                    max_images: int | None = None) -> pd.DataFrame:
    """One row per (image, candidate, structure incl. ``all``, reference set) with ``true_dice`` and, per RCA
    method, ``<method>_mean`` / ``<method>_max`` (and ``<method>_calibrated`` where a calibration applies).

    ``estimators``: ``{reference set name: {method: RcaEstimator}}`` (every set scores the same candidates,
    in the same run), or ``{method: RcaEstimator}`` for one set (named ``reference``).
    """
    from tqdm.auto import tqdm


    sets = _by_set(estimators)
    rng = np.random.default_rng(seed)
    rows = []
    cases = read_jsrt(jsrt, split=split)[:max_images]
    for case in tqdm(cases, desc=f"RCA validation ({split})", disable=not progress):
        image = load_gray8(case.image)
        truth = case.load_masks()
        low, _ = perturb(image, "low_contrast", rng)
        groups: list[tuple[np.ndarray, dict[str, Masks]]] = [(image, {}), (low, {})]
        for name, model in models.items():
            groups[0][1][f"model:{name}"] = model_masks(model, image)
            groups[1][1][f"model:{name}@low_contrast"] = model_masks(model, low)
        groups[0][1].update({f"degraded:{k}": v for k, v in degradations(truth, image.shape[0] / 1024, rng).items()})
        for img, cands in groups:
            if not cands:
                continue
            names = list(cands)
            scored = {(ref, m): est.estimate_many(img, [cands[n] for n in names])
                      for ref, by_method in sets.items() for m, est in by_method.items()}
            for i, n in enumerate(names):
                true = {s: dice(cands[n][s], truth[s]) for s in STRUCTURES}
                true["all"] = float(np.mean(list(true.values())))
                for s in (*STRUCTURES, "all"):
                    for ref, by_method in sets.items():
                        row = {"image": case.id, "candidate": n, "structure": s, "reference_set": ref,
                               "true_dice": true[s]}
                        for method in by_method:
                            e = scored[ref, method][i]
                            row[f"{method}_mean"] = e.mean if s == "all" else e.per_structure_mean[s]
                            row[f"{method}_max"] = e.max if s == "all" else e.per_structure_max[s]
                            if e.calibrated is not None:
                                row[f"{method}_calibrated"] = e.calibrated[s]
                        rows.append(row)
    return pd.DataFrame(rows)


def agreement(true: np.ndarray, est: np.ndarray) -> dict[str, float]:
    """Pearson r, MAE, and AUROC of ``-est`` for detecting ``true < 0.7`` (NaN if one class is absent)."""
    true, est = np.asarray(true, float), np.asarray(est, float)
    fail = (true < FAIL_BELOW).astype(np.int64)
    auc = float(auroc(fail, -est)) if 0 < fail.sum() < fail.size else float("nan")
    return {"n": int(true.size), "failures": int(fail.sum()), "pearson_r": float(np.corrcoef(true, est)[0, 1]),
            "mae": float(np.abs(true - est).mean()), "auroc_fail": auc}


def summarize(per_case: pd.DataFrame) -> pd.DataFrame:
    """Agreement per reference set (when the table has ``reference_set``), RCA method, estimator (mean / max /
    calibrated) and structure."""
    recs = []
    sets = per_case.groupby("reference_set", sort=False) if "reference_set" in per_case.columns else [(None, per_case)]
    for ref, table in sets:
        for col in [c for c in table.columns if c.endswith(("_mean", "_max", "_calibrated"))]:
            method, stat = col.rsplit("_", 1)
            for s, g in table.groupby("structure", sort=False):
                g = g[g[col].notna()]
                if len(g):
                    recs.append({**({} if ref is None else {"reference_set": ref}), "method": method,
                                 "estimate": stat, "structure": s, **agreement(g["true_dice"], g[col])})
    return pd.DataFrame(recs)


def compare_sets(summary: pd.DataFrame, baseline: str = "jsrt") -> pd.DataFrame:
    """Each reference set against ``baseline`` (same run, same candidates): per method, estimate and
    structure, Pearson r and MAE of both and ``delta_r`` = r(set) - r(baseline)."""
    if "reference_set" not in summary.columns or baseline not in set(summary["reference_set"]):
        return pd.DataFrame()
    key = ["method", "estimate", "structure"]
    base = summary[summary["reference_set"] == baseline].set_index(key)[["pearson_r", "mae"]]
    recs = []
    for ref, g in summary[summary["reference_set"] != baseline].groupby("reference_set", sort=False):
        for k, row in g.set_index(key).iterrows():
            if k in base.index:
                b = base.loc[k]
                recs.append({"reference_set": ref, **dict(zip(key, k)), "pearson_r": row["pearson_r"],
                             f"pearson_r_{baseline}": b["pearson_r"], "delta_r": row["pearson_r"] - b["pearson_r"],
                             "mae": row["mae"], f"mae_{baseline}": b["mae"]})
    return pd.DataFrame(recs)


def fit_from_per_case(per_case: pd.DataFrame, method: str, estimator, fitted_on: str,
                      reference_set: str | None = None):
    """Fit a :class:`cxrkit.qc.rca.Calibration` (true Dice on the RCA max) from a validation table (the rows
    of ``reference_set`` when the table has several)."""
    if reference_set is not None and "reference_set" in per_case.columns:
        per_case = per_case[per_case["reference_set"] == reference_set]
    keys = [*STRUCTURES, "all"]
    g = {k: per_case[per_case["structure"] == k] for k in keys}
    sha = None if estimator.model is None else estimator.model.card.weights_sha256
    return fit_calibration({k: g[k]["true_dice"].to_numpy() for k in keys},
                           {k: g[k][f"{method}_max"].to_numpy() for k in keys}, method,
                           estimator.reference.ids, sha, fitted_on)


def plot(per_case: pd.DataFrame, column: str, path: str | os.PathLike, reference_set: str | None = None) -> None:
    """Estimated vs true Dice scatter, one panel per structure (``reference_set`` names the set on the axis)."""
    plt = pyplot()
    structures = [*STRUCTURES, "all"]
    fig, axes = plt.subplots(1, 4, figsize=(16, 4.2))
    for ax, s in zip(axes, structures):
        g = per_case[per_case["structure"] == s]
        kind = g["candidate"].str.split(":").str[0]
        for k, colour in (("model", "tab:blue"), ("degraded", "tab:orange")):
            sel = kind == k
            ax.scatter(g.loc[sel, "true_dice"], g.loc[sel, column], s=5, alpha=0.5, c=colour, label=k)
        ax.plot([0, 1], [0, 1], "k--", lw=0.8)
        ax.axvline(FAIL_BELOW, color="grey", lw=0.5)
        ax.axhline(FAIL_BELOW, color="grey", lw=0.5)
        a = agreement(g["true_dice"], g[column])
        ax.set_title(f"{s}: r={a['pearson_r']:.3f} MAE={a['mae']:.3f}")
        ax.set_xlabel("true Dice (vs SCR)")
        ax.set_xlim(0, 1.02)
        ax.set_ylim(0, 1.02)
    axes[0].set_ylabel(f"RCA estimate ({column}" + (f", {reference_set} set)" if reference_set else ")"))
    axes[0].legend(loc="upper left")
    fig.tight_layout()
    save_figure(fig, path)


def run_validation(jsrt: str | os.PathLike, estimators: Mapping[str, object], models: Mapping[str, object],
                   out: str | os.PathLike, split: str = "test", seed: int = 0, max_images: int | None = None,
                   progress: bool = True, baseline: str = "jsrt") -> pd.DataFrame:
    """Build, score, write ``per_case.csv``, ``summary.csv``, ``comparison.csv`` (each set against
    ``baseline`` when both were scored), ``calibration_<set>_<method>.json`` and plots
    ``rca_vs_true_<set>_<method>[_calibrated].png``; return the summary."""

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    sets = _by_set(estimators)
    per_case = build_and_score(jsrt, sets, models, split, seed, progress, max_images)
    write_text(out / "per_case.csv", per_case.to_csv(index=False))
    summary = summarize(per_case)
    write_text(out / "summary.csv", summary.to_csv(index=False))
    comparison = compare_sets(summary, baseline)
    if len(comparison):
        write_text(out / "comparison.csv", comparison.to_csv(index=False))
    for ref, by_method in sets.items():
        rows = per_case[per_case["reference_set"] == ref]
        for m, est in by_method.items():  # a calibration fitted on these images (use one fitted on val for test)
            cal = fit_from_per_case(rows, m, est, f"JSRT {split} split, {rows['image'].nunique()} images")
            write_text(out / f"calibration_{ref}_{m}.json", cal.to_json() + "\n")
            plot(rows, f"{m}_max", out / f"rca_vs_true_{ref}_{m}.png", ref)
            if f"{m}_calibrated" in rows.columns and rows[f"{m}_calibrated"].notna().any():
                plot(rows, f"{m}_calibrated", out / f"rca_vs_true_{ref}_{m}_calibrated.png", ref)
    log.info("RCA validation written to %s", out)
    return summary

"""Evaluating landmark segmentation on JSRT (``cxrkit segmentation evaluate``).

Per test image and structure, at 1024 px: Dice and 95th-percentile Hausdorff distance of the filled
predicted contour vs the SCR expert mask, mean contour error (px) of the predicted landmarks vs the
expert landmark contour, and plausibility (one component, no hole). The same under perturbations of the
input: Gaussian noise, a blanked square, rotation by +-15 degrees (ground truth rotated with the image)
and low contrast. Also the cardiothoracic ratio error (predicted vs expert masks) per image and condition.

With ``clean_up`` the masks of pixel models (``unet``) get the standard clean-up before they are scored
(:mod:`cxrkit.segmentation.postprocess`: largest connected component per structure, holes filled);
landmark models are unaffected. Plausibility is recorded before (``plausible_raw``) and after
(``plausible``) it, so one report counts implausible masks both without and with the clean-up.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from cxrkit.anatomy.measure import measure_masks
from cxrkit.data.jsrt import read_jsrt
from cxrkit.io.atomic import write_text
from cxrkit.io.images import load_gray8
from cxrkit.metrics.segmentation import contour_error, dice, hausdorff95, plausibility
from cxrkit.segmentation.infer import predict_masks
from cxrkit.segmentation.postprocess import clean_masks
from cxrkit.viz import pyplot, save_figure, save_png

log = logging.getLogger(__name__)

STRUCTURES = ("right_lung", "left_lung", "heart")
PERTURBATIONS = ("none", "noise", "occlusion", "rotate+15", "rotate-15", "low_contrast")
_SLICES = {"right_lung": slice(0, 44), "left_lung": slice(44, 94), "heart": slice(94, 120)}


def perturb(image: np.ndarray, kind: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray | None]:
    """Perturbed uint8 image and the 2x3 affine applied to it (None when geometry is unchanged)."""
    h, w = image.shape
    if kind == "none":
        return image, None
    if kind == "noise":
        return np.clip(image + rng.normal(0, 25, image.shape), 0, 255).astype(np.uint8), None
    if kind == "occlusion":
        out = image.copy()
        s = h // 4
        y, x = int(rng.integers(h // 4, h // 2)), int(rng.integers(w // 8, w - w // 8 - s))
        out[y : y + s, x : x + s] = 0
        return out, None
    if kind.startswith("rotate"):
        m = cv2.getRotationMatrix2D((w / 2, h / 2), float(kind[len("rotate"):]), 1.0)
        return cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT), m
    if kind == "low_contrast":
        return (image.astype(np.float32) * 0.35 + 80).astype(np.uint8), None
    raise ValueError(f"unknown perturbation {kind!r}; choose from {PERTURBATIONS}")


def perturbation_rng(seed: int, case_id: str, index: int) -> np.random.Generator:
    """The generator of one (image, perturbation): seeded by the run seed, the image id's last three digits
    (0 when they are not digits) and the perturbation's position in the evaluated list."""
    return np.random.default_rng([seed, int(case_id[-3:]) if case_id[-3:].isdigit() else 0, index])


def perturb_with_truth(image: np.ndarray, masks: dict[str, np.ndarray], kind: str, rng: np.random.Generator,
                       points: np.ndarray | None = None):
    """The perturbed image with its ground truth moved along: (image, masks, points); masks (bool) and
    points ((x, y) pixels) are warped by the perturbation's affine (nearest neighbour) when it has one."""
    img, m = perturb(image, kind, rng)
    if m is None:
        return img, masks, points
    warped = {s: cv2.warpAffine(v.astype(np.uint8), m, v.shape[::-1], flags=cv2.INTER_NEAREST) > 0
              for s, v in masks.items()}
    return img, warped, None if points is None else points @ m[:, :2].T + m[:, 2]


def predict_for_evaluation(model, image: np.ndarray, clean_up: bool = False):
    """(masks as scored, masks as predicted, landmarks or None) of one grayscale image: with
    ``clean_up`` a pixel model's masks get :func:`cxrkit.segmentation.postprocess.clean_masks`."""
    raw, pts = predict_masks(model, image)
    return (clean_masks(raw) if clean_up and pts is None else raw), raw, pts


def evaluate_checkpoint(model, jsrt: str | os.PathLike, landmarks: str | os.PathLike, split: str = "test",
                        perturbations: tuple[str, ...] = PERTURBATIONS, seed: int = 0,
                        progress: bool = True, clean_up: bool = False) -> pd.DataFrame:
    """One row per (image, perturbation, structure) with dice, hd95, contour_error, plausible (of the
    scored masks), plausible_raw (before the clean-up) and clean_up (whether it was applied)."""
    from tqdm.auto import tqdm


    cases = [c for c in read_jsrt(jsrt, landmarks, split=split) if c.landmark_files is not None]
    rows = []
    for c in tqdm(cases, desc="evaluate", disable=not progress):
        image = load_gray8(c.image)
        truth_masks = c.load_masks()
        truth_pts = c.landmarks()
        for kind in perturbations:
            rng = perturbation_rng(seed, c.id, perturbations.index(kind))
            img, tm, tp = perturb_with_truth(image, truth_masks, kind, rng, truth_pts)
            pred, raw, pts = predict_for_evaluation(model, img, clean_up)
            ctr_error = abs(measure_masks(pred["right_lung"], pred["left_lung"], pred["heart"]).ctr
                            - measure_masks(tm["right_lung"], tm["left_lung"], tm["heart"]).ctr)
            for s in STRUCTURES:
                p = plausibility(pred[s])
                rows.append({"image": c.id, "perturbation": kind, "structure": s, "dice": dice(pred[s], tm[s]),
                             "hd95": hausdorff95(pred[s], tm[s]),
                             "contour_error": contour_error(pts[_SLICES[s]], tp[_SLICES[s]]) if pts is not None else np.nan,
                             "plausible": bool(p["plausible"]),
                             "plausible_raw": bool(p["plausible"] if raw is pred else plausibility(raw[s])["plausible"]),
                             "clean_up": raw is not pred, "ctr_abs_error": ctr_error})
    return pd.DataFrame(rows)


def summarize(per_image: pd.DataFrame) -> pd.DataFrame:
    """Mean Dice / HD95 / contour error, the implausible count per perturbation and structure (of the
    scored masks, and ``implausible_raw`` before the clean-up when the table has it), and the mean
    absolute error of the cardiothoracic ratio from the predicted vs the expert masks (the same value on
    the three structure rows of a condition)."""
    g = per_image.groupby(["perturbation", "structure"], sort=False)
    bad = lambda v: int((~v.astype(bool)).sum())  # noqa: E731
    extra = {"implausible_raw": ("plausible_raw", bad)} if "plausible_raw" in per_image.columns else {}
    out = g.agg(dice=("dice", "mean"), hd95=("hd95", "mean"), contour_error=("contour_error", "mean"),
                implausible=("plausible", bad), **extra, n=("dice", "size"), ctr_mae=("ctr_abs_error", "mean"))
    return out.reset_index()


def write_report(per_image: pd.DataFrame, out: str | os.PathLike) -> pd.DataFrame:
    """Write per_image.csv, summary.csv and a Dice boxplot; returns the summary."""
    plt = pyplot()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    summary = summarize(per_image)
    write_text(out / "per_image.csv", per_image.to_csv(index=False, float_format="%.5f", lineterminator="\n"))
    write_text(out / "summary.csv", summary.to_csv(index=False, float_format="%.4f", lineterminator="\n"))
    fig, axes = plt.subplots(1, 3, figsize=(14, 4), sharey=True)
    for ax, s in zip(axes, STRUCTURES):
        sub = per_image[per_image.structure == s]
        kinds = list(dict.fromkeys(sub.perturbation))
        ax.boxplot([sub[sub.perturbation == k].dice for k in kinds])
        ax.set_xticks(range(1, len(kinds) + 1), kinds)
        ax.set_title(s)
        ax.tick_params(axis="x", rotation=45)
    axes[0].set_ylabel("Dice at 1024 px")
    save_figure(fig, out / "dice_boxplot.png", dpi=100)
    return summary


def worst_case_overlays(model, jsrt: str | os.PathLike, per_image: pd.DataFrame, out: str | os.PathLike,
                        n: int = 3, seed: int = 0, clean_up: bool = False) -> list[Path]:
    """Overlays of the ``n`` clean test images with the lowest mean Dice and, per perturbation, its worst
    image: expert contours in green, predicted in red (lungs) / magenta (heart), Dice in the corner.
    Written as ``worst_<perturbation>_<id>.png``; returns the paths. ``clean_up`` as in
    :func:`evaluate_checkpoint` (draw the masks that were scored)."""
    out = Path(out)
    cases = {c.id: c for c in read_jsrt(jsrt)}
    mean = per_image.groupby(["perturbation", "image"], sort=False)["dice"].mean().reset_index()
    picks = [("none", i) for i in mean[mean.perturbation == "none"].nsmallest(n, "dice")["image"]]
    picks += [(k, g.nsmallest(1, "dice")["image"].iloc[0]) for k, g in mean.groupby("perturbation", sort=False)
              if k != "none"]
    kinds = list(dict.fromkeys(per_image["perturbation"]))
    paths = []
    for kind, image_id in picks:
        c = cases[image_id]
        image = load_gray8(c.image)
        img, truth, _ = perturb_with_truth(image, c.load_masks(), kind, perturbation_rng(seed, c.id, kinds.index(kind)))
        pred = predict_for_evaluation(model, img, clean_up)[0]
        canvas = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
        for s in STRUCTURES:
            for mask, colour in ((truth[s], (0, 200, 0)), (pred[s], (0, 0, 255) if s != "heart" else (255, 0, 255))):
                cs, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
                cv2.drawContours(canvas, cs, -1, colour, 3)
        d = per_image[(per_image.perturbation == kind) & (per_image.image == image_id)].set_index("structure")["dice"]
        text = f"{kind} {image_id}: RL {d['right_lung']:.3f} LL {d['left_lung']:.3f} H {d['heart']:.3f}"
        cv2.putText(canvas, text, (20, 50), cv2.FONT_HERSHEY_SIMPLEX, 1.2, (0, 255, 255), 3)
        path = out / f"worst_{kind}_{image_id}.png"
        save_png(path, cv2.resize(canvas, (512, 512), interpolation=cv2.INTER_AREA))
        paths.append(path)
    return paths


def compare_drops(a: pd.DataFrame, b: pd.DataFrame, names: tuple[str, str] = ("a", "b"), n_boot: int = 2000,
                  seed: int = 0) -> pd.DataFrame:
    """Robustness of two models evaluated on the same images (two ``per_image`` tables).

    Per perturbation and structure: each model's mean Dice drop (clean minus perturbed, per image), the
    paired difference ``drop_a - drop_b`` (negative: ``a`` loses less) with a 95% bootstrap CI over images,
    and each model's implausible outputs under the perturbation (as scored, and ``implausible_raw_*`` before
    a clean-up when the tables have it)."""
    rng = np.random.default_rng(seed)
    rows = []
    for kind in [k for k in dict.fromkeys(a["perturbation"]) if k != "none"]:
        for s in STRUCTURES:
            drops, bad, bad_raw = [], [], []
            for t in (a, b):
                clean = t[(t.perturbation == "none") & (t.structure == s)].set_index("image")["dice"]
                pert = t[(t.perturbation == kind) & (t.structure == s)].set_index("image")
                drops.append(clean - pert["dice"])
                bad.append(int((~pert["plausible"].astype(bool)).sum()))
                raw = pert["plausible_raw"] if "plausible_raw" in pert.columns else pert["plausible"]
                bad_raw.append(int((~raw.astype(bool)).sum()))
            diff = (drops[0] - drops[1]).dropna().to_numpy()
            idx = rng.integers(0, len(diff), (n_boot, len(diff)))
            boots = diff[idx].mean(axis=1)
            lo, hi = np.percentile(boots, [2.5, 97.5])
            verdict = f"{names[0]} loses less" if hi < 0 else f"{names[1]} loses less" if lo > 0 else "no significant difference"
            rows.append({"perturbation": kind, "structure": s, f"drop_{names[0]}": float(drops[0].mean()),
                         f"drop_{names[1]}": float(drops[1].mean()), "difference": float(diff.mean()),
                         "ci_low": float(lo), "ci_high": float(hi), "verdict": verdict,
                         f"implausible_{names[0]}": bad[0], f"implausible_{names[1]}": bad[1],
                         f"implausible_raw_{names[0]}": bad_raw[0], f"implausible_raw_{names[1]}": bad_raw[1],
                         "n": len(diff)})
    return pd.DataFrame(rows)

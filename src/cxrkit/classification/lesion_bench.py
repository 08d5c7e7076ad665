"""The lesion-insertion benchmark: real NIH anatomy, synthetic findings with exact boxes, CPU minutes.

1. Take the real radiographs of a folder (by default ``../shared/data/nih/images``), drop those whose NIH
   labels already carry an inserted finding (when metadata is given), split them by patient into
   train / val / test.
2. Fit lung fields to each image (:func:`~cxrkit.classification.lesion_data.fit_lung_template`) and insert
   Effusion / Mass / Nodule independently with probability 0.5 (:mod:`~cxrkit.classification.lesions`).
3. Train a classifier with :class:`~cxrkit.classification.train.Trainer` (``resnet_lite`` at 256 by
   default), keep the best epoch by validation mean AUROC.
4. On the test images: AUROC per finding; CAM heatmaps -> boxes -> IoBB / IoU against the inserted boxes.

Outputs under ``out``: ``model.pt`` (loadable by ``cxrkit predict``), ``metrics.json``,
``test_predictions.csv`` (``image,finding,label,prob,gt_x,gt_y,gt_w,gt_h,pred_x,pred_y,pred_w,pred_h``;
boxes in original pixels), ``train/`` (checkpoints, metrics.csv), ``roc.png``, ``overlays.png``.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cxrkit.classification.augment import AugmentConfig
from cxrkit.classification.lesion_data import LesionDataset, load_base_images
from cxrkit.classification.lesions import LESION_FINDINGS
from cxrkit.data.nih import patient_of
from cxrkit.errors import CxrkitError
from cxrkit.io.atomic import write_text

log = logging.getLogger(__name__)

IOBB_THRESHOLDS = (0.1, 0.25, 0.5, 0.75, 0.9)
IOU_THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)

# Heatmap -> box settings the benchmark can use; with box_method="auto" the one with the best accuracy at
# T(IoBB)=0.5 on the *validation* images is applied to the test images (the test set never chooses).
BOX_CANDIDATES: dict[str, tuple[str, dict]] = {
    "paper": ("paper", {}),
    "adaptive": ("adaptive", {}),
    "adaptive@0.7": ("adaptive", {"rel_threshold": 0.7}),
    "adaptive@0.8": ("adaptive", {"rel_threshold": 0.8}),
    "adaptive@0.9": ("adaptive", {"rel_threshold": 0.9}),
}


@dataclass(frozen=True)
class LesionBenchConfig:
    model: str = "resnet_lite"
    input_size: int = 256
    work_size: int = 512
    epochs: int = 20
    batch_size: int = 16
    lr: float = 1e-3
    repeats: int = 10  # synthetic variants per training image
    eval_repeats: int = 4  # per test image
    val_repeats: int = 8  # per validation image (model selection needs enough samples)
    prevalence: float = 0.5
    test_fraction: float = 0.2
    val_fraction: float = 0.1
    seed: int = 0
    num_workers: int = 2
    box_method: str = "auto"  # "auto": pick among BOX_CANDIDATES on the validation set; or one candidate name
    augment: bool = True
    max_images: int | None = None
    # LSE pooling sharpness override: None (the model card's, 10 for resnet_lite), one number for every finding,
    # or ((finding, r), ...) per finding (findings not named keep DEFAULT_LSE_R); see parse_lse_r.
    lse_r: float | tuple[tuple[str, float], ...] | None = None


DEFAULT_LSE_R = 10.0


def parse_lse_r(text: str) -> float | tuple[tuple[str, float], ...]:
    """``"4"`` -> 4.0 for every finding; ``"Effusion=4,Mass=4"`` -> per-finding sharpness (others keep
    :data:`DEFAULT_LSE_R`). Raises :class:`CxrkitError` naming the bad part and the valid findings."""
    text = text.strip()
    if "=" not in text:
        return _positive(text, f"--lse-r {text!r} is neither a number nor FINDING=R pairs")
    pairs = []
    for part in text.split(","):
        name, _, value = part.partition("=")
        name = name.strip()
        if name not in LESION_FINDINGS:
            raise CxrkitError(f"--lse-r: {name!r} is not one of the benchmark findings {list(LESION_FINDINGS)}")
        pairs.append((name, _positive(value, f"--lse-r: {part!r} does not end in a number")))
    return tuple(pairs)


def _positive(text: str, not_a_number: str) -> float:
    try:
        r = float(text)
    except ValueError:
        raise CxrkitError(not_a_number) from None
    if not r > 0:
        raise CxrkitError(f"--lse-r must be a positive number (LSE pooling sharpness), got {text.strip()}")
    return r


def lse_architecture(lse_r: float | tuple[tuple[str, float], ...] | None) -> tuple[tuple[str, Any], ...]:
    """The ``architecture`` entry for a :class:`LesionBenchConfig.lse_r` value (labels = LESION_FINDINGS)."""
    if lse_r is None:
        return ()
    if isinstance(lse_r, (int, float)):
        return (("lse_r", float(lse_r)),)
    given = dict(lse_r)
    return (("lse_r", tuple(float(given.get(f, DEFAULT_LSE_R)) for f in LESION_FINDINGS)),)


def split_by_patient(names: list[str], test_fraction: float, val_fraction: float, seed: int) -> dict[str, list[str]]:
    """Seeded patient-wise train/val/test split (fractions of patients)."""
    patients = sorted({patient_of(n) for n in names})
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(patients))
    n_test = max(1, round(test_fraction * len(patients)))
    n_val = max(1, round(val_fraction * len(patients)))
    test = {patients[i] for i in order[:n_test]}
    val = {patients[i] for i in order[n_test : n_test + n_val]}
    out: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for n in names:
        p = patient_of(n)
        out["test" if p in test else "val" if p in val else "train"].append(n)
    return out


@dataclass
class BenchData:
    """The benchmark's images and datasets: ``names`` used, ``excluded`` (real findings), the patient ``split``,
    and the train / val / test :class:`LesionDataset` (seeded, so every run with one config sees the same)."""

    names: list[str]
    excluded: list[str]
    split: dict[str, list[str]]
    train: LesionDataset
    val: LesionDataset
    test: LesionDataset


def prepare_data(images_dir: str | Path, cfg: LesionBenchConfig, metadata: str | Path | None = None,
                 progress: bool = True) -> BenchData:
    """Steps 1-2 of the benchmark (see the module doc) for ``cfg``."""
    images_dir = Path(images_dir)
    names = sorted(p.name for p in images_dir.iterdir() if p.suffix.lower() == ".png")
    if not names:
        raise CxrkitError(f"{images_dir}: no PNG images for the lesion benchmark")
    excluded: list[str] = []
    if metadata is not None:
        from cxrkit.data.nih import read_metadata

        table = read_metadata(metadata).set_index("Image Index")
        missing = [n for n in names if n not in table.index]
        if missing:
            raise CxrkitError(f"{metadata}: {len(missing)} benchmark images have no metadata row, e.g. {missing[:3]}")
        real = table.loc[names, list(LESION_FINDINGS)].fillna(0).to_numpy().sum(1) > 0
        excluded = [n for n, r in zip(names, real) if r]
        names = [n for n, r in zip(names, real) if not r]
    if cfg.max_images:
        names = names[: cfg.max_images]
    split = split_by_patient(names, cfg.test_fraction, cfg.val_fraction, cfg.seed)
    log.info("lesion benchmark: %d images (%d excluded for real findings): train %d, val %d, test %d",
             len(names), len(excluded), *(len(split[k]) for k in ("train", "val", "test")))
    base = {k: load_base_images([images_dir / n for n in v], cfg.work_size, progress) for k, v in split.items()}
    train_ds = LesionDataset(base["train"], cfg.input_size, cfg.repeats, seed=cfg.seed * 1000 + 1, prevalence=cfg.prevalence)
    val_ds = LesionDataset(base["val"], cfg.input_size, cfg.val_repeats, seed=cfg.seed * 1000 + 2, prevalence=cfg.prevalence)
    test_ds = LesionDataset(base["test"], cfg.input_size, cfg.eval_repeats, seed=cfg.seed * 1000 + 3, prevalence=cfg.prevalence)
    return BenchData(names, excluded, split, train_ds, val_ds, test_ds)


def run_lesion_benchmark(images_dir: str | Path, out: str | Path, cfg: LesionBenchConfig = LesionBenchConfig(),
                         metadata: str | Path | None = None, progress: bool = True) -> dict[str, Any]:
    """Run the whole benchmark; returns the metrics dict that is also written to ``metrics.json``."""
    from cxrkit.classification.train import TrainConfig, Trainer

    t_start = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = prepare_data(images_dir, cfg, metadata, progress)
    names, excluded, split = data.names, data.excluded, data.split
    train_ds, val_ds, test_ds = data.train, data.val, data.test

    tcfg = TrainConfig(model=cfg.model, input_size=cfg.input_size, labels=LESION_FINDINGS, epochs=cfg.epochs,
                       batch_size=cfg.batch_size, lr=cfg.lr, warmup_steps=30, loss="bce", schedule="cosine",
                       augment=AugmentConfig(rotate_deg=5, scale=0.05, translate=0.03) if cfg.augment else None,
                       seed=cfg.seed, num_workers=cfg.num_workers,
                       architecture=lse_architecture(cfg.lse_r))
    t_train = time.perf_counter()
    summary = Trainer(tcfg, out / "train").fit(train_ds, val_ds, progress=progress)
    train_seconds = time.perf_counter() - t_train
    shutil.copyfile(out / "train" / "best.pt", out / "model.pt.tmp")
    (out / "model.pt.tmp").replace(out / "model.pt")

    if cfg.box_method == "auto":
        val_rows, _ = evaluate_on(out / "model.pt", val_ds, BOX_CANDIDATES, progress)
        val_scores = {k: score_rows(r) for k, r in val_rows.items()}
        val_acc = {k: v["overall"]["acc_iobb@0.5"] for k, v in val_scores.items()}
        chosen = max(BOX_CANDIDATES, key=lambda k: (val_acc[k], k == "paper"))
        val_per_finding = {f: {m: val_scores[chosen]["per_finding"][f][m] for m in ("auroc", "acc_iobb@0.5")}
                           for f in LESION_FINDINGS}
    elif cfg.box_method in BOX_CANDIDATES:
        val_acc, chosen = {}, cfg.box_method
        val_rows, _ = evaluate_on(out / "model.pt", val_ds, {chosen: BOX_CANDIDATES[chosen]}, progress)
        val_per_finding = {f: {m: v[m] for m in ("auroc", "acc_iobb@0.5")}
                           for f, v in score_rows(val_rows[chosen])["per_finding"].items()}
    else:
        raise CxrkitError(f"box method {cfg.box_method!r} is not 'auto' or one of {sorted(BOX_CANDIDATES)}")
    test_rows, examples = evaluate_on(out / "model.pt", test_ds, BOX_CANDIDATES, progress, example_config=chosen)
    rows = test_rows[chosen]
    _write_rows(out / "test_predictions.csv", rows)
    metrics = score_rows(rows)
    metrics.update({
        "box_method": {"chosen": chosen, "how": "best validation accuracy at T(IoBB)=0.5" if val_acc else "given",
                       "validation_acc_iobb@0.5": val_acc,
                       "validation_per_finding": val_per_finding,
                       "test_acc_iobb@0.5_all_candidates": {k: score_rows(r)["overall"]["acc_iobb@0.5"]
                                                            for k, r in test_rows.items()}},
        "config": dataclasses.asdict(cfg),
        "images": {"used": len(names), "excluded_real_findings": len(excluded),
                   **{k: len(v) for k, v in split.items()}},
        "samples": {"train": len(train_ds), "val": len(val_ds), "test": len(test_ds)},
        "best_epoch": summary["best_epoch"],
        "train_seconds": round(train_seconds, 1),
        "total_seconds": round(time.perf_counter() - t_start, 1),
    })
    write_text(out / "metrics.json", json.dumps(metrics, indent=2, default=float))
    _plots(out, rows, examples)
    return metrics


def evaluate_on(checkpoint: Path, ds: LesionDataset, box_configs: dict[str, tuple[str, dict]], progress: bool = False,
                example_config: str | None = None):
    """Predict every sample of ``ds`` once; for each box configuration, one row per (sample, finding)
    with the top box of that finding's heatmap. Returns ({config: rows}, examples for the overlay figure
    drawn with ``example_config``, default the first configuration)."""
    example_config = example_config or next(iter(box_configs))
    import cv2
    from tqdm.auto import tqdm

    from cxrkit.classification.boxes import heatmap_to_boxes
    from cxrkit.classification.predict import Prediction, predict_images
    from cxrkit.models.checkpoint import load_checkpoint

    model = load_checkpoint(checkpoint)
    rows: dict[str, list[dict]] = {k: [] for k in box_configs}
    examples = []
    labels = list(model.card.labels)
    for i in tqdm(range(len(ds)), desc="evaluate", disable=not progress):
        img, boxes, ident = ds.render(i)
        h, w = ds.base.original_size[i % len(ds.base.names)]
        full = cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR) if img.shape != (h, w) else img
        pred = predict_images(model, [full], [ident], box_policy="all", max_boxes=0)[0]
        for name, (method, kwargs) in box_configs.items():
            top = {}
            for f in LESION_FINDINGS:
                found = heatmap_to_boxes(pred.heatmaps[labels.index(f)], method=method, **kwargs)
                if found:
                    b = max(found, key=lambda b: b.score)
                    top[f] = {"finding": f, "x": b.x, "y": b.y, "w": b.w, "h": b.h, "score": b.score}
            for f in LESION_FINDINGS:
                gt = boxes.get(f)
                pb = top.get(f)
                rows[name].append({"image": ident, "finding": f, "label": int(gt is not None),
                                   "prob": pred.probabilities[f],
                                   **{f"gt_{k}": (gt[j] if gt else None) for j, k in enumerate("xywh")},
                                   **{f"pred_{k}": (pb[k] if pb else None) for k in "xywh"}})
            if name == example_config and len(examples) < 6 and boxes:
                shown = Prediction(pred.image, pred.width, pred.height, pred.model, pred.probabilities,
                                   list(top.values()), pred.heatmaps)
                examples.append((full, shown, boxes))
    return rows, examples


def score_rows(rows: list[dict]) -> dict[str, Any]:
    """AUROC per finding and localization accuracy: the top box is correct at T when its IoBB (IoU) with the
    inserted box is strictly greater than T, as in Wang et al. 2017."""
    from cxrkit.metrics.auroc import auroc
    from cxrkit.metrics.localization import iobb, iou

    per: dict[str, Any] = {}
    all_iobb, all_iou = [], []
    for f in LESION_FINDINGS:
        r = [x for x in rows if x["finding"] == f]
        y = np.array([x["label"] for x in r], float)
        p = np.array([x["prob"] for x in r], float)
        ob, ou = [], []
        for x in r:
            if not x["label"]:
                continue
            gt = tuple(x[f"gt_{k}"] for k in "xywh")
            if x["pred_x"] is None:
                ob.append(0.0)
                ou.append(0.0)
            else:
                pb = tuple(x[f"pred_{k}"] for k in "xywh")
                ob.append(float(iobb(gt, pb)))
                ou.append(float(iou(gt, pb)))
        all_iobb += ob
        all_iou += ou
        per[f] = {"auroc": auroc(y, p), "n_pos": int(y.sum()), "n_neg": int((1 - y).sum()),
                  **{f"acc_iobb@{t}": float(np.mean(np.array(ob) > t)) for t in IOBB_THRESHOLDS},
                  **{f"acc_iou@{t}": float(np.mean(np.array(ou) > t)) for t in IOU_THRESHOLDS}}
    overall = {"mean_auroc": float(np.mean([per[f]["auroc"] for f in LESION_FINDINGS])),
               **{f"acc_iobb@{t}": float(np.mean(np.array(all_iobb) > t)) for t in IOBB_THRESHOLDS},
               **{f"acc_iou@{t}": float(np.mean(np.array(all_iou) > t)) for t in IOU_THRESHOLDS}}
    overall["targets"] = {"mean_auroc>=0.95": overall["mean_auroc"] >= 0.95,
                          "min_auroc>=0.95": min(per[f]["auroc"] for f in LESION_FINDINGS) >= 0.95,
                          "acc_iobb@0.5>=0.8": overall["acc_iobb@0.5"] >= 0.8}
    return {"per_finding": per, "overall": overall}


COLUMNS = ["image", "finding", "label", "prob", "gt_x", "gt_y", "gt_w", "gt_h", "pred_x", "pred_y", "pred_w", "pred_h"]


def _write_rows(path: Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r[k] is None else (f"{r[k]:.6g}" if isinstance(r[k], float) else r[k])) for k in COLUMNS})
    write_text(path, buf.getvalue())


def _plots(out: Path, rows: list[dict], examples: list) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cxrkit.classification.predict import overlay
    from cxrkit.io.atomic import write_bytes
    from cxrkit.metrics.auroc import roc_curve
    from cxrkit.viz import save_png

    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    for f in LESION_FINDINGS:
        r = [x for x in rows if x["finding"] == f]
        fpr, tpr, _ = roc_curve(np.array([x["label"] for x in r]), np.array([x["prob"] for x in r]))
        ax.plot(fpr, tpr, label=f)
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="Lesion benchmark: test ROC")
    ax.legend(loc="lower right")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    write_bytes(out / "roc.png", buf.getvalue())
    if examples:
        import cv2

        tiles = []
        for full, pred, boxes in examples:
            finding = next(iter(boxes))
            canvas = overlay((np.clip(full, 0, 1) * 255).astype(np.uint8), pred, finding,
                             truth=list(boxes.items()))
            tiles.append(cv2.resize(canvas, (384, 384), interpolation=cv2.INTER_AREA))
        while len(tiles) % 3:
            tiles.append(np.zeros_like(tiles[0]))
        grid = np.vstack([np.hstack(tiles[k : k + 3]) for k in range(0, len(tiles), 3)])
        save_png(out / "overlays.png", grid)

"""The lesion-insertion benchmark: real NIH anatomy, synthetic findings with exact boxes, CPU minutes.

1. Take the real radiographs of a folder (by default ``../shared/data/nih/images``), drop those whose NIH
   labels already carry an inserted finding (when metadata is given), split them by patient into
   train / val / test.
2. Fit lung fields to each image (:func:`~cxrkit.classification.lesion_data.fit_lung_template`) and insert
   Effusion / Mass / Nodule independently with probability 0.5 (:mod:`~cxrkit.classification.lesions`).
3. Train a classifier with :class:`~cxrkit.classification.train.Trainer` (``resnet_lite`` at 256 by
   default, class maps averaged over the input and its mirror images: ``cam_flips="hv"``), keep the best epoch
   by validation mean AUROC.
4. On the validation images: estimate each finding's displacement between the mirrored views from the views
   alone (:func:`align_views`; no boxes) and store it in the model; choose the heatmap-to-box rule
   (:data:`BOX_CANDIDATES`: the paper's protocol and one threshold of the [0, 255]-normalized raw class map
   with a region rule), by default per finding, by the mean IoU of the top box with the inserted box. The test
   images never choose anything.
5. On the test images: AUROC per finding; class maps -> the chosen rule's top box -> accuracy at T(IoBB) and
   T(IoU) against the inserted boxes.

Outputs under ``out``: ``model.pt`` (loadable by ``cxrkit predict``), ``metrics.json``,
``test_predictions.csv`` (``image,finding,label,prob,gt_x,gt_y,gt_w,gt_h,pred_x,pred_y,pred_w,pred_h``;
boxes in original pixels), ``train/`` (checkpoints, metrics.csv), ``roc.png``, ``overlays.png``.
:func:`run_lesion_seeds` repeats the benchmark for several training seeds on the same data and writes
``summary.json`` (every run's figures, their mean and standard deviation).
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
from typing import Any, Sequence

import numpy as np

from cxrkit.transforms import AugmentConfig
from cxrkit.classification.lesion_data import LesionDataset, load_base_images
from cxrkit.classification.lesions import LESION_FINDINGS
from cxrkit.data.nih import patient_of
from cxrkit.errors import CxrkitError, UsageError
from cxrkit.io.atomic import write_text
from cxrkit.metrics.localization import IOBB_THRESHOLDS, IOU_THRESHOLDS

log = logging.getLogger(__name__)

# Accuracy is reported at T(IoBB) 0.1 ... 0.7 (and the paper's 0.25, 0.75, 0.9) and at T(IoU) 0.1 ... 0.7:
# cxrkit.metrics.localization.IOBB_THRESHOLDS and IOU_THRESHOLDS.

# Heatmap -> box rules the benchmark can use (name -> heatmap_to_boxes method and options). The top box of
# each finding's map is scored. "paper": the ChestX-ray8 protocol (thresholds 60 and 180 of the [0, 255] map; its
# top box is the T=180 region holding the peak); "paper@60": the same normalization and region rule at T=60
# alone; "t<T>-<rule>": threshold T (a fraction of the map's range) with the region rule each (the region holding
# the peak), largest or union (see cxrkit.classification.boxes.threshold_boxes). (The adaptive method's top box
# is the each-region at its rel_threshold, so it adds no candidate.) With box_method="auto" the rule with the
# best mean IoU on the *validation* images is applied to the test images (the test set never chooses).
BOX_THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
BOX_CANDIDATES: dict[str, tuple[str, dict]] = {
    "paper": ("paper", {}),
    "paper@60": ("threshold", {"threshold": 60 / 255, "component": "each"}),
    **{f"t{t:.1f}-{c}": ("threshold", {"threshold": t, "component": c})
       for t in BOX_THRESHOLDS for c in ("each", "largest", "union")},
}
BOX_SELECTION = "mean IoU of the top box with the inserted box, over the validation positives of all findings"
# box_method: "auto" (one rule for every finding), "auto-per-finding" (each finding its own rule, each chosen on
# its validation positives) or a candidate name (given).
BOX_METHODS = ("auto", "auto-per-finding")


def _top_box_key(method: str, kwargs: dict) -> tuple[float, str]:
    """The (threshold, region rule) whose top box equals the candidate's (see the BOX_CANDIDATES comment)."""
    if method == "paper":
        return (180 / 255, "each")
    if method == "threshold":
        return (float(kwargs.get("threshold", 60 / 255)), str(kwargs.get("component", "each")))
    raise CxrkitError(f"box candidate method {method!r}: the lesion benchmark scores 'paper' and 'threshold' rules")


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
    box_method: str = "auto-per-finding"  # see BOX_METHODS: chosen on the validation set; or one candidate name
    augment: bool = True
    max_images: int | None = None
    # LSE pooling sharpness override: None (the model card's, 10 for resnet_lite), one number for every finding,
    # or ((finding, r), ...) per finding (findings not named keep DEFAULT_LSE_R); see parse_lse_r.
    lse_r: float | tuple[tuple[str, float], ...] | None = None
    # Seed of the data (patient split, inserted lesions); None: ``seed``. Runs of several training seeds on the
    # same images keep data_seed fixed (run_lesion_seeds).
    data_seed: int | None = None
    # Class maps averaged over mirrored inputs ("none", "h", "hv"; the classifier's cam_flips option), in training
    # too unless cam_flips_train is False (then at evaluation only). "hv" costs 4 network passes per image.
    cam_flips: str = "hv"
    cam_flips_train: bool = True
    # resnet_lite only: class-map stride 8 (default) or 4 (layer3 kept at layer2's resolution), and dilated
    # convolutions after each removed stride (the receptive field of the strided network).
    cam_stride: int = 8
    dilate: bool = False
    # With cam_flips: after training, estimate each finding's view displacement from the mirrored views' peaks on
    # the validation images (no boxes, no labels: cam.estimate_view_shift) and store it in model.pt (cam_view_shift).
    align_views: bool = True

    @property
    def data_seed_value(self) -> int:
        return self.seed if self.data_seed is None else self.data_seed


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
            raise UsageError(f"--lse-r: {name!r} is not one of the benchmark findings {list(LESION_FINDINGS)}")
        pairs.append((name, _positive(value, f"--lse-r: {part!r} does not end in a number")))
    return tuple(pairs)


def _positive(text: str, not_a_number: str) -> float:
    try:
        r = float(text)
    except ValueError:
        raise UsageError(not_a_number) from None
    if not r > 0:
        raise UsageError(f"--lse-r must be a positive number (LSE pooling sharpness), got {text.strip()}")
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


def prepare_data(images_dir: str | Path | None, cfg: LesionBenchConfig, metadata: str | Path | None = None,
                 progress: bool = True, cache: str | Path | None = None) -> BenchData:
    """Steps 1-2 of the benchmark (see the module doc) for ``cfg``.

    ``cache``: an ``.npz`` of the decoded images and fitted lung fields (:func:`save_base_images`); read when it
    exists (then ``images_dir`` may be None), else written after decoding ``images_dir``.
    """
    from cxrkit.classification.lesion_data import read_base_images, save_base_images

    if cache is not None and Path(cache).is_file():
        everything, excluded, cached_for = read_base_images(cache)
        want = {"work_size": cfg.work_size, "max_images": cfg.max_images}
        if cached_for != want:
            raise CxrkitError(f"{cache}: made for {cached_for}, this run needs {want}; use another --base-cache")
        names = list(everything.names)
        log.info("lesion benchmark: %d images and lung fields from %s", len(names), cache)
    else:
        if images_dir is None:
            raise CxrkitError("the lesion benchmark needs an image folder (or an existing --base-cache file)")
        names, excluded = _benchmark_names(Path(images_dir), cfg, metadata)
        everything = load_base_images([Path(images_dir) / n for n in names], cfg.work_size, progress)
        if cache is not None:
            save_base_images(cache, everything, excluded, {"work_size": cfg.work_size, "max_images": cfg.max_images})
    split = split_by_patient(names, cfg.test_fraction, cfg.val_fraction, cfg.data_seed_value)
    log.info("lesion benchmark: %d images (%d excluded for real findings): train %d, val %d, test %d",
             len(names), len(excluded), *(len(split[k]) for k in ("train", "val", "test")))
    index = {n: i for i, n in enumerate(names)}
    base = {k: everything.subset([index[n] for n in v]) for k, v in split.items()}
    seed = cfg.data_seed_value
    train_ds = LesionDataset(base["train"], cfg.input_size, cfg.repeats, seed=seed * 1000 + 1, prevalence=cfg.prevalence)
    val_ds = LesionDataset(base["val"], cfg.input_size, cfg.val_repeats, seed=seed * 1000 + 2, prevalence=cfg.prevalence)
    test_ds = LesionDataset(base["test"], cfg.input_size, cfg.eval_repeats, seed=seed * 1000 + 3, prevalence=cfg.prevalence)
    return BenchData(names, excluded, split, train_ds, val_ds, test_ds)


def _benchmark_names(images_dir: Path, cfg: LesionBenchConfig, metadata: str | Path | None) -> tuple[list[str], list[str]]:
    """The PNG names of ``images_dir`` the benchmark uses (sorted) and those left out for real findings."""
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
    return names, excluded


def bench_architecture(cfg: LesionBenchConfig) -> tuple[tuple[str, Any], ...]:
    """The classifier ``architecture`` options a config asks for (LSE sharpness, flip-averaged class maps)."""
    flips = (("cam_flips", cfg.cam_flips), ("cam_flips_train", bool(cfg.cam_flips_train))) if cfg.cam_flips != "none" else ()
    if (cfg.cam_stride != 8 or cfg.dilate) and cfg.model != "resnet_lite":
        raise CxrkitError(f"cam_stride {cfg.cam_stride} / dilate: only for resnet_lite, not {cfg.model!r}")
    if cfg.cam_stride not in (4, 8):
        raise CxrkitError(f"cam_stride must be 8 or 4 (resnet_lite's class-map stride), got {cfg.cam_stride}")
    finer = (("layer3_stride", 1),) if cfg.cam_stride == 4 else ()
    dilated = (("dilate", True),) if cfg.dilate else ()
    return lse_architecture(cfg.lse_r) + flips + finer + dilated


def run_lesion_benchmark(images_dir: str | Path | None, out: str | Path, cfg: LesionBenchConfig = LesionBenchConfig(),
                         metadata: str | Path | None = None, progress: bool = True, data: BenchData | None = None,
                         cache: str | Path | None = None) -> dict[str, Any]:
    """Run the whole benchmark; returns the metrics dict that is also written to ``metrics.json``.

    ``data``: the prepared images of ``cfg`` (:func:`prepare_data`), e.g. shared by several training seeds;
    ``cache``: as for :func:`prepare_data`.
    """
    from cxrkit.classification.train import TrainConfig, Trainer

    if cfg.box_method not in BOX_METHODS and cfg.box_method not in BOX_CANDIDATES:
        raise CxrkitError(f"box method {cfg.box_method!r} is not one of {BOX_METHODS} or a candidate "
                          f"{list(BOX_CANDIDATES)}")
    bench_architecture(cfg)  # settings errors before any work
    t_start = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = data if data is not None else prepare_data(images_dir, cfg, metadata, progress, cache)
    train_ds, val_ds = data.train, data.val

    tcfg = TrainConfig(model=cfg.model, input_size=cfg.input_size, labels=LESION_FINDINGS, epochs=cfg.epochs,
                       batch_size=cfg.batch_size, lr=cfg.lr, warmup_steps=30, loss="bce", schedule="cosine",
                       augment=AugmentConfig(rotate_deg=5, scale=0.05, translate=0.03) if cfg.augment else None,
                       seed=cfg.seed, num_workers=cfg.num_workers, architecture=bench_architecture(cfg))
    t_train = time.perf_counter()
    summary = Trainer(tcfg, out / "train").fit(train_ds, val_ds, progress=progress)
    train_seconds = time.perf_counter() - t_train
    shutil.copyfile(out / "train" / "best.pt", out / "model.pt.tmp")
    (out / "model.pt.tmp").replace(out / "model.pt")
    return score_run(out, cfg, data, progress, t_start=t_start, best_epoch=summary["best_epoch"],
                     train_seconds=train_seconds)


def score_run(out: str | Path, cfg: LesionBenchConfig, data: BenchData, progress: bool = True,
              t_start: float | None = None, **extra: Any) -> dict[str, Any]:
    """Steps 4-5 of the benchmark for the trained ``out/model.pt``: choose the box rule on ``data.val``, score
    ``data.test``, write ``metrics.json`` (with ``extra`` entries, e.g. ``best_epoch``), ``test_predictions.csv``
    and the plots. Returns the metrics."""
    t_start = time.perf_counter() if t_start is None else t_start
    out = Path(out)
    names, excluded, split = data.names, data.excluded, data.split
    train_ds, val_ds, test_ds = data.train, data.val, data.test
    view_shift = align_views(out / "model.pt", val_ds) if cfg.cam_flips != "none" and cfg.align_views else None
    val_rows, _ = evaluate_on(out / "model.pt", val_ds, BOX_CANDIDATES, progress)
    val_scores = {k: score_rows(r) for k, r in val_rows.items()}
    if cfg.box_method == "auto":
        chosen = dict.fromkeys(LESION_FINDINGS, choose_box_rule(val_scores))
    elif cfg.box_method == "auto-per-finding":
        chosen = {f: choose_box_rule(val_scores, finding=f) for f in LESION_FINDINGS}
    else:
        chosen = dict.fromkeys(LESION_FINDINGS, cfg.box_method)
    test_rows, examples = evaluate_on(out / "model.pt", test_ds, BOX_CANDIDATES, progress, example_config=chosen)
    test_scores = {k: score_rows(r) for k, r in test_rows.items()}
    rows = _rows_by_rule(test_rows, chosen)
    _write_rows(out / "test_predictions.csv", rows)
    metrics = score_rows(rows)
    how = {"auto": f"best {BOX_SELECTION} (one rule for every finding)",
           "auto-per-finding": f"per finding, best {BOX_SELECTION.replace(' of all findings', ' of that finding')}"}
    metrics.update({
        "box_method": {"chosen": chosen, "method": {f: list(BOX_CANDIDATES[c]) for f, c in chosen.items()},
                       "how": how.get(cfg.box_method, "given"),
                       "validation": _candidate_table(val_scores),
                       "validation_chosen": score_rows(_rows_by_rule(val_rows, chosen))["overall"],
                       "validation_per_finding": _finding_table(score_rows(_rows_by_rule(val_rows, chosen))),
                       "test_all_candidates": _candidate_table(test_scores)},
        "view_shift": view_shift,
        "config": dataclasses.asdict(cfg),
        "images": {"used": len(names), "excluded_real_findings": len(excluded),
                   **{k: len(v) for k, v in split.items()}},
        "samples": {"train": len(train_ds), "val": len(val_ds), "test": len(test_ds)},
        **{k: (round(v, 1) if isinstance(v, float) else v) for k, v in extra.items()},
        "total_seconds": round(time.perf_counter() - t_start, 1),
    })
    write_text(out / "metrics.json", json.dumps(metrics, indent=2, default=float))
    _plots(out, rows, examples)
    return metrics


def align_views(checkpoint: Path, ds: LesionDataset) -> dict[str, Any]:
    """Estimate the flip-averaging model's per-finding view displacement on the images of ``ds`` (their pixels
    only: :func:`cxrkit.classification.cam.estimate_view_shift`) and rewrite ``checkpoint`` with it as the
    ``cam_view_shift`` architecture option. Returns what ``metrics.json`` records under ``view_shift``."""
    import cv2

    from cxrkit.classification.cam import estimate_view_shift
    from cxrkit.models import load_checkpoint, save_checkpoint
    from cxrkit.models.cards import arch

    model = load_checkpoint(checkpoint)
    labels = list(model.card.labels)
    if "cam_view_shift" in model.card.arch_kwargs:  # aligned earlier (a rerun of the scoring): keep it
        stored = model.card.arch_kwargs["cam_view_shift"]
        return {"shift_input_px": {f: [float(v) for v in d] for f, d in zip(labels, stored)}, "images": None,
                "how": f"stored in {Path(checkpoint).name} by an earlier scoring"}

    def images():
        for i in range(len(ds)):
            img, _, _ = ds.render(i)
            h, w = ds.base.original_size[i % len(ds.base.names)]
            yield cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR) if img.shape != (h, w) else img

    found = estimate_view_shift(model, images())
    shift = found["shift"]
    model.card = model.card.replace(architecture=arch(**{**model.card.arch_kwargs, "cam_view_shift": shift}))
    model.cam_view_shift = shift
    save_checkpoint(checkpoint, model)
    log.info("view displacement per finding (input pixels): %s", dict(zip(labels, shift)))
    return {"shift_input_px": {f: list(d) for f, d in zip(labels, shift)},
            "estimate_input_px": {f: list(d) for f, d in zip(labels, found["estimate"])},
            "mean_peak_without_with": {f: list(p) for f, p in zip(labels, found["mean_peak"])},
            "images": dict(zip(labels, found["images"])),
            "how": "median over the validation images with probability >= 0.5 of the mirrored views' peak "
                   "displacement, kept if it raises the mean peak of the averaged map "
                   "(cxrkit.classification.cam.estimate_view_shift); no boxes or labels used"}


def _rows_by_rule(rows: dict[str, list[dict]], rule: dict[str, str]) -> list[dict]:
    """One row list from per-candidate row lists (aligned: same samples and findings in the same order), each
    finding's rows from its rule's list."""
    first = next(iter(rows.values()))
    return [rows[rule[r["finding"]]][i] for i, r in enumerate(first)]


_KEY_METRICS = ("mean_iou", "acc_iou@0.3", "acc_iobb@0.5")


def _candidate_table(scores: dict[str, dict]) -> dict[str, dict[str, Any]]:
    return {k: {**{m: v["overall"][m] for m in _KEY_METRICS},
                "per_finding": {f: {m: d[m] for m in _KEY_METRICS} for f, d in v["per_finding"].items()}}
            for k, v in scores.items()}


def _finding_table(score: dict) -> dict[str, dict[str, float]]:
    return {f: {m: v[m] for m in ("auroc", *_KEY_METRICS)} for f, v in score["per_finding"].items()}


def choose_box_rule(val_scores: dict[str, dict], finding: str | None = None) -> str:
    """The candidate with the best validation mean IoU (:data:`BOX_SELECTION`; of ``finding``'s positives when
    given); ties keep the earlier candidate in :data:`BOX_CANDIDATES` order (the paper's protocol first)."""
    names = [k for k in BOX_CANDIDATES if k in val_scores]
    if not names:
        raise CxrkitError("choose_box_rule: no scored box candidate")

    def value(k: str) -> float:
        v = val_scores[k]["overall"] if finding is None else val_scores[k]["per_finding"][finding]
        return v["mean_iou"]

    best = max(value(k) for k in names)
    return next(k for k in names if value(k) == best)


def evaluate_on(checkpoint: Path, ds: LesionDataset, box_configs: dict[str, tuple[str, dict]], progress: bool = False,
                example_config: str | dict[str, str] | None = None, clip: bool = False):
    """Predict every sample of ``ds`` once; for each box configuration, one row per (sample, finding)
    with the top box of that finding's heatmap (the raw class map, or with ``clip`` the map clipped at 0, at the
    original image's resolution). Returns ({config: rows}, examples for the overlay figure drawn with ``example_config``: one
    configuration, or one per finding; default the first configuration)."""
    example_config = example_config or next(iter(box_configs))
    if isinstance(example_config, str):
        example_config = dict.fromkeys(LESION_FINDINGS, example_config)
    import cv2
    from tqdm.auto import tqdm

    from cxrkit.classification.boxes import top_threshold_boxes
    from cxrkit.classification.cam import original_maps
    from cxrkit.classification.predict import Prediction
    from cxrkit.models import load_checkpoint

    model = load_checkpoint(checkpoint)
    keys = {name: _top_box_key(method, kwargs) for name, (method, kwargs) in box_configs.items()}
    thresholds = tuple(sorted({t for t, _ in keys.values()}))
    components = tuple(sorted({c for _, c in keys.values()}))
    rows: dict[str, list[dict]] = {k: [] for k in box_configs}
    examples = []
    labels = list(model.card.labels)
    for i in tqdm(range(len(ds)), desc="evaluate", disable=not progress):
        img, boxes, ident = ds.render(i)
        h, w = ds.base.original_size[i % len(ds.base.names)]
        full = cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR) if img.shape != (h, w) else img
        probs, maps = original_maps(model, [full], clip=clip)
        probabilities = {f: float(probs[0, k]) for k, f in enumerate(labels)}
        tops = {f: top_threshold_boxes(maps[0][labels.index(f)], thresholds, components) for f in LESION_FINDINGS}
        for name, key in keys.items():
            top = {f: {"finding": f, "x": b.x, "y": b.y, "w": b.w, "h": b.h, "score": b.score}
                   for f in LESION_FINDINGS if (b := tops[f][key]) is not None}
            for f in LESION_FINDINGS:
                gt = boxes.get(f)
                pb = top.get(f)
                rows[name].append({"image": ident, "finding": f, "label": int(gt is not None),
                                   "prob": probabilities[f],
                                   **{f"gt_{k}": (gt[j] if gt else None) for j, k in enumerate("xywh")},
                                   **{f"pred_{k}": (pb[k] if pb else None) for k in "xywh"}})
        if len(examples) < 6 and boxes:
            shown = [{"finding": f, "x": b.x, "y": b.y, "w": b.w, "h": b.h, "score": b.score}
                     for f in LESION_FINDINGS if (b := tops[f][keys[example_config[f]]]) is not None]
            examples.append((full, Prediction(ident, w, h, model.card.name, probabilities, shown, maps[0]), boxes))
    return rows, examples


def score_rows(rows: list[dict]) -> dict[str, Any]:
    """AUROC per finding and localization: the top box is correct at T when its IoBB (IoU) with the inserted
    box is strictly greater than T, as in Wang et al. 2017; ``mean_iou`` / ``mean_iobb`` average over the
    positives (a missing box counts 0). ``overall`` pools the positives of all findings."""
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
                  **_localization(np.array(ob), np.array(ou))}
    overall = {"mean_auroc": float(np.mean([per[f]["auroc"] for f in LESION_FINDINGS])),
               **_localization(np.array(all_iobb), np.array(all_iou))}
    overall["targets"] = {"mean_auroc>=0.95": overall["mean_auroc"] >= 0.95,
                          "min_auroc>=0.95": min(per[f]["auroc"] for f in LESION_FINDINGS) >= 0.95,
                          "acc_iobb@0.5>=0.8": overall["acc_iobb@0.5"] >= 0.8,
                          "acc_iou@0.3>=0.6": overall["acc_iou@0.3"] >= 0.6}
    return {"per_finding": per, "overall": overall}


def _localization(ob: np.ndarray, ou: np.ndarray) -> dict[str, float]:
    nan = float("nan")
    return {"mean_iou": float(ou.mean()) if len(ou) else nan, "mean_iobb": float(ob.mean()) if len(ob) else nan,
            **{f"acc_iobb@{t}": float(np.mean(ob > t)) if len(ob) else nan for t in IOBB_THRESHOLDS},
            **{f"acc_iou@{t}": float(np.mean(ou > t)) if len(ou) else nan for t in IOU_THRESHOLDS}}


def run_lesion_seeds(images_dir: str | Path | None, out: str | Path, cfg: LesionBenchConfig, seeds: Sequence[int],
                     metadata: str | Path | None = None, progress: bool = True,
                     cache: str | Path | None = None, summarize_only: bool = False) -> dict[str, Any]:
    """The benchmark once per training seed on the same data (``cfg.data_seed``, default ``cfg.seed``): runs in
    ``out/seed-<K>/`` (a finished run with the same configuration is read, not repeated; an interrupted one
    resumes from its last epoch), then ``out/summary.json`` (:func:`summarize_runs`). Returns the summary.

    ``summarize_only``: run nothing; summarize the seeds that finished (those missing are listed in the summary
    under ``missing_seeds``; an error if none finished)."""
    if not seeds or len(set(seeds)) != len(seeds):
        raise CxrkitError(f"--seeds needs distinct training seeds, got {list(seeds)}")
    out = Path(out)
    base_cfg = dataclasses.replace(cfg, data_seed=cfg.data_seed_value)
    data = None if summarize_only else prepare_data(images_dir, base_cfg, metadata, progress, cache)
    runs: dict[int, dict[str, Any]] = {}
    missing = []
    for seed in seeds:
        run_cfg = dataclasses.replace(base_cfg, seed=int(seed))
        run_dir = out / f"seed-{seed}"
        done = run_dir / "metrics.json"
        if done.is_file():
            saved = json.loads(done.read_text())
            want = effective_config(dataclasses.asdict(run_cfg))
            had = effective_config(saved.get("config", {}))
            diff = sorted(k for k in want if k != "num_workers" and had.get(k) != want[k])
            if diff:
                raise CxrkitError(f"{done}: was run with other settings ({', '.join(diff)}); use a new --out")
            log.info("seed %d: finished earlier, read from %s", seed, done)
            runs[int(seed)] = saved
        elif summarize_only:
            missing.append(int(seed))
        else:
            runs[int(seed)] = run_lesion_benchmark(images_dir, run_dir, run_cfg, metadata, progress, data=data)
    if not runs:
        raise CxrkitError(f"{out}: none of the seeds {list(seeds)} has a finished run (seed-K/metrics.json)")
    summary = summarize_runs(runs)
    summary["missing_seeds"] = missing
    summary["config"] = dataclasses.asdict(base_cfg)
    write_text(out / "summary.json", json.dumps(summary, indent=2, default=float))
    return summary


# What a run made before a setting existed did: no flip averaging, hence no alignment.
_LEGACY = {"cam_flips": "none", "cam_flips_train": True, "align_views": False}


def effective_config(config: dict[str, Any]) -> dict[str, Any]:
    """A run's settings as JSON values, with the behaviour of runs made before a setting existed filled in
    (older defaults for the flip settings, current defaults otherwise) and the flip options dropped when no
    flips are used (they change nothing then)."""
    full = {**json.loads(json.dumps(dataclasses.asdict(LesionBenchConfig()))), **_LEGACY,
            **json.loads(json.dumps(config))}
    if full["cam_flips"] == "none":
        full.pop("cam_flips_train")
        full.pop("align_views")
    return full


def summarize_runs(runs: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """Every run's figures (``runs``: seed -> metrics dict) with their mean and sample standard deviation
    (n - 1; 0 for a single run): ``overall`` and ``per_finding`` map each metric to
    ``{"runs": [...], "mean": m, "sd": s}`` (runs in ``seeds`` order); ``targets`` are judged on the means."""
    seeds = list(runs)

    def stats(values: list[float]) -> dict[str, Any]:
        v = np.array(values, float)
        return {"runs": [float(x) for x in v], "mean": float(v.mean()),
                "sd": float(v.std(ddof=1)) if len(v) > 1 else 0.0}

    first = runs[seeds[0]]
    overall = {m: stats([runs[s]["overall"][m] for s in seeds]) for m in first["overall"] if m != "targets"}
    per = {f: {m: stats([runs[s]["per_finding"][f][m] for s in seeds]) for m in d}
           for f, d in first["per_finding"].items()}
    targets = {"mean_auroc>=0.95": overall["mean_auroc"]["mean"] >= 0.95,
               "acc_iobb@0.5>=0.8": overall["acc_iobb@0.5"]["mean"] >= 0.8,
               "acc_iou@0.3>=0.6": overall["acc_iou@0.3"]["mean"] >= 0.6}
    return {"seeds": seeds, "box_method": {s: runs[s]["box_method"]["chosen"] for s in seeds},
            "overall": overall, "per_finding": per, "targets_on_means": targets}


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

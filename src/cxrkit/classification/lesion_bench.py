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
Box rules and scoring: :mod:`~cxrkit.classification.lesion_eval`; several training seeds:
:mod:`~cxrkit.classification.lesion_seeds`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cxrkit.classification.cam import estimate_view_shift
from cxrkit.classification.lesion_data import (
    LesionDataset,
    load_base_images,
    read_base_images,
    save_base_images,
)
from cxrkit.classification.lesion_eval import (  # noqa: F401  (COLUMNS and score_rows stay importable from here)
    BOX_CANDIDATES,
    BOX_METHODS,
    BOX_SELECTION,
    COLUMNS,
    candidate_table,
    choose_box_rule,
    evaluate_on,
    finding_table,
    plot_results,
    rows_by_rule,
    score_rows,
    write_rows,
)
from cxrkit.classification.lesions import LESION_FINDINGS
from cxrkit.classification.train import TrainConfig, Trainer
from cxrkit.data.nih import patient_of, read_metadata
from cxrkit.errors import CxrkitError, UsageError
from cxrkit.io.atomic import write_text
from cxrkit.models import load_checkpoint, save_checkpoint
from cxrkit.models.cards import arch
from cxrkit.transforms import AugmentConfig

log = logging.getLogger(__name__)


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
    if cache is not None and Path(cache).is_file():
        everything, excluded, cached_for = read_base_images(cache)
        want = {"work_size": cfg.work_size, "max_images": cfg.max_images}
        if cached_for != want:
            raise UsageError(f"{cache}: made for {cached_for}, this run needs {want}; use another --base-cache")
        names = list(everything.names)
        log.info("lesion benchmark: %d images and lung fields from %s", len(names), cache)
    else:
        if images_dir is None:
            raise UsageError("the lesion benchmark needs an image folder (or an existing --base-cache file)")
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
        raise UsageError(f"cam_stride {cfg.cam_stride} / dilate: only for resnet_lite, not {cfg.model!r}")
    if cfg.cam_stride not in (4, 8):
        raise UsageError(f"cam_stride must be 8 or 4 (resnet_lite's class-map stride), got {cfg.cam_stride}")
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
    if cfg.box_method not in BOX_METHODS and cfg.box_method not in BOX_CANDIDATES:
        raise UsageError(f"box method {cfg.box_method!r} is not one of {BOX_METHODS} or a candidate "
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
    rows = rows_by_rule(test_rows, chosen)
    write_rows(out / "test_predictions.csv", rows)
    metrics = score_rows(rows)
    how = {"auto": f"best {BOX_SELECTION} (one rule for every finding)",
           "auto-per-finding": f"per finding, best {BOX_SELECTION.replace(' of all findings', ' of that finding')}"}
    metrics.update({
        "box_method": {"chosen": chosen, "method": {f: list(BOX_CANDIDATES[c]) for f, c in chosen.items()},
                       "how": how.get(cfg.box_method, "given"),
                       "validation": candidate_table(val_scores),
                       "validation_chosen": score_rows(rows_by_rule(val_rows, chosen))["overall"],
                       "validation_per_finding": finding_table(score_rows(rows_by_rule(val_rows, chosen))),
                       "test_all_candidates": candidate_table(test_scores)},
        "view_shift": view_shift,
        "config": dataclasses.asdict(cfg),
        "images": {"used": len(names), "excluded_real_findings": len(excluded),
                   **{k: len(v) for k, v in split.items()}},
        "samples": {"train": len(train_ds), "val": len(val_ds), "test": len(test_ds)},
        **{k: (round(v, 1) if isinstance(v, float) else v) for k, v in extra.items()},
        "total_seconds": round(time.perf_counter() - t_start, 1),
    })
    store_box_rules(out / "model.pt", {f: BOX_CANDIDATES[c] for f, c in chosen.items()})
    write_text(out / "metrics.json", json.dumps(metrics, indent=2, default=float))
    plot_results(out, rows, examples)
    return metrics


def store_box_rules(checkpoint: Path, rules: dict[str, tuple[str, dict]]) -> None:
    """Rewrite ``checkpoint``'s card with the box rule chosen per finding (``finding -> (method, options)``, as
    :data:`BOX_CANDIDATES`), so that ``cxrkit predict``, ``localize`` and ``analyze`` draw this model's boxes the
    way the benchmark chose them (:attr:`cxrkit.models.ModelCard.box_rules`); the weights are unchanged."""
    model = load_checkpoint(checkpoint)
    card = model.card.replace(box_rules={finding: {"method": method, **options}
                                         for finding, (method, options) in rules.items()})
    if card.box_rules == model.card.box_rules:
        return
    model.card = card
    save_checkpoint(checkpoint, model)


def align_views(checkpoint: Path, ds: LesionDataset) -> dict[str, Any]:
    """Estimate the flip-averaging model's per-finding view displacement on the images of ``ds`` (their pixels
    only: :func:`cxrkit.classification.cam.estimate_view_shift`) and rewrite ``checkpoint`` with it as the
    ``cam_view_shift`` architecture option. Returns what ``metrics.json`` records under ``view_shift``."""
    import cv2  # lazy: OpenCV is loaded by the evaluation only

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

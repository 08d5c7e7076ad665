"""Training and evaluating on the NIH ChestX-ray14 layout with the official split.

train/val come from ``train_val_list.txt`` split by patient (``val_fraction`` of patients, seeded); the
test list is never touched by training. Only images present under the image folder are used (so the
same code runs on the full 112,120 images and on a 200-image subset), and the counts are logged.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import pandas as pd

from cxrkit.classification.train import (
    Trainer,
    close_distributed,
    init_distributed,
    predict_dataset,
)
from cxrkit.data.cache import ImageCache, build_cache
from cxrkit.data.locate import ImageLocator
from cxrkit.data.nih import read_metadata
from cxrkit.data.splits import official_split, patient_split
from cxrkit.data.torch_datasets import NIHDataset
from cxrkit.errors import InputError, UsageError
from cxrkit.io.atomic import write_text
from cxrkit.models import load_model

log = logging.getLogger(__name__)


def nih_splits(metadata: str | os.PathLike, images: str | os.PathLike, split_dir: str | os.PathLike,
               val_fraction: float = 0.1, seed: int = 0, need_train: bool = True
               ) -> tuple[dict[str, pd.DataFrame], ImageLocator]:
    """Metadata rows of train / val / test restricted to images found under ``images``. With
    ``need_train=False`` (prediction on the test list) a folder holding only test images is fine."""
    table = read_metadata(metadata)
    locator = ImageLocator(images)
    official = official_split(split_dir)
    present = set(locator.names())
    train_val = [n for n in official["train_val"] if n in present]
    test = [n for n in official["test"] if n in present]
    if not train_val and need_train:
        raise InputError(f"{images}: none of the {len(official['train_val'])} train_val images is there")
    split = patient_split(train_val, val_fraction=val_fraction, seed=seed) if train_val else {"train": [], "val": []}
    idx = table.set_index("Image Index", drop=False)
    missing = [n for n in train_val + test if n not in idx.index]
    if missing:
        raise InputError(f"{metadata}: {len(missing)} images have no metadata row, e.g. {missing[:3]}")
    out = {k: idx.loc[v].reset_index(drop=True) for k, v in (("train", split["train"]), ("val", split["val"]), ("test", test))}
    log.info("NIH split from %s: train %d, val %d, test %d images present (of %d train_val, %d test listed)",
             split_dir, len(out["train"]), len(out["val"]), len(out["test"]), len(official["train_val"]),
             len(official["test"]))
    return out, locator


def train_nih(config, metadata, images, split_dir, out, val_fraction: float = 0.1, cache: str | None = None,
              resume: bool = True, progress: bool = True, stop_after_epochs: int | None = None,
              device: str = "auto") -> dict[str, Any]:
    """Train ``config`` (a :class:`~cxrkit.classification.train.TrainConfig`) on the NIH layout."""

    tables, locator = nih_splits(metadata, images, split_dir, val_fraction, config.seed)
    if len(tables["val"]) == 0:
        raise UsageError("the validation split is empty; add images or raise --val-fraction")
    d = init_distributed(device)
    try:
        source: Any = locator
        if cache:
            names = list(tables["train"]["Image Index"]) + list(tables["val"]["Image Index"])
            if d.main:
                build_cache(names, locator, cache, size=config.input_size, workers=max(1, config.num_workers),
                            progress=progress)
            if d.world > 1:
                import torch.distributed as dist

                dist.barrier()
            source = ImageCache(cache)
        train_ds = NIHDataset(tables["train"], source, size=config.input_size, uint8=True)
        val_ds = NIHDataset(tables["val"], source, size=config.input_size, uint8=True)
        return Trainer(config, out, d).fit(train_ds, val_ds, resume=resume, progress=progress,
                                           stop_after_epochs=stop_after_epochs)
    finally:
        close_distributed(d)


def predict_nih_test(checkpoint, metadata, images, split_dir, out_csv, batch_size: int = 16,
                     progress: bool = True, device: str = "auto") -> Path:
    """Write ``Image Index`` + ``prob_<finding>`` for every test-list image present (evaluate's input);
    ``checkpoint`` is a checkpoint path or a registry name with shipped weights."""

    model = load_model(checkpoint, task="classification", needs="logits", device=device)
    tables, locator = nih_splits(metadata, images, split_dir, need_train=False)
    if len(tables["test"]) == 0:
        raise InputError(f"{images}: none of the test-list images ({split_dir}/test_list.txt) is there")
    ds = NIHDataset(tables["test"], locator, size=model.card.input_size)
    probs, _, ids = predict_dataset(model, ds, batch_size=batch_size, progress=progress,
                                    device=next(model.parameters()).device)
    frame = pd.DataFrame(probs, columns=[f"prob_{f}" for f in model.card.labels])
    frame.insert(0, "Image Index", ids)
    write_text(out_csv, frame.to_csv(index=False, float_format="%.6g", lineterminator="\n"))
    return Path(out_csv)

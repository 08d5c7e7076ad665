"""Training of ``rca_regnet`` (``cxrkit registration train``).

Pairs (moving, fixed) of chest radiographs: moving images from any folder(s) of radiographs (e.g. the
JSRT training split and the NIH images), each given a random similarity transform so the network learns
to undo real misalignments; fixed images from the reference pool (the JSRT training split by default:
RCA registers queries to references). Loss: ``(1 - NCC)`` of the affine stage + ``(1 - local NCC)`` of
the full transform + ``smooth`` x the displacement field's squared gradient: unsupervised, no labels.

Optionally (``mask_weight > 0`` and masks given for the fixed pool) each step adds a batch of labelled
pairs drawn from the fixed pool itself, with ``mask_weight x (1 - soft Dice)`` of the warped moving
masks against the fixed masks (an auxiliary anatomical loss as in label-supervised VoxelMorph). Masks
are used only in training; registration at inference sees images only, so RCA stays label-free on the
query side.
Checkpoints ``last.pt`` (full state, resumable) and the final weights ``best.pt``; ``metrics.csv``.
Randomness only from seeded generators.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from cxrkit.errors import InputError, UsageError
from cxrkit.io.images import load_gray8
from cxrkit.models.checkpoint import save_checkpoint
from cxrkit.models.registry import create_model
from cxrkit.models.warp import Transform, bending, local_ncc, ncc, standardize
from cxrkit.qc.reference import to_square
from cxrkit.transforms import random_similarity, similarity_theta

if TYPE_CHECKING:  # pragma: no cover
    from cxrkit.qc.reference import ReferenceSet

from cxrkit.models.device import resolve_device
from cxrkit.training import Schedule, StepLoop

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RegTrainConfig:
    steps: int = 2000
    batch_size: int = 8
    lr: float = 1e-3
    smooth: float = 5.0
    window: int = 9
    rotate: float = 0.25  # radians, random misalignment of the moving image
    scale: float = 0.15
    translate: float = 0.15
    eval_every: int = 250
    seed: int = 0
    threads: int | None = None
    mask_weight: float = 0.0


def load_images(paths: Sequence[str | os.PathLike], size: int) -> torch.Tensor:
    """(N, 1, size, size) float [0, 1] images in CheXmask's square space."""
    if not paths:
        raise InputError("no training images for the registration network")
    return torch.from_numpy(np.stack([to_square(load_gray8(p), size).astype(np.float32) / 255 for p in paths]))[:, None]


def _misalign(x: torch.Tensor, gen: torch.Generator, cfg: RegTrainConfig,
              masks: torch.Tensor | None = None):

    theta = similarity_theta(*random_similarity(x.shape[0], gen, cfg.rotate, cfg.scale, cfg.translate))
    warp = lambda a: F.grid_sample(a, F.affine_grid(theta, list(a.shape), align_corners=False),
                                   padding_mode="zeros", align_corners=False)
    return warp(x) if masks is None else (warp(x), warp(masks))


def registration_loss(model, moving: torch.Tensor, fixed: torch.Tensor, smooth: float, window: int):
    """(total image loss, 1 - local NCC) of the model on a batch of pairs."""
    return transform_loss(model(moving, fixed), moving, fixed, smooth, window)


def transform_loss(t, moving: torch.Tensor, fixed: torch.Tensor, smooth: float, window: int):
    affine = 1 - ncc(Transform(t.theta).warp(moving), fixed).mean()
    local = 1 - local_ncc(t.warp(moving), fixed, window).mean()
    return affine + local + smooth * bending(t.disp).mean(), local


def train_registration(cfg: RegTrainConfig, fixed: ReferenceSet, extra_moving: Sequence[str | os.PathLike],
                       out: str | os.PathLike, progress: bool = True, device: str = "auto") -> dict[str, Any]:
    """Train (or resume) ``rca_regnet`` on ``device``; returns a summary with the final validation local NCC.

    ``fixed``: the fixed pool with its masks (a :class:`cxrkit.qc.reference.ReferenceSet` loaded at the
    network's input size for images and masks); the moving pool is its images plus ``extra_moving``. The loop,
    schedule (cosine), checkpoints and exact resume are :class:`cxrkit.training.StepLoop`'s."""
    if cfg.mask_weight < 0 or cfg.steps < 1 or cfg.batch_size < 1:
        raise UsageError(f"registration training needs --mask-weight >= 0, --steps >= 1 and --batch-size >= 1; got "
                         f"{cfg.mask_weight!r}, {cfg.steps!r}, {cfg.batch_size!r}")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    dev = resolve_device(device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = create_model("rca_regnet")
    size = model.card.input_size
    if fixed.images.shape[-1] != size or fixed.masks.shape[-1] != size:
        raise InputError(f"the fixed pool must be loaded at {size} px for images and masks, got "
                         f"{fixed.images.shape[-1]} and {fixed.masks.shape[-1]}")
    model.to(dev)
    extra = load_images(extra_moving, size) if extra_moving else fixed.images[:0]
    moving_all = standardize(torch.cat([fixed.images, extra])).to(dev)
    fixed_all = standardize(fixed.images).to(dev)
    fixed_masks = fixed.masks.float().to(dev) if cfg.mask_weight > 0 else None
    # A fixed held-out check: the last 8 moving images, misaligned once, against the first fixed images.
    vgen = torch.Generator().manual_seed(cfg.seed + 99)
    nval = min(8, max(1, len(moving_all) // 10))
    val_m = standardize(_misalign(moving_all[-nval:], vgen, cfg))
    val_f = fixed_all[torch.arange(nval) % len(fixed_all)]
    moving_train = moving_all[:-nval] if len(moving_all) > nval else moving_all
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=1e-5)
    loop = StepLoop(out, model, opt, asdict(cfg), Schedule(cfg.lr, cfg.steps, "cosine"), eval_every=cfg.eval_every,
                    desc="registration train")
    loop.resume()

    def step_fn(step: int) -> dict[str, float]:
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
        im = torch.randint(0, len(moving_train), (cfg.batch_size,), generator=gen)
        jf = torch.randint(0, len(fixed_all), (cfg.batch_size,), generator=gen)
        m = standardize(_misalign(moving_train[im], gen, cfg))
        model.train()
        loss, _ = registration_loss(model, m, fixed_all[jf], cfg.smooth, cfg.window)
        if fixed_masks is not None:  # labelled pairs from the fixed pool: the auxiliary anatomical loss
            a = torch.randint(0, len(fixed_all), (cfg.batch_size,), generator=gen)
            b = torch.randint(0, len(fixed_all), (cfg.batch_size,), generator=gen)
            ma, mka = _misalign(fixed_all[a], gen, cfg, fixed_masks[a])
            ma = standardize(ma)
            t = model(ma, fixed_all[b])
            warped = t.warp(mka)
            inter = (warped * fixed_masks[b]).sum((2, 3))
            soft = (2 * inter + 1) / (warped.sum((2, 3)) + fixed_masks[b].sum((2, 3)) + 1)
            img_loss, _ = transform_loss(t, ma, fixed_all[b], cfg.smooth, cfg.window)
            loss = loss + img_loss + cfg.mask_weight * (1 - soft.mean())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"loss": float(loss.detach())}

    def evaluate(step: int) -> dict[str, float]:
        model.eval()
        with torch.inference_mode():
            _, vloc = registration_loss(model, val_m, val_f, cfg.smooth, cfg.window)
        return {"val_local_ncc": 1 - float(vloc)}

    state = loop.run(step_fn, evaluate, progress=progress)
    save_checkpoint(Path(out) / "best.pt", model)  # the final weights (no model selection by the image loss)
    return {"steps": state["step"], "val_local_ncc": state["history"][-1]["val_local_ncc"],
            "best": str(Path(out) / "best.pt")}

"""Training the landmark model on JSRT (``cxrkit segmentation train``).

Loss: mean squared landmark error (in units of the image side, summed over x and y) of the final and the
intermediate (coarse) landmarks, plus a small KL term on the variational latent. AdamW, cosine decay.
Checkpoint (``last.pt``, full state) every ``eval_every`` steps and at the end, ``best.pt`` by validation
Dice, ``metrics.csv``; a run resumes from ``last.pt``. With ``save_every`` N > 0 also weights-only
snapshots ``checkpoints/step-NNNNN.pt`` every N steps (cxrkit checkpoints, e.g. for judging quality
control on outputs of varied quality); the snapshot cadence does not change training, so it is left out
of the configuration a resumed run must match. Sample order and augmentation come from a generator
seeded by (seed, step), so a resumed run continues exactly.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cxrkit.data.jsrt import read_jsrt
from cxrkit.errors import CxrkitError, UsageError
from cxrkit.io.atomic import write_records_csv
from cxrkit.io.geometry import SquareResize
from cxrkit.io.images import load_gray8
from cxrkit.metrics.segmentation import dice
from cxrkit.models.checkpoint import resume_state, save_checkpoint
from cxrkit.models.families.hybridgnet import RINGS, coarse_sizes
from cxrkit.models.preprocess import normalize
from cxrkit.models.registry import create_model
from cxrkit.segmentation.infer import predict_masks
from cxrkit.transforms import LandmarkAugment
from cxrkit.transforms import augment_landmarks as augment

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SegTrainConfig:
    model: str = "hybridgnet"
    input_size: int = 256
    steps: int = 6000
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 1e-5
    kl_weight: float = 1e-5
    coarse_weight: float = 0.5
    eval_every: int = 250
    save_every: int = 0  # weights-only snapshot every N steps (0: none)
    seed: int = 0
    threads: int | None = None
    augment: LandmarkAugment = LandmarkAugment()


def load_split(jsrt: str | os.PathLike, landmarks: str | os.PathLike, split: str, size: int, masks: bool = False):
    """(cases, images (N, 1, S, S) float [0, 1], landmarks (N, 120, 2) in [0, 1]) of one JSRT split, plus
    the SCR masks (N, 3, S, S) float 0/1 (nearest-neighbour) when ``masks``."""
    import cv2


    cases = [c for c in read_jsrt(jsrt, landmarks, split=split) if c.landmark_files is not None]
    if not cases:
        raise CxrkitError(f"{jsrt}: no {split} images with landmarks")
    xs, ys, ms = [], [], []
    for c in cases:
        img = load_gray8(c.image)
        geom = SquareResize(img.shape[0], img.shape[1], size)
        xs.append(geom.image_to_square(img).astype(np.float32) / 255)
        pts = c.landmarks() * np.array([img.shape[1] / 1024, img.shape[0] / 1024], np.float32)
        ys.append(geom.points_to_square(pts) / size)
        if masks:
            ms.append(np.stack([geom.image_to_square(m.astype(np.uint8), interpolation=cv2.INTER_NEAREST)
                                for m in c.load_masks().values()]).astype(np.float32))
    out = (cases, torch.from_numpy(np.stack(xs))[:, None], torch.from_numpy(np.stack(ys).astype(np.float32)))
    return (*out, torch.from_numpy(np.stack(ms))) if masks else out


def validation_dice(model, cases, x: torch.Tensor) -> dict[str, float]:
    """Mean Dice per structure at 1024 px of the filled predicted contours vs the SCR masks."""
    model.eval()
    scores: dict[str, list[float]] = {"right_lung": [], "left_lung": [], "heart": []}
    for c in cases:
        truth = c.load_masks()
        pred, _ = predict_masks(model, load_gray8(c.image))
        for s in scores:
            scores[s].append(dice(pred[s], truth[s]))
    return {s: float(np.mean(v)) for s, v in scores.items()}


def train_segmentation(cfg: SegTrainConfig, jsrt: str | os.PathLike, landmarks: str | os.PathLike,
                       out: str | os.PathLike, progress: bool = True) -> dict[str, Any]:
    """Train (or resume) a landmark model; returns a summary with the best validation Dice."""
    from tqdm.auto import tqdm


    if cfg.save_every < 0:
        raise UsageError(f"--save-every must be >= 0 (0: no snapshots), got {cfg.save_every}")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    pixel = cfg.model == "unet"
    train = load_split(jsrt, landmarks, "train", cfg.input_size, masks=pixel)
    xtr, ytr = train[1], train[2]
    mtr = train[3] if pixel else None
    val_cases, xval, _ = load_split(jsrt, landmarks, "val", cfg.input_size)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = create_model(cfg.model, input_size=cfg.input_size)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    state: dict[str, Any] = {"step": 0, "best": -1.0, "history": []}
    last = out / "last.pt"
    config = {k: v for k, v in asdict(cfg).items() if k != "save_every"}
    state = resume_state(last, config, model, opt) or state
    bar = tqdm(total=cfg.steps, initial=state["step"], desc="segmentation train", disable=not progress)
    t0, running = time.perf_counter(), []
    while state["step"] < cfg.steps:
        step = state["step"]
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
        idx = torch.randint(0, len(xtr), (cfg.batch_size,), generator=gen)
        if pixel:
            x, y, mk = augment(xtr[idx], ytr[idx], gen, cfg.augment, masks=mtr[idx])
        else:
            x, y = augment(xtr[idx], ytr[idx], gen, cfg.augment)
        model.train()
        for g in opt.param_groups:
            g["lr"] = cfg.lr * 0.5 * (1 + math.cos(math.pi * step / cfg.steps))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed * 7_919 + step)  # the latent sample
            o = model(normalize(x, model.card.normalization))
        if pixel:  # binary cross-entropy + soft Dice per structure
            prob = torch.sigmoid(o["logits"])
            bce = torch.nn.functional.binary_cross_entropy_with_logits(o["logits"], mk)
            inter = (prob * mk).sum((2, 3))
            soft_dice = 1 - ((2 * inter + 1) / (prob.sum((2, 3)) + mk.sum((2, 3)) + 1)).mean()
            fine = loss = bce + soft_dice
        else:
            fine = ((o["landmarks"] - y) ** 2).sum(-1).mean()
            coarse_target = torch.einsum("cf,bfd->bcd", _coarse_selector(model), y)
            coarse = ((o["coarse"] - coarse_target) ** 2).sum(-1).mean()
            kl = -0.5 * (1 + o["logvar"] - o["mu"] ** 2 - o["logvar"].exp()).sum(1).mean()
            loss = fine + cfg.coarse_weight * coarse + cfg.kl_weight * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        state["step"] += 1
        running.append(float(fine.detach()))
        bar.update(1)
        if cfg.save_every > 0 and state["step"] % cfg.save_every == 0:
            save_checkpoint(out / "checkpoints" / f"step-{state['step']:05d}.pt", model)
        if state["step"] % cfg.eval_every == 0 or state["step"] == cfg.steps:
            d = validation_dice(model, val_cases, xval)
            mean = float(np.mean(list(d.values())))
            rec = {"step": state["step"], "train_loss": float(np.mean(running)),
                   **{f"val_dice_{k}": v for k, v in d.items()}, "val_dice_mean": mean,
                   "seconds": time.perf_counter() - t0}
            running = []
            state["history"].append(rec)
            improved = mean > state["best"]
            if improved:
                state["best"] = mean
            if improved:  # last.pt is the commit point: a run killed before it redoes these steps and writes
                save_checkpoint(out / "best.pt", model)
            write_records_csv(out / "metrics.csv", state["history"])
            save_checkpoint(last, model, training={"config": config, "optimizer": opt.state_dict(), "state": state})
            bar.set_postfix(val_dice=f"{mean:.4f}")
    bar.close()
    return {"steps": state["step"], "best_val_dice_mean": state["best"], "best": str(out / "best.pt")}


def _coarse_selector(model) -> torch.Tensor:
    """(N_coarse, N_fine) picking the fine nodes the coarse graph keeps (every other node of each ring)."""
    sel = torch.zeros(sum(coarse_sizes(RINGS)), sum(RINGS))
    c = f = 0
    for s, cs in zip(RINGS, coarse_sizes(RINGS)):
        for i in range(cs):
            sel[c + i, f + 2 * i] = 1
        c += cs
        f += s
    return sel

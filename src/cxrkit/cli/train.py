"""``cxrkit train`` (classifier on the NIH layout; torchrun-ready) and ``cxrkit cache build``."""

from __future__ import annotations

import argparse
import json
import sys

from cxrkit.cli.options import (
    nonneg_float,
    nonneg_int,
    open_fraction,
    positive_float,
    positive_int,
)
from cxrkit.findings import FINDINGS


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a 14-finding classifier on NIH images (official split)",
                       description="Train on train_val (split by patient into train/val); the test list is "
                       "untouched. Multi-GPU/multi-node: torchrun --nproc_per_node N -m cxrkit.cli.main train ...")
    p.add_argument("--images", required=True, help="NIH image folder (flat or images_0xx/images layout)")
    p.add_argument("--metadata", required=True, help="NIH metadata CSV (2017, v2020 or Kaggle; plain or gzip)")
    p.add_argument("--split-dir", required=True, help="folder with train_val_list.txt and test_list.txt")
    p.add_argument("--out", required=True, help="run folder: last.pt, best.pt, metrics.csv (resumes if present)")
    p.add_argument("--model", default="densenet121", help="registry name (cxrkit models list)")
    p.add_argument("--input-size", type=positive_int, default=224)
    p.add_argument("--epochs", type=positive_int, default=10)
    p.add_argument("--batch-size", type=positive_int, default=16)
    p.add_argument("--accum-steps", type=positive_int, default=1, help="gradient accumulation steps")
    p.add_argument("--lr", type=positive_float, default=3e-4)
    p.add_argument("--weight-decay", type=nonneg_float, default=1e-4)
    p.add_argument("--schedule", choices=("cosine", "plateau"), default="cosine")
    p.add_argument("--warmup-steps", type=nonneg_int, default=100)
    p.add_argument("--loss", choices=("weighted_bce", "bce"), default="weighted_bce",
                   help="weighted_bce: the paper's positive/negative-balanced loss")
    p.add_argument("--no-bf16", action="store_true", help="train in float32")
    p.add_argument("--no-augment", action="store_true")
    p.add_argument("--hflip", action="store_true", help="also flip left-right (off: anatomy is not symmetric)")
    p.add_argument("--workers", type=nonneg_int, default=2, help="data loader processes (default 2)")
    p.add_argument("--device", default="auto", metavar="auto|cpu|cuda[:N]",
                   help="where to train (default auto: CUDA when present; under torchrun each rank its local GPU)")
    p.add_argument("--val-fraction", type=open_fraction, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache", help="preprocessing cache folder (built/resumed here first; much faster loading)")
    p.add_argument("--max-steps-per-epoch", type=positive_int, help="cap steps per epoch (smoke runs)")
    p.add_argument("--stop-after-epochs", type=positive_int, help="end this run after N epochs (resume later)")
    p.add_argument("--no-resume", action="store_true", help="start over even if --out has last.pt")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_train)

    c = sub.add_parser("cache", help="preprocessing cache of decoded, resized images")
    cs = c.add_subparsers(dest="cache_command", metavar="CACHE_COMMAND")
    cs.required = True
    b = cs.add_parser("build", help="decode + resize images once into a memory-mapped uint8 array (resumable)")
    b.add_argument("--images", required=True, help="image folder")
    b.add_argument("--out", required=True, help="cache folder")
    b.add_argument("--size", type=positive_int, default=224)
    b.add_argument("--list", help="text file of image names to include (default: every image under --images)")
    b.add_argument("--workers", type=nonneg_int, default=2)
    b.set_defaults(func=_cache_build)


def _train(args: argparse.Namespace) -> int:
    from cxrkit.classification.nih_training import train_nih
    from cxrkit.classification.train import TrainConfig
    from cxrkit.transforms import AugmentConfig

    aug = None if args.no_augment else AugmentConfig(hflip=args.hflip)
    cfg = TrainConfig(model=args.model, input_size=args.input_size, labels=FINDINGS, epochs=args.epochs,
                      batch_size=args.batch_size, accum_steps=args.accum_steps, lr=args.lr,
                      weight_decay=args.weight_decay, schedule=args.schedule, warmup_steps=args.warmup_steps,
                      loss=args.loss, bf16=not args.no_bf16, augment=aug, seed=args.seed, num_workers=args.workers,
                      max_steps_per_epoch=args.max_steps_per_epoch)
    summary = train_nih(cfg, args.metadata, args.images, args.split_dir, args.out, val_fraction=args.val_fraction,
                        cache=args.cache, resume=not args.no_resume, progress=not args.quiet,
                        stop_after_epochs=args.stop_after_epochs, device=args.device)
    import os

    if int(os.environ.get("RANK", "0")) == 0:
        brief = {k: v for k, v in summary.items() if k != "history"}
        sys.stdout.write(json.dumps(brief, indent=2, default=str) + "\n")
    return 0


def _cache_build(args: argparse.Namespace) -> int:
    from cxrkit.data.cache import build_cache
    from cxrkit.data.locate import ImageLocator
    from cxrkit.data.splits import read_image_list

    locator = ImageLocator(args.images)
    names = read_image_list(args.list) if args.list else locator.names()
    cache = build_cache(names, locator, args.out, size=args.size, workers=args.workers)
    failed = len(cache) - cache.n_done
    sys.stdout.write(f"{cache.path}: {cache.n_done} images cached at {cache.size}px, {failed} failed\n")
    return 1 if failed else 0

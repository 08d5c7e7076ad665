"""Does the training loader keep the model fed? Loader images/s and the model's training-step images/s, one run.

(a) the loader exactly as ``cxrkit train --cache`` runs it: the preprocessing cache (a memory map) read by a
    DataLoader with ``--workers`` processes in batches (``NIHDataset.__getitems__``: one sorted read per batch,
    uint8), moved to the device, scaled, augmented there (``cxrkit.transforms.augment_images``) and normalized;
(b) the model's training step on the device: forward, weighted BCE, backward, AdamW step, with bf16 autocast and
    channels_last as ``cxrkit train`` does, on batches already on the device (the step's own ceiling).

The loader keeps the model fed when (a) >= (b). Images: the 200 real NIH PNGs of ../shared/data (cached at
``--size``; the cache is built once, before timing), repeated to ``--n``. Works on the CPU and on a GPU.

Usage: python bench/bench_train_gpu.py [--device auto] [--model densenet121] [--size 224] [--batch 128]
           [--workers N] [--steps 20] [--tiny]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--model", default="densenet121")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--steps", type=int, default=20, help="timed training steps")
    ap.add_argument("--n", type=int, default=4096, help="images per loader pass")
    ap.add_argument("--tiny", action="store_true")
    args = ap.parse_args()
    if args.tiny:
        args.batch, args.steps, args.n, args.size, args.workers = 8, 2, 32, 64, min(args.workers, 2)
        args.model = "resnet_lite"

    from cxrkit.classification.losses import get_loss
    from cxrkit.data.cache import build_cache
    from cxrkit.data.locate import ImageLocator
    from cxrkit.data.torch_datasets import NIHDataset, collate
    from cxrkit.findings import FINDINGS
    from cxrkit.models import create_model, resolve_device
    from cxrkit.models.preprocess import normalize
    from cxrkit.transforms import AugmentConfig, augment_images

    dev = resolve_device(args.device)
    shared = REPO.parent / "shared" / "data" / "nih" / "images"
    folder = Path(args.images) if args.images else (shared if shared.is_dir() else REPO / "src/cxrkit/demo/sample/nih/images")
    locator = ImageLocator(folder)
    names = locator.names()
    model = create_model(args.model, input_size=args.size).to(dev).to(memory_format=torch.channels_last)
    card = model.card
    bf16 = dev.type == "cpu" or torch.cuda.is_bf16_supported()
    with tempfile.TemporaryDirectory() as tmp:
        cache = build_cache(names, locator, Path(tmp) / "cache", size=args.size, workers=max(1, args.workers),
                            progress=False)
        reps = max(1, args.n // len(names))
        table = pd.DataFrame({"Image Index": names * reps,
                              "Patient ID": [int(n.split("_")[0]) if n.split("_")[0].isdigit() else 0 for n in names] * reps})
        for f in FINDINGS:
            table[f] = 0.0
        ds = NIHDataset(table, cache, size=args.size, uint8=True)
        loader = torch.utils.data.DataLoader(ds, batch_size=args.batch, shuffle=True, num_workers=args.workers,
                                             collate_fn=collate, pin_memory=dev.type == "cuda",
                                             persistent_workers=args.workers > 0,
                                             generator=torch.Generator().manual_seed(0))
        gen = torch.Generator().manual_seed(0)
        aug = AugmentConfig()

        def feed(batch):
            x = batch["image"].to(dev, non_blocking=True).float().div_(255)
            x = normalize(augment_images(x, gen, aug), card.normalization)
            return x.contiguous(memory_format=torch.channels_last)

        for i, b in enumerate(loader):  # warm-up (workers start, page cache)
            feed(b)
            if i >= 2:
                break
        t, n = time.perf_counter(), 0
        for b in loader:
            feed(b)
            n += len(b["id"])
        if dev.type == "cuda":
            torch.cuda.synchronize()
        loader_rate = n / (time.perf_counter() - t)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    loss_fn = get_loss("weighted_bce")
    x = torch.randn(args.batch, card.in_channels, args.size, args.size, device=dev).contiguous(
        memory_format=torch.channels_last)
    y = (torch.rand(args.batch, len(card.labels), device=dev) < 0.1).float()

    def step():
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
            out = model(x)
        loss = loss_fn(out.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    model.train()
    for _ in range(2):
        step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(args.steps):
        step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    step_rate = args.steps * args.batch / (time.perf_counter() - t)
    print(f"device {dev}, {args.model} at {args.size} px, batch {args.batch}, {'bf16' if bf16 else 'fp32'} + "
          f"channels_last, torch {torch.__version__}, {os.cpu_count()} cores")
    print(f"(a) loader (cache memmap, {args.workers} workers, device augmentation): {loader_rate:9.1f} images/s")
    print(f"(b) training step on {dev}:                                 {step_rate:9.1f} images/s")
    print(f"loader / step = {loader_rate / step_rate:.2f} -> the loader {'keeps' if loader_rate >= step_rate else 'does NOT keep'} "
          "the model fed")


if __name__ == "__main__":
    main()

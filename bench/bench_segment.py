"""Segmentation throughput on CPU, hybridgnet vs the unet pixel baseline in the same run, each in fp32
(baseline) and with bf16 autocast + channels_last, batch inference; then end-to-end `cxrkit segment` time
per image (decode, predict, fill, RLE, CSV) with the shipped hybridgnet.

Usage: python bench/bench_segment.py [--images DIR] [--batch 16] [--repeats 3] [--unet CKPT] [--tiny]
Default images: ../shared/data/nih/images (200 real NIH PNGs), else the bundled sample. Throughput does
not depend on the weights, so without --unet an untrained unet of the same architecture is timed; for
unet the "model" time includes the sigmoid but not the mask mapping back to the original size.
Precision: every model-only figure is printed in fp32 and in bf16, for plain PyTorch (``model(x)``) and for
what cxrkit runs (``model.infer(x)``: the inference copy, :mod:`cxrkit.models.inference`); ``cxrkit segment``
runs ``--precision auto`` by default, i.e. the model card's ``inference_precision`` where the device computes
it natively (printed: bf16 for the shipped hybridgnet on a CPU with bf16 instructions, else fp32), and the
end-to-end line is timed in that precision.
``--tiny``: 4 images, batch 2, one repeat, the end-to-end run in this process (workers=0) (a smoke run for
the test suite; no figure is asserted).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch

from cxrkit.io.images import load_gray8
from cxrkit.models import create_model
from cxrkit.segmentation.infer import segment_files

REPO = Path(__file__).resolve().parents[1]


def _throughput(model, x: torch.Tensor, bf16: bool, repeats: int) -> float:
    """Plain PyTorch: ``model(x)`` (with bf16: autocast and channels_last, the usual recipe)."""
    xx = x.contiguous(memory_format=torch.channels_last) if bf16 else x
    m = model.to(memory_format=torch.channels_last) if bf16 else model
    return _rate(m, xx, bf16, repeats)


def _rate(call, x: torch.Tensor, bf16: bool, repeats: int) -> float:
    """Best images/s of ``call(x)`` over ``repeats`` (after one warm-up call), in bf16 autocast or fp32."""
    best = 0.0
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        call(x[:2])
        for _ in range(repeats):
            t = time.perf_counter()
            call(x)
            best = max(best, len(x) / (time.perf_counter() - t))
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--unet", help="unet checkpoint (default: an untrained unet, same architecture)")
    ap.add_argument("--tiny", action="store_true", help="4 images, batch 2, one repeat: a smoke run")
    args = ap.parse_args()
    shared = Path(os.environ.get("CXRKIT_SHARED_DATA", REPO.parent / "shared" / "data")) / "nih" / "images"
    folder = Path(args.images) if args.images else (shared if shared.is_dir() else REPO / "src/cxrkit/demo/sample/nih/images")
    paths = sorted(folder.glob("*.png"))
    if args.tiny:
        paths, args.batch, args.repeats = paths[:4], 2, 1
    model = create_model("hybridgnet", pretrained=True)
    from cxrkit.models.device import resolve_precision

    default_precision = resolve_precision("auto", model.card, "cpu")
    x, _ = model.preprocess([load_gray8(p) for p in paths[: args.batch]])
    from cxrkit.models import load_checkpoint

    make = {"hybridgnet": lambda: create_model("hybridgnet", pretrained=True),
            "unet": (lambda: load_checkpoint(args.unet)) if args.unet else (lambda: create_model("unet").eval())}
    print(f"model only, batch {len(x)} at {model.card.input_size} px, {torch.get_num_threads()} threads:")
    base = None
    for name, build in make.items():
        fp32 = _throughput(build(), x, False, args.repeats)
        bf16 = _throughput(build(), x, True, args.repeats)
        base = base or fp32
        print(f"  {name:<10} fp32 {fp32:8.1f} img/s   bf16 + channels_last {bf16:8.1f} img/s ({bf16 / fp32:4.2f}x); "
              f"fp32 vs hybridgnet fp32 {fp32 / base:4.2f}x")
        model_i = build()  # what cxrkit runs: CxrModule.infer (conv + batch norm folded, channels_last)
        i32, i16 = _rate(model_i.infer, x, False, args.repeats), _rate(model_i.infer, x, True, args.repeats)
        print(f"  {name:<10} cxrkit infer (folded, channels_last): fp32 {i32:8.1f} img/s ({i32 / fp32:4.2f}x plain fp32)"
              f"   bf16 {i16:8.1f} img/s ({i16 / fp32:4.2f}x plain fp32)")
    print(f"`cxrkit segment` default precision: --precision auto = the card's inference_precision = "
          f"{default_precision} for {model.card.name}")
    from cxrkit.io.inputs import collect_images

    _, inputs = collect_images(paths)
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        segment_files(model, inputs, Path(tmp) / "seg.csv", progress=False, precision="auto",
                      workers=0 if args.tiny else None)
        dt = time.perf_counter() - t
    print(f"cxrkit segment end to end on {len(paths)} images from {folder}, {default_precision} (--precision auto), "
          f"{'workers=0' if args.tiny else 'default workers'}: {1000 * dt / len(paths):.1f} ms/image (decode + predict + fill + RLE + CSV)")


if __name__ == "__main__":
    main()

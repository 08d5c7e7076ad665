"""Options shared by the commands that run models: ``--model``, ``--device``, ``--workers``, ``--id-style``."""

from __future__ import annotations

import argparse
import os


def add_model_option(p: argparse.ArgumentParser, what: str, default: str | None, flag: str = "--model") -> None:
    """``--model NAME|CKPT``: a registry name with shipped weights (``cxrkit models list``) or a checkpoint."""
    tail = f"default: {default}" if default else "no default: name one"
    p.add_argument(flag, metavar="NAME|CKPT", default=None,
                   help=f"{what}: a registry name (`cxrkit models list`) or a checkpoint path ({tail})")


def add_device_options(p: argparse.ArgumentParser, workers: bool = True) -> None:
    """``--device auto|cpu|cuda[:N]`` and ``--workers N``."""
    p.add_argument("--device", default="auto", metavar="auto|cpu|cuda[:N]",
                   help="where models run (default auto: CUDA when present, else the CPU)")
    if workers:
        p.add_argument("--workers", type=_workers, default=None, metavar="N",
                       help=f"processes for decoding and post-processing (default: all cores, {os.cpu_count()} here)")


def _workers(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of processes, got {text!r}") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0 (0: everything in this process), got {n}")
    return n


def add_id_style_option(p: argparse.ArgumentParser) -> None:
    from cxrkit.data.id_styles import ID_STYLES

    p.add_argument("--id-style", default="path", choices=tuple(ID_STYLES),
                   help="ID column named and valued as that dataset's CheXmask CSV: path (ImageID = path relative "
                        "to the input root, default), nih (Image Index), chexpert (Path), mimic (dicom_id), "
                        "padchest (ImageID = file name), vindr (image_id)")


def _number(kind, low: float | None, low_open: bool, high: float | None = None, what: str = ""):
    def parse(text: str):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'a whole number' if kind is int else 'a number'}, "
                                             f"got {text!r}") from None
        if v != v or (low is not None and (v <= low if low_open else v < low)) or (high is not None and v > high):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text}")
        return v

    return parse


positive_int = _number(int, 0, True, what="a whole number >= 1")
nonneg_int = _number(int, 0, False, what="a whole number >= 0")
positive_float = _number(float, 0.0, True, what="a number > 0")
nonneg_float = _number(float, 0.0, False, what="a number >= 0")
fraction = _number(float, 0.0, False, 1.0, what="a number in [0, 1]")
open_fraction = _number(float, 0.0, True, 1.0, what="a number in (0, 1]")


def add_precision_option(p: argparse.ArgumentParser, family: str) -> None:
    """``--precision auto|fp32|bf16``: auto is the model family's measured-safe default (see README, bench)."""
    p.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                   help=f"arithmetic of the model stage (default auto: what bench/bench_pipeline.py measured safe for "
                        f"{family} models on the device)")


def model_device(model):
    """The device a loaded model's weights are on."""
    return next(model.parameters()).device

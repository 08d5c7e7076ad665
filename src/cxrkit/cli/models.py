"""``cxrkit models``: the model registry and checkpoints.

``cxrkit models import --format chexnet FILE --out model.pt`` is a stable interface (see CONTRACTS.md): it
converts a CheXNet-style DenseNet-121 file into a cxrkit checkpoint, strictly (:mod:`cxrkit.models.convert`).
Each subcommand is added by its own ``_add_<name>`` function below.
"""

from __future__ import annotations

import argparse
import sys

# cxrkit.models.convert.FORMATS, spelled here so that building the parser does not import torch.
IMPORT_FORMATS = ("chexnet",)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="model registry and checkpoints: import published weights",
                       description="Model registry and checkpoints.")
    s = p.add_subparsers(dest="models_command", metavar="MODELS_COMMAND")
    s.required = True
    _add_import(s)


def _add_import(s: argparse._SubParsersAction) -> None:
    p = s.add_parser(
        "import", help="convert a published checkpoint (CheXNet DenseNet-121) into a cxrkit checkpoint",
        description="Convert a CheXNet-style DenseNet-121 state dict (arnoweng/CheXNet model.pth.tar, "
        "zoogzog/chexnet m-*.pth.tar, or a bare torchvision DenseNet-121 state dict; old torch<0.4 'norm.1' or new "
        "'norm1' names; 'module.' / 'densenet121.' prefixes) into a cxrkit checkpoint of the 'chexnet' model (3 "
        "channels, ImageNet normalization, 224 px, NIH label order) that predict, predict-split, evaluate and "
        "analyze --model load. The file is read without running code stored in it. Any missing or unexpected key, "
        "a shape mismatch, or outputs that do not depend on the input is an error. Prints one line: the "
        "checkpoint written, the model name, the weights' and the source file's sha256 prefixes.")
    p.add_argument("file", metavar="FILE", help="the published checkpoint (.pth.tar / .pth / .pt)")
    p.add_argument("--format", required=True, choices=IMPORT_FORMATS,
                   help="layout of FILE (chexnet: DenseNet-121, 14 NIH findings)")
    p.add_argument("--out", required=True, help="cxrkit checkpoint to write (e.g. model.pt; written atomically)")
    p.set_defaults(func=_import)


def _import(args: argparse.Namespace) -> int:
    from cxrkit.models.checkpoint import file_sha256
    from cxrkit.models.convert import import_chexnet

    card = import_chexnet(args.file, args.out)
    source = file_sha256(args.file)[:12]
    sys.stdout.write(f"{args.out}: {card.name}, weights sha256 {str(card.weights_sha256)[:12]}, "
                     f"from {args.file} (sha256 {source})\n")
    return 0

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
    p = sub.add_parser("models", help="model registry and checkpoints: list, show cards, import published weights",
                       description="Model registry and checkpoints. Wherever a command takes --model, it accepts a "
                                   "registry name (with weights shipped in the package) or a checkpoint path.")
    s = p.add_subparsers(dest="models_command", metavar="MODELS_COMMAND")
    s.required = True
    _add_list(s)
    _add_show(s)
    _add_import(s)


def _add_list(s: argparse._SubParsersAction) -> None:
    p = s.add_parser("list", help="registry names with task, input size and whether weights ship",
                     description="One line per registered model: name, task, input size (px), outputs, whether "
                                 "weights ship in the package, and a warning for models trained on synthetic data.")
    p.add_argument("--task", choices=("classification", "segmentation", "registration"), help="only this task")
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.set_defaults(func=_list)


def _add_show(s: argparse._SubParsersAction) -> None:
    p = s.add_parser("show", help="a model's card as JSON (labels, preprocessing, provenance, metrics, license, "
                                  "intended use)")
    p.add_argument("model", metavar="NAME|CKPT", help="a registry name or a checkpoint path")
    p.set_defaults(func=_show)


def _rows(task: str | None) -> list[dict]:
    from cxrkit.models import default_card, list_models, shipped_weights

    rows = []
    for name in list_models(task):
        card = default_card(name)
        rows.append({"name": name, "task": card.task, "input_size": card.input_size, "outputs": list(card.outputs),
                     "weights_shipped": shipped_weights(name) is not None, "synthetic": card.provenance.synthetic,
                     "description": card.description})
    return rows


def _list(args: argparse.Namespace) -> int:
    import json

    rows = _rows(args.task)
    if args.format == "json":
        sys.stdout.write(json.dumps(rows, indent=1) + "\n")
        return 0
    w = max(len(r["name"]) for r in rows)
    sys.stdout.write(f"{'name':<{w}}  {'task':<14} {'input':>5}  {'weights':<8} outputs\n")
    for r in rows:
        note = "  (trained on synthetic findings: not for real radiographs)" if r["synthetic"] else ""
        sys.stdout.write(f"{r['name']:<{w}}  {r['task']:<14} {r['input_size']:>5}  "
                         f"{'shipped' if r['weights_shipped'] else '-':<8} {','.join(r['outputs'])}{note}\n")
    return 0


def _show(args: argparse.Namespace) -> int:
    import json

    from cxrkit.models import default_card, read_checkpoint, shipped_weights
    from cxrkit.models.registry import is_checkpoint_path

    if is_checkpoint_path(args.model):
        card = read_checkpoint(args.model)["card"]
        source = {"checkpoint": str(args.model)}
    else:
        card = default_card(args.model)
        path = shipped_weights(args.model)
        source = {"registry": args.model, "weights_shipped": path is not None}
    doc = card.to_dict()
    doc["preprocessing"] = {"geometry": f"pad to a centred square, resize to {card.input_size}x{card.input_size} "
                                        "(area when shrinking)",
                            "channels": card.in_channels, "intensity": card.normalization.describe()}
    doc["source"] = source
    sys.stdout.write(json.dumps(doc, indent=2, sort_keys=False) + "\n")
    return 0


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

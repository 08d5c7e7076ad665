"""Importing published checkpoints into cxrkit checkpoints, strictly.

``cxrkit models import --format chexnet FILE --out model.pt`` (:func:`import_chexnet`) reads the DenseNet-121
weights of the CheXNet reimplementations and writes a cxrkit checkpoint of the registered ``chexnet`` model
(see :mod:`cxrkit.models.families.classifiers`), which ``predict``, ``predict-split``, ``evaluate`` and
``analyze --model`` load like any other.

Layouts read (``FILE`` is a ``torch.save`` file, zip or legacy format):

* arnoweng/CheXNet ``model.pth.tar``: ``{"state_dict": {...}, "epoch": ..., ...}`` with keys
  ``module.densenet121.features.conv0.weight``, ..., the torch < 0.4 dense-layer names ``norm.1``, ``relu.1``,
  ``conv.1``, ``norm.2``, ``conv.2`` (no ``num_batches_tracked``) and the head ``module.densenet121.classifier.0.
  {weight,bias}`` (``Linear(1024, 14)`` followed by a ``Sigmoid``);
* zoogzog/chexnet ``m-*.pth.tar``: the same, with or without the ``module.`` prefix and with extra entries
  (``best_loss``, ``optimizer``);
* a bare state dict with any of these prefixes, old (``norm.1``) or new (``norm1``) dense-layer names, and a
  ``classifier.0`` or plain ``classifier`` head.

Files are read with ``torch.load(weights_only=True)``, which never runs code stored in the file (numpy scalars,
as some training scripts stored ``best_loss``, are allowed explicitly). Every source key must map onto exactly one
parameter or buffer of the cxrkit model and every one of those must be filled (only ``num_batches_tracked``,
which torch < 0.4 did not save and which evaluation does not use, is set to 0), with equal shapes; otherwise a
:class:`~cxrkit.errors.ModelError` names the keys. This guards against the classic failure of these checkpoints
under newer torch versions: ``load_state_dict(strict=False)`` silently skipping the ``norm.1``-style keys and
leaving a network that outputs near-constant probabilities (mean AUROC ~0.5; arnoweng/CheXNet#34,
zoogzog/chexnet#23). A converted model whose outputs do not change between two different images is refused too.
"""

from __future__ import annotations

import logging
import os
import pickle
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from cxrkit.errors import ModelError, UsageError, one_line
from cxrkit.io.images import read_image
from cxrkit.models.cards import ModelCard, Provenance
from cxrkit.models.checkpoint import file_sha256, save_checkpoint
from cxrkit.models.registry import build, default_card

log = logging.getLogger(__name__)

FORMATS = ("chexnet",)

# Registry name of the network CheXNet-style weights are mapped onto.
CHEXNET_MODEL = "chexnet"

INTENDED_USE = ("imported weights: performance not verified by cxrkit; evaluate with cxrkit evaluate "
                "(research use, not a medical device)")

# torchvision's own rule for pre-0.4 DenseNet checkpoints: denselayerN.norm.1.weight -> denselayerN.norm1.weight.
_OLD_DENSE = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.([12])\.(weight|bias|running_mean|running_var"
                        r"|num_batches_tracked)$")
_WRAPPERS = ("module.", "densenet121.")  # DataParallel, then the CheXNet model's attribute holding torchvision's net
_SHOW = 5  # keys named in an error message
GEOMETRY_NOTE = ("; imported: the source repositories test on Resize(256) + TenCrop(224) averaged, cxrkit runs one "
                 "view of the whole image padded to a centred square at 224")


@dataclass(frozen=True)
class SourceLayout:
    """How a source file was laid out (reported in the card's provenance and the log)."""

    container: str  # "state_dict entry" or "bare state dict"
    prefixes: tuple[str, ...]  # wrapper prefixes found, e.g. ("module.densenet121.",)
    old_style: bool  # torch < 0.4 dense-layer names (norm.1)
    head: str  # "classifier.0" or "classifier"
    extra_entries: tuple[str, ...] = ()  # other top-level entries (epoch, optimizer, ...), ignored

    def describe(self) -> str:
        parts = [self.container]
        parts.append("prefix " + " / ".join(repr(p) for p in self.prefixes) if self.prefixes else "no prefix")
        parts.append("torch<0.4 dense-layer names (norm.1)" if self.old_style else "dense-layer names norm1")
        parts.append(f"head {self.head}")
        if self.extra_entries:
            parts.append("ignored entries " + ", ".join(self.extra_entries))
        return "; ".join(parts)


def _numpy_safe_globals() -> list[Any]:
    """numpy scalar and dtype reconstruction (data only, no code), under old and new numpy module names."""
    try:
        from numpy._core.multiarray import scalar
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import scalar  # type: ignore[no-redef]
    allowed: list[Any] = [np.dtype, (scalar, "numpy.core.multiarray.scalar"), (scalar, "numpy._core.multiarray.scalar")]
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:
        allowed += [getattr(dtypes, n) for n in dir(dtypes) if n.endswith("DType")]
    return allowed


def read_torch_file(path: str | os.PathLike) -> Any:
    """``torch.load`` a file without running code stored in it (``weights_only=True``), on the CPU.

    Raises :class:`ModelError` saying so when the file needs more than tensors, containers, numbers, strings and
    numpy scalars (e.g. a whole pickled ``nn.Module``), or is not a PyTorch file at all.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: file not found")
    try:
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            if "Unsupported global" not in str(exc):
                raise
            with torch.serialization.safe_globals(_numpy_safe_globals()):
                return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        m = re.search(r"WeightsUnpickler error:\s*([^\n]+)", str(exc))
        why = (m.group(1) if m else one_line(exc)).split(" was not an allowed global")[0].strip()
        if "Unsupported global" not in why:
            raise ModelError(f"{path}: not a readable PyTorch file (UnpicklingError: {why})") from None
        raise ModelError(
            f"{path}: cannot be read without running code stored in the file (torch.load weights_only=True refused: "
            f"{why}); if you trust the file, load it with torch.load(FILE, weights_only=False) where its code is "
            f"importable, torch.save its state dict (obj['state_dict'] or model.state_dict()) and import that"
        ) from None
    except Exception as exc:  # noqa: BLE001 - corrupt zip, truncated legacy file, not a torch file
        raise ModelError(f"{path}: not a readable PyTorch file ({type(exc).__name__}: {one_line(exc)})") from None


def extract_state_dict(obj: Any, source: Any) -> tuple[dict[str, torch.Tensor], str, tuple[str, ...]]:
    """The state dict inside a loaded file: its ``state_dict`` entry, or the object itself when every value is a
    tensor. Returns ``(state_dict, container, other top-level entries)``."""
    if not isinstance(obj, Mapping):
        raise ModelError(f"{source}: holds a {type(obj).__name__}, expected a dict (a state dict, or a checkpoint "
                         "with a 'state_dict' entry)")
    if "state_dict" in obj:
        sd, container = obj["state_dict"], "state_dict entry"
        extra = tuple(sorted(str(k) for k in obj if k != "state_dict"))
        if not isinstance(sd, Mapping):
            raise ModelError(f"{source}: its 'state_dict' entry is a {type(sd).__name__}, expected a dict of tensors")
    else:
        sd, container, extra = obj, "bare state dict", ()
    bad = [str(k) for k, v in sd.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        top = ", ".join(repr(str(k)) for k in list(obj)[:8])
        raise ModelError(f"{source}: no state dict found: {len(bad)} entries are not tensors (first: {bad[0]!r}); "
                         f"top-level keys: {top}; expected a 'state_dict' entry or a bare state dict")
    if not sd:
        raise ModelError(f"{source}: the state dict is empty")
    return dict(sd), container, extra


def _strip_wrappers(key: str) -> tuple[str, str]:
    prefix = ""
    for wrapper in _WRAPPERS:
        if key[len(prefix):].startswith(wrapper):
            prefix += wrapper
    return prefix, key[len(prefix):]


def chexnet_target_key(key: str) -> tuple[str | None, str, bool]:
    """Map one source key onto the cxrkit ``chexnet`` model's key.

    Returns ``(target or None when the key has no place in the model, the wrapper prefix stripped, whether the
    key used the torch < 0.4 dense-layer style)``. torchvision's ``features.X`` is cxrkit's ``backbone.X`` (MONAI's
    DenseNet names the dense-layer submodules ``denselayerN.layers.norm1``, ...); ``classifier.0`` / ``classifier``
    is ``head``.
    """
    prefix, rest = _strip_wrappers(key)
    old = _OLD_DENSE.match(rest)
    if old:
        rest = f"{old.group(1)}{old.group(2)}.{old.group(3)}"
    if rest.startswith("features."):
        target = "backbone." + re.sub(r"(denselayer\d+)\.", r"\1.layers.", rest[len("features."):])
    elif re.fullmatch(r"classifier\.(?:0\.)?(?:weight|bias)", rest):
        target = "head." + rest.rsplit(".", 1)[1]
    else:
        target = None
    return target, prefix, bool(old)


def _name_keys(keys: Sequence[str]) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:_SHOW])
    return f"{shown}{', ...' if len(keys) > _SHOW else ''} ({len(keys)} in all)"


def map_chexnet_state_dict(source_sd: Mapping[str, torch.Tensor], target_sd: Mapping[str, torch.Tensor],
                           source: Any, container: str = "bare state dict",
                           extra: tuple[str, ...] = ()) -> tuple[dict[str, torch.Tensor], SourceLayout]:
    """The source state dict renamed to the target model's keys, checked strictly (see the module docstring)."""
    mapped: dict[str, torch.Tensor] = {}
    origin: dict[str, str] = {}
    unexpected: list[str] = []
    prefixes: set[str] = set()
    old_style = False
    heads: set[str] = set()
    for key, value in source_sd.items():
        target, prefix, old = chexnet_target_key(key)
        if target is None or target not in target_sd:
            unexpected.append(key)
            continue
        if target in mapped:
            raise ModelError(f"{source}: keys {origin[target]!r} and {key!r} both map to {target!r}")
        mapped[target], origin[target] = value, key
        prefixes.add(prefix)
        old_style |= old
        if target.startswith("head."):
            heads.add("classifier.0" if ".classifier.0." in f".{key}" else "classifier")
    if unexpected:
        raise ModelError(f"{source}: unexpected keys {_name_keys(unexpected)}; expected a torchvision DenseNet-121 "
                         "state dict (features.*, classifier.0.*) as saved by arnoweng/CheXNet or zoogzog/chexnet")
    missing = [k for k in target_sd if k not in mapped]
    counters = [k for k in missing if k.endswith(".num_batches_tracked")]
    missing = [k for k in missing if not k.endswith(".num_batches_tracked")]
    if missing:
        raise ModelError(f"{source}: missing keys {_name_keys([_source_name(k, prefixes) for k in missing])}; "
                         "the file is not a complete DenseNet-121 with a classifier head")
    for key, value in mapped.items():
        want = tuple(target_sd[key].shape)
        if tuple(value.shape) != want:
            raise ModelError(f"{source}: {origin[key]!r} has shape {tuple(value.shape)}, the model needs {want} "
                             f"(for {key!r}; CheXNet is DenseNet-121 on 3 channels with a 1024 -> 14 head)")
    for key in counters:  # not saved before torch 0.4; unused in evaluation
        mapped[key] = torch.zeros((), dtype=target_sd[key].dtype)
    if counters:
        log.info("%s: %d num_batches_tracked counters absent (saved before torch 0.4): set to 0", source, len(counters))
    if len(prefixes) > 1:
        log.warning("%s: keys mix wrapper prefixes %s", source, sorted(prefixes))
    layout = SourceLayout(container=container, prefixes=tuple(sorted(p for p in prefixes if p)), old_style=old_style,
                          head="/".join(sorted(heads)), extra_entries=extra)
    return mapped, layout


def _source_name(target: str, prefixes: set[str]) -> str:
    """A target key spelled as the source would have it (torchvision names, the file's prefix)."""
    prefix = min(prefixes) if prefixes else ""
    if target.startswith("head."):
        return f"{prefix}classifier.0.{target[len('head.'):]}"
    return prefix + "features." + target[len("backbone."):].replace(".layers.", ".")


def _probe_images() -> list[np.ndarray]:
    """Two different real NIH images shipped with the package (the demo sample), or a bright and a dark
    synthetic image when the sample is not installed."""
    from importlib import resources


    folder = resources.files("cxrkit.demo").joinpath("sample", "nih", "images")
    try:
        names = sorted(p.name for p in folder.iterdir() if p.name.endswith(".png"))[:2]
        if len(names) == 2:
            return [read_image(str(folder.joinpath(n))).pixels for n in names]
    except (OSError, ValueError) as exc:  # pragma: no cover - a broken install
        log.warning("demo sample images unreadable (%s); probing with synthetic images", exc)
    ramp = np.tile(np.linspace(0, 255, 256, dtype=np.float32), (256, 1)).astype(np.uint8)
    return [np.full((256, 256), 200, np.uint8), ramp // 4]


def check_input_dependence(model: torch.nn.Module, source: Any, images: Sequence[np.ndarray] | None = None) -> float:
    """Refuse a model whose logits are not finite or do not change between two different images.

    Returns the largest absolute logit difference between the two images (float32, CPU, eval mode).
    """
    images = list(images) if images is not None else _probe_images()
    model.eval()
    with torch.inference_mode():
        x, _ = model.preprocess(images)
        logits = model(x).float()
    if not torch.isfinite(logits).all():
        raise ModelError(f"{source}: the converted model's outputs are not finite (NaN or inf): wrong weights?")
    diff = float((logits[0] - logits[1]).abs().max())
    scale = max(1.0, float(logits.abs().max()))
    if diff <= 1e-6 * scale:
        raise ModelError(f"{source}: outputs do not depend on the input: wrong or untrained weights? (largest logit "
                         f"difference between two different images: {diff:.3g})")
    return diff


def chexnet_card(source_name: str, source_sha256: str, layout: SourceLayout) -> ModelCard:
    """The registered ``chexnet`` card with the provenance of an imported file."""
    card = default_card(CHEXNET_MODEL)
    return card.replace(description=card.description + GEOMETRY_NOTE, provenance=Provenance(
        training_data="not recorded in the file; the CheXNet reimplementations (arnoweng/CheXNet, zoogzog/chexnet) "
                      "train on the NIH ChestX-ray14 training split (not verified by cxrkit)",
        synthetic=False,
        metrics=(),
        metrics_command="cxrkit predict-split --model model.pt ... --out preds.csv; "
                        "cxrkit evaluate --predictions preds.csv --metadata FILE --out DIR",
        license="that of the source weights (not checked by cxrkit)",
        intended_use=INTENDED_USE,
        source=f"cxrkit models import --format chexnet {source_name} (source file sha256 {source_sha256}; "
               f"{layout.describe()})",
    ))


def import_chexnet(src: str | os.PathLike, out: str | os.PathLike) -> ModelCard:
    """Convert a CheXNet-style DenseNet-121 file ``src`` into the cxrkit checkpoint ``out`` (written atomically).

    Returns the stored card (``name`` ``chexnet``, ``weights_sha256`` of the converted weights, provenance naming
    ``src``'s sha256 and layout). Raises :class:`ModelError` naming the keys when the file does not map exactly
    onto the network, or when the converted network's outputs do not depend on its input; :class:`UsageError`
    when ``out`` is a folder or ``src`` itself.
    """
    src, out = Path(src), Path(out)
    if out.is_dir():
        raise UsageError(f"--out {out}: is a folder; give the checkpoint file to write, e.g. {out / 'model.pt'}")
    if out.exists() and src.exists() and out.resolve() == src.resolve():
        raise UsageError(f"--out {out}: is the source file; write the converted checkpoint elsewhere")
    obj = read_torch_file(src)
    source_sd, container, extra = extract_state_dict(obj, src)
    digest = file_sha256(src)
    model = build(default_card(CHEXNET_MODEL))
    mapped, layout = map_chexnet_state_dict(source_sd, model.state_dict(), src, container, extra)
    model.load_state_dict(mapped, strict=True)
    model.card = chexnet_card(src.name, digest, layout)
    diff = check_input_dependence(model, src)
    card = save_checkpoint(out, model.eval())
    log.info("%s -> %s: %s (%s); logits differ by up to %.3g between two probe images", src, out, card.name,
             layout.describe(), diff)
    return card

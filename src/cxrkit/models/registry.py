"""One registry and factory for every cxrkit model.

>>> from cxrkit.models import create_model, list_models
>>> list_models()                                  # doctest: +SKIP
['densenet121', 'resnet50', ...]
>>> model = create_model("densenet121", input_size=256)   # doctest: +SKIP
>>> model.card.labels[:2]                          # doctest: +SKIP
('Atelectasis', 'Cardiomegaly')

A model family registers a *builder* ``build(card) -> torch.nn.Module`` together with its default card.
``create_model`` copies the default card with the overrides asked for, builds the network, attaches the
card as ``model.card`` and, with ``checkpoint=...`` or ``pretrained=True``, loads verified weights.
Nothing is ever downloaded: pretrained weights are files shipped inside the package or given by path.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from cxrkit.errors import ModelError, UnknownModelError
from cxrkit.models.cards import ModelCard
from cxrkit.models.cards import arch as _arch
from cxrkit.models.checkpoint import read_checkpoint
from cxrkit.models.device import resolve_device

if TYPE_CHECKING:  # pragma: no cover
    from cxrkit.models.module import CxrModule

log = logging.getLogger(__name__)

Builder = Callable[[ModelCard], Any]


@dataclass(frozen=True)
class _Entry:
    builder: Builder
    card: ModelCard
    # File name of shipped weights under cxrkit/models/weights/ (None: no shipped weights).
    weights_file: str | None = None


_REGISTRY: dict[str, _Entry] = {}


def register_model(card: ModelCard, weights_file: str | None = None) -> Callable[[Builder], Builder]:
    """Decorator registering ``builder`` under ``card.name`` with ``card`` as its default card."""
    def deco(builder: Builder) -> Builder:
        if card.name in _REGISTRY:
            raise ModelError(f"model {card.name!r} is registered twice")
        _REGISTRY[card.name] = _Entry(builder=builder, card=card, weights_file=weights_file)
        return builder

    return deco


def _load_families() -> None:
    """Import the family modules, which register themselves here."""
    from cxrkit.models import families  # noqa: F401  # lazy: the families import this module to register


def list_models(task: str | None = None) -> list[str]:
    """Registered model names (optionally only those of ``task``), sorted."""
    _load_families()
    return sorted(n for n, e in _REGISTRY.items() if task is None or e.card.task == task)


def default_card(name: str) -> ModelCard:
    """The registered default card of ``name``."""
    return _entry(name).card


def _entry(name: str) -> _Entry:
    _load_families()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownModelError(f"unknown model {name!r}; registered: {', '.join(sorted(_REGISTRY))} "
                         "(or give a checkpoint path)") from None


def shipped_weights(name: str) -> Path | None:
    """Path of the weights shipped in the package for ``name``, or ``None``."""
    entry = _entry(name)
    if entry.weights_file is None:
        return None
    path = Path(str(resources.files("cxrkit.models").joinpath("weights", entry.weights_file)))
    return path if path.is_file() else None


def create_model(
    name: str,
    *,
    checkpoint: str | os.PathLike | None = None,
    pretrained: bool = False,
    **overrides: Any,
) -> "CxrModule":
    """Build model ``name``; ``overrides`` replace fields of its default card (e.g. ``input_size``).

    Architecture keyword arguments can be given as ``architecture={...}`` (merged into the default).
    ``checkpoint`` loads weights from a cxrkit checkpoint (card and sha256 verified); ``pretrained=True``
    loads the weights shipped in the package (an error if there are none).
    """
    if checkpoint is not None and pretrained:
        raise ModelError("give either checkpoint= or pretrained=True, not both")
    entry = _entry(name)
    if pretrained:
        path = shipped_weights(name)
        if path is None:
            raise ModelError(
                f"model {name!r} has no weights shipped in this package; train it or pass checkpoint=PATH"
            )
        checkpoint = path
    if checkpoint is not None:
        model = load_checkpoint(checkpoint, expect_name=name,
                                expect_sha256=entry.card.weights_sha256 if pretrained else None)
        _check_overrides(model.card, overrides, checkpoint)
        if pretrained:  # the registry's card is authoritative for shipped weights (provenance, metrics, text)
            model.card = entry.card.replace(weights_sha256=model.card.weights_sha256)
        return model
    # New weights: their bf16 safety is unmeasured (the registry's inference_precision is the shipped weights').
    card = entry.card.replace(inference_precision="fp32")
    if overrides:
        arch = overrides.pop("architecture", None)
        if arch is not None:
            merged = {**card.arch_kwargs, **dict(arch)}
            overrides["architecture"] = _arch(**merged)
        if "labels" in overrides:
            overrides["labels"] = tuple(overrides["labels"])
            if card.thresholds is not None and "thresholds" not in overrides:
                overrides["thresholds"] = None
        card = card.replace(**overrides)
    return build(card)


def build(card: ModelCard) -> "CxrModule":
    """Build the untrained network described by ``card`` and attach the card (a card from an older
    checkpoint without ``outputs`` gets its family's)."""
    entry = _entry(card.name)
    if not card.outputs:
        card = card.replace(outputs=entry.card.outputs)
    model = entry.builder(card)
    model.card = card
    return model


def _check_overrides(card: ModelCard, overrides: dict[str, Any], source: Any) -> None:
    for key, value in overrides.items():
        have = getattr(card, key, None)
        if key == "labels":
            value = tuple(value)
        if have != value:
            raise ModelError(
                f"checkpoint {source}: its {key} is {have!r}, but {value!r} was asked for"
            )


def load_checkpoint(
    path: str | os.PathLike,
    *,
    expect_name: str | None = None,
    expect_labels: tuple[str, ...] | None = None,
    expect_input_size: int | None = None,
    expect_sha256: str | None = None,
) -> "CxrModule":
    """Build the model a checkpoint describes and load its verified weights (eval mode)."""
    payload = read_checkpoint(path)
    card: ModelCard = payload["card"]
    checks = (
        ("model", expect_name, card.name),
        ("labels", None if expect_labels is None else tuple(expect_labels), card.labels),
        ("input size", expect_input_size, card.input_size),
        ("weights sha256", expect_sha256, card.weights_sha256),
    )
    for what, want, have in checks:
        if want is not None and want != have:
            raise ModelError(f"{path}: checkpoint {what} is {have!r}, expected {want!r}")
    model = build(card)
    missing, unexpected = model.load_state_dict(payload["state_dict"], strict=False)
    if missing or unexpected:
        raise ModelError(
            f"{path}: weights do not fit model {card.name!r} (missing {list(missing)[:3]}, "
            f"unexpected {list(unexpected)[:3]})"
        )
    model.eval()
    log.info("loaded %s (%s, sha256 %s...)", path, card.name, str(card.weights_sha256)[:12])
    return model


def is_checkpoint_path(spec: str | os.PathLike) -> bool:
    """Whether a ``--model`` value names a file rather than a registry name: it exists as a file, or it looks
    like a path (a ``/`` or a ``.pt``/``.pth``/``.ckpt`` suffix)."""
    text = os.fspath(spec)
    return os.path.isfile(text) or "/" in text or os.sep in text or text.lower().endswith((".pt", ".pth", ".ckpt"))


def load_model(spec: str | os.PathLike | None, *, default: str | None = None, task: str | None = None,
               needs: str | Sequence[str] = (), device: Any = "cpu") -> "CxrModule":
    """The one way cxrkit's commands, batch jobs, analysis and the service get a model.

    Args:
        spec: a registry name with weights shipped in the package (``cxrkit models list``) or a checkpoint
            path; None for ``default``.
        default: registry name used when ``spec`` is None (None: no default, ``spec`` is required).
        task: the task the caller runs (``classification``, ``segmentation``, ``registration``); a model of
            another task is refused.
        needs: outputs the caller uses (see :data:`cxrkit.models.cards.OUTPUTS`), e.g. ``"landmarks"``.
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or a ``torch.device`` (see
            :func:`cxrkit.models.device.resolve_device`).

    Returns the model in eval mode on ``device``, its card (with provenance) as ``model.card``. Raises
    :class:`~cxrkit.errors.ModelError` naming the value and the valid choices.
    """
    if spec is None or str(spec) == "":
        if default is None:
            raise ModelError("no model given; pass --model NAME or a checkpoint path (`cxrkit models list`)")
        spec = default
    if is_checkpoint_path(spec):
        model = load_checkpoint(spec)
    else:
        name = str(spec)
        entry = _entry(name)
        if shipped_weights(name) is None:
            raise UnknownModelError(f"model {name!r} has no weights shipped in this package; give a checkpoint path "
                             f"(e.g. from `cxrkit train`). Shipped: {', '.join(shipped_models())}")
        model = create_model(name, pretrained=True)
        del entry
    card: ModelCard = model.card
    if task is not None and card.task != task:
        raise ModelError(f"{spec}: model {card.name!r} is a {card.task} model; this command needs a {task} model")
    for need in ([needs] if isinstance(needs, str) else list(needs)):
        if not card.gives(need):
            raise ModelError(f"{spec}: model {card.name!r} gives {', '.join(card.outputs) or 'nothing'}, not {need}; "
                             "this command needs a model that does")
    return model.to(resolve_device(device)).eval()


def shipped_models(task: str | None = None) -> list[str]:
    """Registry names whose weights ship in the package (optionally of one ``task``)."""
    return [n for n in list_models(task) if shipped_weights(n) is not None]

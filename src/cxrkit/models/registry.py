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

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Callable

from cxrkit.errors import CxrkitError
from cxrkit.models.cards import ModelCard

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
            raise CxrkitError(f"model {card.name!r} is registered twice")
        _REGISTRY[card.name] = _Entry(builder=builder, card=card, weights_file=weights_file)
        return builder

    return deco


def _load_families() -> None:
    # Importing the family modules registers them. Kept lazy so `import cxrkit.models.cards` stays light.
    from cxrkit.models import families  # noqa: F401


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
        raise CxrkitError(f"unknown model {name!r}; available: {', '.join(sorted(_REGISTRY))}") from None


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
):
    """Build model ``name``; ``overrides`` replace fields of its default card (e.g. ``input_size``).

    Architecture keyword arguments can be given as ``architecture={...}`` (merged into the default).
    ``checkpoint`` loads weights from a cxrkit checkpoint (card and sha256 verified); ``pretrained=True``
    loads the weights shipped in the package (an error if there are none).
    """
    if checkpoint is not None and pretrained:
        raise CxrkitError("give either checkpoint= or pretrained=True, not both")
    entry = _entry(name)
    if pretrained:
        path = shipped_weights(name)
        if path is None:
            raise CxrkitError(
                f"model {name!r} has no weights shipped in this package; train it or pass checkpoint=PATH"
            )
        checkpoint = path
    if checkpoint is not None:
        from cxrkit.models.checkpoint import load_checkpoint

        model = load_checkpoint(checkpoint, expect_name=name,
                                expect_sha256=entry.card.weights_sha256 if pretrained else None)
        _check_overrides(model.card, overrides, checkpoint)
        return model
    card = entry.card
    if overrides:
        arch = overrides.pop("architecture", None)
        if arch is not None:
            from cxrkit.models.cards import arch as _arch

            merged = {**card.arch_kwargs, **dict(arch)}
            overrides["architecture"] = _arch(**merged)
        if "labels" in overrides:
            overrides["labels"] = tuple(overrides["labels"])
            if card.thresholds is not None and "thresholds" not in overrides:
                overrides["thresholds"] = None
        card = card.replace(**overrides)
    return build(card)


def build(card: ModelCard):
    """Build the untrained network described by ``card`` and attach the card."""
    entry = _entry(card.name)
    model = entry.builder(card)
    model.card = card
    return model


def _check_overrides(card: ModelCard, overrides: dict[str, Any], source: Any) -> None:
    for key, value in overrides.items():
        have = getattr(card, key, None)
        if key == "labels":
            value = tuple(value)
        if have != value:
            raise CxrkitError(
                f"checkpoint {source}: its {key} is {have!r}, but {value!r} was asked for"
            )

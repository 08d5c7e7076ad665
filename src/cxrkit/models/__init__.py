"""Models: one registry and factory, frozen cards, verified checkpoints (needs torch).

>>> from cxrkit.models import create_model, list_models, load_model, ModelCard
>>> model = load_model("hybridgnet", task="segmentation", needs="landmarks")   # doctest: +SKIP

The names below import on first use, so that the torch-free modules of this package (``cards``,
``preprocess``) load without torch: the engine's worker processes, which decode and post-process, need them
but not torch (a worker then starts in about 0.1 s instead of about 1 s).
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "OUTPUTS": "cxrkit.models.cards",
    "ModelCard": "cxrkit.models.cards",
    "Normalization": "cxrkit.models.cards",
    "Provenance": "cxrkit.models.cards",
    "read_checkpoint": "cxrkit.models.checkpoint",
    "save_checkpoint": "cxrkit.models.checkpoint",
    "resolve_device": "cxrkit.models.device",
    "create_model": "cxrkit.models.registry",
    "default_card": "cxrkit.models.registry",
    "list_models": "cxrkit.models.registry",
    "load_checkpoint": "cxrkit.models.registry",
    "load_model": "cxrkit.models.registry",
    "register_model": "cxrkit.models.registry",
    "shipped_models": "cxrkit.models.registry",
    "shipped_weights": "cxrkit.models.registry",
}

__all__ = ["OUTPUTS", "ModelCard", "Normalization", "Provenance", "create_model", "default_card", "list_models",
           "load_checkpoint", "load_model", "read_checkpoint", "register_model", "resolve_device", "save_checkpoint",
           "shipped_models", "shipped_weights"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'cxrkit.models' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

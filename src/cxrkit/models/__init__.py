"""Models: one registry and factory, frozen cards, verified checkpoints (needs torch).

>>> from cxrkit.models import create_model, list_models, load_model, ModelCard
>>> model = load_model("hybridgnet", task="segmentation", needs="landmarks")   # doctest: +SKIP
"""

from cxrkit.models.cards import OUTPUTS, ModelCard, Normalization, Provenance
from cxrkit.models.checkpoint import read_checkpoint, save_checkpoint
from cxrkit.models.device import resolve_device
from cxrkit.models.registry import (
    create_model,
    default_card,
    list_models,
    load_checkpoint,
    load_model,
    register_model,
    shipped_models,
    shipped_weights,
)

__all__ = ["OUTPUTS", "ModelCard", "Normalization", "Provenance", "create_model", "default_card", "list_models",
           "load_checkpoint", "load_model", "read_checkpoint", "register_model", "resolve_device", "save_checkpoint",
           "shipped_models", "shipped_weights"]

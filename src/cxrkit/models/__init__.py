"""Models: one registry and factory, frozen cards, verified checkpoints (needs torch).

>>> from cxrkit.models import create_model, list_models, ModelCard
"""

from cxrkit.models.cards import ModelCard, Normalization
from cxrkit.models.registry import create_model, default_card, list_models, register_model, shipped_weights

__all__ = ["ModelCard", "Normalization", "create_model", "default_card", "list_models", "register_model",
           "shipped_weights", "load_checkpoint", "save_checkpoint"]


def __getattr__(name):  # checkpoint helpers import torch; keep `import cxrkit.models` light
    if name in ("load_checkpoint", "save_checkpoint", "read_checkpoint"):
        from cxrkit.models import checkpoint

        return getattr(checkpoint, name)
    raise AttributeError(name)

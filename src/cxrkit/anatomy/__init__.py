"""Anatomy measurements from lung and heart masks (cardiothoracic ratio, areas)."""

# The public modules of this package (import them by name: ``from cxrkit.anatomy import measure``).
__all__ = ["measure"]

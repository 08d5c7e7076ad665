"""Anatomy measurements from lung and heart masks (cardiothoracic ratio, areas)."""

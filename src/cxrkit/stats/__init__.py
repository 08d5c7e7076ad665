"""Dataset statistics (pure functions on label matrices and metadata tables) and their plots."""

# The public modules of this package (import them by name: ``from cxrkit.stats import demographics``).
__all__ = ["demographics", "labels", "plots", "summary"]

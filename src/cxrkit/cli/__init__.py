"""The ``cxrkit`` console script: one module per command group, each with ``register(subparsers)``."""

# The public modules of this package (import them by name: ``from cxrkit.cli import analyze``).
__all__ = ["analyze", "batch", "bench", "chexmask", "demo", "evaluate", "main", "measure", "models", "nih", "options", "predict", "qc", "query", "reports", "segment", "serve", "shared", "stats", "train"]

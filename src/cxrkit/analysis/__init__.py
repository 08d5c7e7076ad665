"""One-image analysis: every model on one radiograph (``cxrkit analyze``)."""

# The public modules of this package (import them by name: ``from cxrkit.analysis import analyze``).
__all__ = ["analyze", "document", "job", "report"]

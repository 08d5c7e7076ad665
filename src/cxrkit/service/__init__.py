"""The REST service and web viewer (``cxrkit serve``)."""

# The public modules of this package (import them by name: ``from cxrkit.service import app``).
__all__ = ["app"]

"""One-image analysis: every model on one radiograph (``cxrkit analyze``)."""

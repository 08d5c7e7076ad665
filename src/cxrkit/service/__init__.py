"""The REST service and web viewer (``cxrkit serve``)."""

"""The offline demo: runs every capability on bundled sample data and writes ``index.html``."""

# The public modules of this package (import them by name: ``from cxrkit.demo import runner``).
__all__ = ["runner", "section", "sections"]

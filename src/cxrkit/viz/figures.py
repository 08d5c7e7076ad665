"""Figures and PNG files: the matplotlib backend, saving figures, writing images as PNG."""

from __future__ import annotations

import io
import os

import numpy as np

from cxrkit.io.atomic import write_bytes
from cxrkit.io.images import encode_png


def pyplot():
    """matplotlib.pyplot on the non-interactive Agg backend (imported lazily: matplotlib is slow to import)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | os.PathLike, dpi: int = 110) -> None:
    """Write a matplotlib figure as PNG atomically (tight bounding box) and close it."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    pyplot().close(fig)
    write_bytes(path, buf.getvalue())


def save_png(path: str | os.PathLike, image: np.ndarray) -> None:
    """Encode ``image`` as PNG (:func:`cxrkit.io.images.encode_png`) and write it atomically."""
    write_bytes(path, encode_png(image))

"""The preprocessing a model carries: pad to a centred square, resize, normalize.

Array functions; the model's :meth:`CxrModule.preprocess` uses them with its card. Coordinates: the
returned :class:`~cxrkit.io.geometry.SquareResize` maps between original pixels (x right, y down, 0-based,
top-left of the image at (0, 0)) and model-input pixels.
"""

from __future__ import annotations

import numpy as np

from cxrkit.io.geometry import SquareResize
from cxrkit.io.images import to_uint8
from cxrkit.models.cards import ModelCard


def to_model_input(image: np.ndarray, card: ModelCard) -> tuple[np.ndarray, SquareResize]:
    """Grayscale image (H, W; any dtype) -> float32 (1, S, S) normalized input and its geometry."""
    if image.ndim != 2:
        raise ValueError(f"expected a 2-D grayscale image, got shape {image.shape}")
    img8 = image if image.dtype == np.uint8 else to_uint8(image)
    geom = SquareResize(height=img8.shape[0], width=img8.shape[1], size=card.input_size)
    square = geom.image_to_square(img8)
    x = normalize(square, card)
    return x[None], geom


def normalize(square_uint8: np.ndarray, card: ModelCard) -> np.ndarray:
    """uint8 pixels -> float32 ``(x/255 - mean) / std`` as the card says."""
    n = card.normalization
    return ((square_uint8.astype(np.float32) / 255.0) - n.mean) / n.std

"""The preprocessing a model carries: pad to a centred square, resize, normalize.

Array functions; the model's :meth:`CxrModule.preprocess` uses them with its card. Coordinates: the
returned :class:`~cxrkit.io.geometry.SquareResize` maps between original pixels (x right, y down, 0-based,
top-left of the image at (0, 0)) and model-input pixels.
"""

from __future__ import annotations

import cv2
import numpy as np

from cxrkit.errors import InputError, ModelError
from cxrkit.io.geometry import SquareResize
from cxrkit.io.images import to_uint8
from cxrkit.models.cards import ModelCard, Normalization


def to_model_input(image: np.ndarray, card: ModelCard) -> tuple[np.ndarray, SquareResize]:
    """Grayscale image (H, W; any dtype) -> float32 (C, S, S) normalized input and its geometry.

    ``C`` is ``card.in_channels``: a network that takes 3 channels (e.g. an ImageNet-style DenseNet) gets the
    gray image replicated to every channel, then each channel normalized with its own statistics when the
    card's :class:`Normalization` gives them per channel. The same as :func:`square_input` (the geometry,
    in decode workers) followed by :func:`finish_input` (the intensities), which is how the engine splits it.
    """
    square, stats, geom = square_input(image, card.input_size, card.normalization.per_image)
    return finish_input(square, stats, card), geom


def square_input(image: np.ndarray, size: int, per_image: bool
                 ) -> tuple[np.ndarray, tuple[float, float] | None, SquareResize]:
    """The geometric half of :func:`to_model_input`: uint8 (size, size) padded-square image, the unpadded
    image's (mean, std) in [0, 1] units when the normalization is per image (else None), and the geometry."""
    if image.ndim != 2:
        raise InputError(f"expected a 2-D grayscale image, got shape {image.shape}")
    img8 = image if image.dtype == np.uint8 else to_uint8(image)
    geom = SquareResize(height=img8.shape[0], width=img8.shape[1], size=size)
    return geom.image_to_square(img8), (image_stats(img8) if per_image else None), geom


def finish_input(square: np.ndarray, stats: tuple[float, float] | None, card: ModelCard) -> np.ndarray:
    """The intensity half of :func:`to_model_input`: a uint8 (S, S) square -> float32 (C, S, S) model input."""
    norm = card.normalization
    if norm.channels is not None and norm.channels != card.in_channels:
        raise ModelError(f"model card {card.name!r}: normalization has statistics for {norm.channels} channels "
                         f"but the model takes {card.in_channels}")
    x01 = np.broadcast_to(square.astype(np.float32) / 255.0, (card.in_channels, *square.shape))
    return np.ascontiguousarray(normalize(x01, norm, stats), dtype=np.float32)


def image_stats(image_uint8: np.ndarray) -> tuple[float, float]:
    """Mean and standard deviation of an image's pixels scaled to [0, 1]."""
    m, s = cv2.meanStdDev(image_uint8)
    return float(m[0, 0]) / 255.0, float(s[0, 0]) / 255.0


def normalize(x01, norm: Normalization, stats: tuple[float, float] | None = None):
    """Pixels scaled to [0, 1] -> the model's input, as the card's :class:`Normalization` says.

    Works on a numpy array (one image, (H, W) or (C, H, W); ``stats`` from :func:`image_stats` of the unpadded
    image, or computed here when None) or on a torch batch ``(N, C, H, W)`` (per-image statistics over each
    sample). Per-channel statistics apply along the channel axis (0 for a numpy image, 1 for a torch batch);
    a single-channel input is broadcast to their number of channels (the gray image replicated).
    """
    if not norm.per_image:
        if norm.channels is None:
            return (x01 - norm.mean) / norm.std
        if isinstance(x01, np.ndarray):
            shape = (-1, 1, 1)
            x = x01 if x01.ndim == 3 else x01[None]
            mean = np.asarray(norm.mean, np.float32).reshape(shape)
            std = np.asarray(norm.std, np.float32).reshape(shape)
            return ((x - mean) / std).astype(np.float32)
        import torch

        mean = torch.as_tensor(norm.mean, dtype=x01.dtype, device=x01.device).reshape(1, -1, 1, 1)
        std = torch.as_tensor(norm.std, dtype=x01.dtype, device=x01.device).reshape(1, -1, 1, 1)
        return (x01 - mean) / std
    if isinstance(x01, np.ndarray):
        mean, std = stats if stats is not None else (float(x01.mean()), float(x01.std()))
        return ((x01 - mean) / max(std, _EPS)).astype(np.float32)
    dims = tuple(range(1, x01.ndim))
    mean = x01.mean(dim=dims, keepdim=True)
    std = x01.std(dim=dims, keepdim=True, unbiased=False).clamp_min(_EPS)
    return (x01 - mean) / std


_EPS = 1e-3  # a blank image stays finite

"""Base class of cxrkit networks: a ``torch.nn.Module`` that carries its card and preprocessing."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from cxrkit.io.geometry import SquareResize
from cxrkit.models.cards import ModelCard
from cxrkit.models.preprocess import to_model_input


class CxrModule(torch.nn.Module):
    """A network plus its :class:`ModelCard`; ``preprocess`` turns raw images into its input batch."""

    card: ModelCard

    def preprocess(self, images: Sequence[np.ndarray]) -> tuple[torch.Tensor, list[SquareResize]]:
        """Grayscale images (H, W), any size/dtype -> (N, 1, S, S) float tensor and per-image geometry."""
        arrays, geoms = zip(*(to_model_input(im, self.card) for im in images)) if images else ((), ())
        if not arrays:
            raise ValueError("preprocess needs at least one image")
        return torch.from_numpy(np.stack(arrays)), list(geoms)

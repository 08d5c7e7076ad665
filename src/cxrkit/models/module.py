"""Base class of cxrkit networks: a ``torch.nn.Module`` that carries its card and preprocessing."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from cxrkit.io.geometry import SquareResize
from cxrkit.models.cards import ModelCard
from cxrkit.models.inference import inference_copy, weights_key
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

    def inference_view(self) -> "CxrModule":
        """The network to run for inference: in eval mode an inference copy of this one
        (:func:`cxrkit.models.inference.inference_copy`: convolution + batch norm folded, channels-last on the CPU;
        the same outputs up to float rounding, faster on the CPU: ``bench/bench_segment.py``), made on the first call and again
        whenever the weights, device or dtype change; in training mode this network itself. Call it under
        ``torch.inference_mode()`` (its weights take no gradients)."""
        if self.training:
            return self
        key = weights_key(self)
        cached = self.__dict__.get("_cxr_inference")
        if cached is None or cached[0] != key:
            # Ordinary tensors even when called under inference_mode (as the engine's jobs do): the copy outlives
            # this call.
            with torch.inference_mode(False), torch.no_grad():
                cached = (key, inference_copy(self))
            self.__dict__["_cxr_inference"] = cached  # not a submodule: no state_dict entry, no .to()
        return cached[1]

    def infer(self, *inputs: torch.Tensor, **kwargs):
        """``forward`` of :meth:`inference_view` under ``torch.inference_mode()`` (a 4-D CPU input made
        channels-last to match). Tensors are on the model's device; outputs as :meth:`forward` gives them."""
        net = self.inference_view()
        if net is not self and inputs and inputs[0].device.type == "cpu" and inputs[0].dim() == 4:
            inputs = (inputs[0].contiguous(memory_format=torch.channels_last), *inputs[1:])
        with torch.inference_mode():
            return net(*inputs, **kwargs)

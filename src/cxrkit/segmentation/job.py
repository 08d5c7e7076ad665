"""``cxrkit segment`` as an engine job (:mod:`cxrkit.engine`): decode in workers, landmarks (and RCA) batched on
the device, masks at the original size + RLE + the CheXmask row in workers.

Worker side (:class:`~cxrkit.segmentation.work.SegmentWork`, settings only, in the torch-free module
:mod:`cxrkit.segmentation.work`): ``prepare`` reads the image and gives the uint8 model-input
square (the card's geometry, :func:`cxrkit.models.preprocess.square_input`) and, for quality control, the
image in RCA's square space; ``finish`` maps the landmarks back to the original pixels, fills the three
structures at the original size, RLE-encodes them and builds the row (CheXmask's layout; the Dice RCA columns
from the batched registration's Dice table). Model side (:class:`SegmentJob`): the landmark model and, with
quality control, :meth:`cxrkit.qc.rca.RcaEstimator.score_batch` on the device.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cxrkit.io.landmarks import ORGANS, organ_masks
from cxrkit.models.device import resolve_precision
from cxrkit.models.preprocess import finish_input
from cxrkit.segmentation.work import SegmentItem, SegmentWork

__all__ = ["SegmentItem", "SegmentJob", "SegmentWork"]  # the worker side lives in cxrkit.segmentation.work


class SegmentJob:
    """The landmark model (and an optional :class:`cxrkit.qc.rca.RcaEstimator`) on their device."""

    def __init__(self, model, qc=None, id_column: str = "ImageID", masks_dir: str | None = None,
                 precision: str = "fp32") -> None:
        card = model.card

        self.model = model
        self.qc = qc
        self.precision = resolve_precision(precision, card, next(model.parameters()).device)
        self.work = SegmentWork(card.input_size, card.normalization.per_image, id_column,
                                None if qc is None else qc.image_size, None if masks_dir is None else str(masks_dir))

    def forward(self, inputs: list[np.ndarray], metas: list[dict]) -> list[Any]:
        import torch

        card = self.model.card
        device = next(self.model.parameters()).device
        x = torch.from_numpy(np.stack([finish_input(sq, m["stats"], card) for sq, m in zip(inputs, metas)]))
        with torch.inference_mode(), autocast(device, self.precision):
            pts = self.model.infer(x.to(device))["landmarks"].float().cpu().numpy() * card.input_size
        outputs: list[dict] = [{"landmarks": p} for p in pts]
        if self.qc is not None:
            m = self.qc.mask_size
            masks = np.stack([np.stack([organ_masks(p * (m / card.input_size), m, m)[s] for s in ORGANS])
                              for p in pts])
            images = np.stack([meta["qc_image"] for meta in metas])
            tables = self.qc.score_batch(images, masks)
            for out, table in zip(outputs, tables):
                out["rca"] = self.qc.summarize(table)  # an RcaEstimate (picklable), for the row's Dice columns
        return outputs


def autocast(device, precision: str):
    """``torch.autocast`` for ``precision`` ``bf16`` on ``device``, a no-op context for ``fp32``."""
    import contextlib

    import torch

    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()

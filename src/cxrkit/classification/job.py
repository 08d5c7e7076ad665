"""``cxrkit predict`` as an engine job: decode in workers, the classifier batched on its device, heatmaps at the
original size, boxes and the output files in workers.

Worker side (:class:`PredictWork`): ``prepare`` reads the image and gives the classifier's input square;
``finish`` turns the probabilities and feature-resolution class maps into a
:class:`~cxrkit.classification.predict.Prediction` (:func:`~cxrkit.classification.predict.prediction_from_maps`)
and, with an output folder, writes ``<stem>.json``, ``<stem>_overlay.png`` (and ``<stem>_heatmaps.npz``)
atomically; without one it returns the prediction's JSON object (batch jobs).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cxrkit.classification.predict import (
    CARD_RULES,
    classify_batch,
    overlay,
    prediction_from_maps,
)
from cxrkit.io.atomic import write_bytes, write_text
from cxrkit.io.geometry import SquareResize
from cxrkit.io.images import read_image, to_uint8
from cxrkit.models.device import resolve_precision
from cxrkit.models.preprocess import finish_input, square_input
from cxrkit.viz import save_png


@dataclass(frozen=True)
class PredictItem:
    """One image: its file, identity and output stem (None: no files)."""

    path: Path
    image_id: str
    stem: str | None = None


@dataclass(frozen=True)
class PredictWork:
    """Worker side of :class:`PredictJob` (picklable: the card and the output settings)."""

    card: Any
    heatmap_method: str = "cam"
    box_method: str = CARD_RULES  # the card's box rules (see cxrkit.classification.predict.finding_boxes)
    box_policy: str = "positive"
    out_dir: str | None = None
    overlay: bool = True
    save_heatmaps: bool = False

    def prepare(self, item: PredictItem) -> tuple[dict, np.ndarray]:
        img8 = to_uint8(read_image(item.path).pixels)
        square, stats, geom = square_input(img8, self.card.input_size, self.card.normalization.per_image)
        meta = {"height": geom.height, "width": geom.width, "stats": stats}
        if self.out_dir is not None and self.overlay:
            meta["gray8"] = img8
        return meta, square

    def finish(self, item: PredictItem, meta: dict, output: tuple[np.ndarray, np.ndarray]) -> dict:
        probs, maps = output
        keep = self.out_dir is not None and (self.overlay or self.save_heatmaps)
        pred = prediction_from_maps(self.card, item.image_id, SquareResize(meta["height"], meta["width"],
                                                                           self.card.input_size),
                                    probs, maps, self.heatmap_method, self.box_method, self.box_policy,
                                    keep_heatmaps=keep)
        doc = pred.to_json()
        if self.out_dir is not None and item.stem is not None:
            base = Path(self.out_dir) / item.stem
            write_text(base.with_name(base.name + ".json"), json.dumps(doc, indent=2) + "\n")
            if self.overlay:
                save_png(base.with_name(base.name + "_overlay.png"), overlay(meta["gray8"], pred))
            if self.save_heatmaps:
                import io

                buf = io.BytesIO()
                np.savez_compressed(buf, heatmaps=pred.heatmaps.astype(np.float16), labels=np.array(self.card.labels))
                write_bytes(base.with_name(base.name + "_heatmaps.npz"), buf.getvalue())
        return doc


class PredictJob:
    """The classifier on its device, ``batch_size`` images per forward pass."""

    def __init__(self, model, *, heatmap_method: str = "cam", box_method: str = CARD_RULES, box_policy: str = "positive",
                 out_dir: str | None = None, overlay: bool = True, save_heatmaps: bool = False,
                 precision: str = "auto") -> None:

        self.model = model
        self.heatmap_method = heatmap_method
        self.precision = resolve_precision(precision, model.card, next(model.parameters()).device)
        self.work = PredictWork(model.card, heatmap_method, box_method, box_policy,
                                None if out_dir is None else str(out_dir), overlay, save_heatmaps)

    def forward(self, inputs: list[np.ndarray], metas: list[dict]) -> list[tuple[np.ndarray, np.ndarray]]:
        import torch


        card = self.model.card
        x = torch.from_numpy(np.stack([finish_input(sq, m["stats"], card) for sq, m in zip(inputs, metas)]))
        probs, maps = classify_batch(self.model, x, self.heatmap_method, self.precision)
        return list(zip(probs, maps))

"""The worker side of ``cxrkit segment``'s engine job (:mod:`cxrkit.segmentation.job`), torch-free so that the
engine's worker processes start fast: ``prepare`` reads the image and gives the uint8 model-input square (the
card's geometry, :func:`cxrkit.models.preprocess.square_input`) and, for quality control, the image in RCA's
square space; ``finish`` maps the landmarks back to the original pixels (points are ``(x, y)`` = (column, row),
0-based), fills the three structures at the original size, RLE-encodes them and builds the row (CheXmask's
layout; the Dice RCA columns from the batched registration's Dice table).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cxrkit.data.chexmask import write_mask_arrays
from cxrkit.io.geometry import SquareResize
from cxrkit.io.images import read_image, to_uint8
from cxrkit.io.inputs import ImageInput
from cxrkit.models.preprocess import square_input
from cxrkit.segmentation.rows import chexmask_row, snap_landmarks


@dataclass(frozen=True)
class SegmentItem:
    """One image to segment: where it is and the ID its row gets (``--id-style``)."""

    input: ImageInput
    image_id: str

    @property
    def path(self):
        return self.input.path


@dataclass(frozen=True)
class SegmentWork:
    """Worker side of :class:`SegmentJob` (picklable settings)."""

    input_size: int
    per_image: bool
    id_column: str = "ImageID"
    qc_image_size: int | None = None  # RCA's image side (None: no quality control)
    masks_dir: str | None = None

    def prepare(self, item: SegmentItem) -> tuple[dict, np.ndarray]:
        xray = read_image(item.path)
        img8 = to_uint8(xray.pixels)
        square, stats, geom = square_input(img8, self.input_size, self.per_image)
        meta = {"height": geom.height, "width": geom.width, "stats": stats}
        if self.qc_image_size:
            meta["qc_image"] = SquareResize(geom.height, geom.width, self.qc_image_size).image_to_square(img8)
        return meta, square

    def finish(self, item: SegmentItem, meta: dict, output: dict) -> dict[str, str]:
        h, w = meta["height"], meta["width"]
        points = SquareResize(h, w, self.input_size).points_to_original(output["landmarks"])
        pts, masks = snap_landmarks(points, h, w)
        row = chexmask_row(item.image_id, pts, masks, h, w, output.get("rca"), id_column=self.id_column)
        if self.masks_dir is not None:
            write_mask_arrays(masks, item.image_id, self.masks_dir)
        return row

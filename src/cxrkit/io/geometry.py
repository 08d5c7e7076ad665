"""Geometry transforms that move images, masks, points and boxes between spaces, both ways.

Conventions (everywhere in cxrkit):

* Points are ``(x, y)`` in pixels of the image they belong to, x = column, y = row, 0-based;
  integer values name pixel indices (pixel centres), as CheXmask's landmarks do.
* Boxes are ``(x, y, w, h)`` in pixels, (x, y) the top-left corner (NIH ``BBox_List_2017`` style).
* Images and masks are numpy arrays indexed ``[row, col]`` with shape ``(height, width)``.

:class:`SquareResize` reproduces CheXmask's preprocessing: pad the image to a centred square with
zeros (``pad // 2`` before, the rest after, like HybridGNet's ``pad_to_square``), then resize the
square to ``size x size`` (1024 for CheXmask). Its ``points_to_original`` is HybridGNet's
``removePreprocess``.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from cxrkit.errors import InputError


@dataclass(frozen=True)
class SquareResize:
    """Pad ``(height, width)`` to a centred square, then scale it to ``size x size``.

    Attributes:
        height, width: the original image size in pixels.
        size: the side of the square output in pixels (CheXmask: 1024).
    """

    height: int
    width: int
    size: int = 1024

    def __post_init__(self) -> None:
        for name in ("height", "width", "size"):
            value = getattr(self, name)
            if int(value) != value or value <= 0:
                raise InputError(f"SquareResize: {name} must be a positive integer, got {value!r}")

    @property
    def side(self) -> int:
        """Side of the padded square in original pixels."""
        return max(self.height, self.width)

    @property
    def pad_top(self) -> int:
        return (self.side - self.height) // 2

    @property
    def pad_left(self) -> int:
        return (self.side - self.width) // 2

    @property
    def scale(self) -> float:
        """Output pixels per original pixel."""
        return self.size / self.side

    # --- points -----------------------------------------------------------------------------
    def points_to_square(self, points: np.ndarray) -> np.ndarray:
        """Map ``(N, 2)`` ``(x, y)`` points from the original image to the square (float)."""
        p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        return (p + (self.pad_left, self.pad_top)) * self.scale

    def points_to_original(self, points: np.ndarray) -> np.ndarray:
        """Map ``(N, 2)`` ``(x, y)`` points from the square back to the original image (float)."""
        p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        return p / self.scale - (self.pad_left, self.pad_top)

    # --- boxes ------------------------------------------------------------------------------
    def boxes_to_square(self, boxes: np.ndarray) -> np.ndarray:
        """Map ``(N, 4)`` ``(x, y, w, h)`` boxes from the original image to the square."""
        b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4).copy()
        b[:, :2] = self.points_to_square(b[:, :2])
        b[:, 2:] *= self.scale
        return b

    def boxes_to_original(self, boxes: np.ndarray) -> np.ndarray:
        """Map ``(N, 4)`` ``(x, y, w, h)`` boxes from the square back to the original image."""
        b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4).copy()
        b[:, :2] = self.points_to_original(b[:, :2])
        b[:, 2:] /= self.scale
        return b

    # --- rasters ----------------------------------------------------------------------------
    def image_to_square(self, image: np.ndarray, interpolation: int = cv2.INTER_AREA) -> np.ndarray:
        """Pad and resize an image ``(H, W)`` to ``(size, size)`` (zeros in the padding). This is every model's
        geometry, in training (:class:`~cxrkit.data.torch_datasets.NIHDataset`, the preprocessing cache) and
        inference (:func:`cxrkit.models.preprocess.to_model_input`) alike; the default resize is
        :func:`resize_area` (area when shrinking, linear when enlarging)."""
        self._check_shape(image)
        s = self.side
        pad = (
            (self.pad_top, s - self.height - self.pad_top),
            (self.pad_left, s - self.width - self.pad_left),
        ) + ((0, 0),) * (image.ndim - 2)
        if s == self.size:
            return np.pad(image, pad)  # always a new array
        # A square image needs no padding before the resize (which makes the new array): skip np.pad's
        # full-size copy.
        squared = image if s == self.height == self.width else np.pad(image, pad)
        if interpolation == cv2.INTER_AREA:  # area when shrinking (fast at integer factors), linear when enlarging
            return resize_area(squared, self.size)
        return cv2.resize(squared, (self.size, self.size), interpolation=interpolation)

    def mask_to_original(self, mask: np.ndarray) -> np.ndarray:
        """Map a ``(size, size)`` mask back to ``(height, width)`` (nearest neighbour, bool)."""
        m = np.asarray(mask)
        if m.shape[:2] != (self.size, self.size):
            raise InputError(f"mask shape {m.shape} does not match the square {self.size}x{self.size}")
        s = self.side
        full = cv2.resize(m.astype(np.uint8), (s, s), interpolation=cv2.INTER_NEAREST) if s != self.size else m
        return full[self.pad_top : self.pad_top + self.height, self.pad_left : self.pad_left + self.width].astype(bool)

    def map_to_original(self, values: np.ndarray) -> np.ndarray:
        """Map a float ``(size, size)`` map (e.g. a heatmap) back to ``(height, width)``, bilinear."""
        v = np.asarray(values, dtype=np.float32)
        if v.shape[:2] != (self.size, self.size):
            raise InputError(f"map shape {v.shape} does not match the square {self.size}x{self.size}")
        s = self.side
        full = cv2.resize(v, (s, s), interpolation=cv2.INTER_LINEAR) if s != self.size else v
        return full[self.pad_top : self.pad_top + self.height, self.pad_left : self.pad_left + self.width]

    def _check_shape(self, image: np.ndarray) -> None:
        if image.shape[:2] != (self.height, self.width):
            raise InputError(
                f"image shape {image.shape[:2]} does not match the transform's (height, width) "
                f"= ({self.height}, {self.width})"
            )


def resize_area(image: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Resize ``image`` to ``size`` (an int for a square, or ``(height, width)``).

    Uses area interpolation when shrinking (no aliasing) and linear when enlarging.
    """
    h, w = (size, size) if isinstance(size, int) else size
    if image.shape[:2] == (h, w):
        return image
    shrink = h <= image.shape[0] and w <= image.shape[1]
    if not shrink:
        return cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)
    # OpenCV's area filter is ~4x faster at integer factors: box-filter by the largest integer factor
    # that divides the size exactly (1024 -> 256), then area-resize the rest of the way (256 -> 224).
    k = min(image.shape[0] // h, image.shape[1] // w)
    if k >= 2 and image.shape[0] % k == 0 and image.shape[1] % k == 0:
        image = cv2.resize(image, (image.shape[1] // k, image.shape[0] // k), interpolation=cv2.INTER_AREA)
        if image.shape[:2] == (h, w):
            return image
    return cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)


def scale_boxes(boxes: np.ndarray, from_hw: tuple[int, int], to_hw: tuple[int, int]) -> np.ndarray:
    """Scale ``(N, 4)`` ``(x, y, w, h)`` boxes between two sizes of the same image (no padding)."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4).copy()
    sy, sx = to_hw[0] / from_hw[0], to_hw[1] / from_hw[1]
    b[:, [0, 2]] *= sx
    b[:, [1, 3]] *= sy
    return b

"""CheXmask landmarks: parsing, the organ split, filling contours into masks, mapping between spaces.

Conventions:

* Points are ``(N, 2)`` float arrays of ``(x, y)`` = ``(column, row)`` pixel coordinates, 0-based,
  integer values naming pixel centres (as in :mod:`cxrkit.io.geometry`).
* CheXmask stores 120 points per image: right lung ``[0:44]``, left lung ``[44:94]``, heart
  ``[94:120]``, each a closed contour. "Right" is the patient's right, which is the *image left* on
  a PA radiograph.
* The preprocessed CheXmask CSVs store landmarks and masks in the **1024 space**: the image padded to
  a centred square and resized to 1024 x 1024 (:class:`~cxrkit.io.geometry.SquareResize`). The
  "original resolution" releases store them in the image's own pixels. :func:`to_original` and
  :func:`to_square` move points between the two.
* Filling a contour uses integer-truncated coordinates (``astype(int)``, toward zero) and
  ``cv2.drawContours(..., thickness=-1)``, exactly as CheXmask built its masks; on the HybridGNet
  rows this reproduces the stored RLE masks pixel for pixel.

Strings seen in real files and accepted by :func:`parse_landmarks`:

* comma lists: ``"395,178,366,183,..."`` (ints) or ``"363.0,300.0,..."`` (floats);
* numpy-printed arrays (pandas ``to_csv`` of an array cell): ``"[[395 178]\\n [366 183] ...]"`` or
  ``"[395. 178. 366. ...]"``;
* Python lists ``"[[395, 178], [366, 183]]"`` and whitespace tables (``np.savetxt``, the CheXmask
  example ``*_landmarks.txt``).
"""

from __future__ import annotations

import re
from typing import NamedTuple

import cv2
import numpy as np

from cxrkit.errors import InputError
from cxrkit.io.geometry import SquareResize

__all__ = [
    "N_LANDMARKS",
    "ORGANS",
    "ORGAN_SLICES",
    "Organs",
    "parse_landmarks",
    "format_landmarks",
    "split_organs",
    "fill_contour",
    "organ_masks",
    "to_original",
    "to_square",
]

N_LANDMARKS = 120
ORGANS: tuple[str, ...] = ("right_lung", "left_lung", "heart")
ORGAN_SLICES: dict[str, slice] = {
    "right_lung": slice(0, 44),
    "left_lung": slice(44, 94),
    "heart": slice(94, 120),
}
# CSV column holding each organ's RLE mask.
ORGAN_COLUMNS: dict[str, str] = {"right_lung": "Right Lung", "left_lung": "Left Lung", "heart": "Heart"}

_SEPARATORS = re.compile(r"[\s,\[\]()]+")


class Organs(NamedTuple):
    """The three CheXmask contours, each ``(n, 2)`` ``(x, y)`` points."""

    right_lung: np.ndarray
    left_lung: np.ndarray
    heart: np.ndarray


def _describe(text: str) -> str:
    return repr(text if len(text) <= 50 else text[:47] + "...")


def parse_landmarks(text: str, n_points: int | None = N_LANDMARKS) -> np.ndarray:
    """Parse a landmark string (any form listed in the module docstring) into ``(N, 2)`` float64 ``(x, y)``.

    ``n_points`` is the expected number of points (120 for CheXmask); ``None`` accepts any even count.
    Raises :class:`CxrkitError` naming the value for non-numbers, an odd count, numpy's ``...``
    summarization (the array was printed truncated: the coordinates are lost), non-finite values or
    the wrong number of points.
    """
    if not isinstance(text, str):
        raise InputError(f"landmarks must be a string, got {type(text).__name__} {text!r}")
    if "..." in text:
        raise InputError(
            f"landmarks {_describe(text)} were printed with numpy's '...' summarization; the coordinates are lost"
        )
    tokens = [t for t in _SEPARATORS.split(text) if t]
    try:
        values = np.array(tokens, dtype=np.float64)
    except ValueError:
        bad = next(t for t in tokens if not _is_float(t))
        raise InputError(f"landmarks {_describe(text)}: {bad!r} is not a number") from None
    if values.size % 2:
        raise InputError(f"landmarks {_describe(text)}: {values.size} values; expected (x, y) pairs")
    if not np.isfinite(values).all():
        raise InputError(f"landmarks {_describe(text)}: non-finite coordinate (nan/inf)")
    points = values.reshape(-1, 2)
    if n_points is not None and len(points) != n_points:
        raise InputError(f"landmarks {_describe(text)}: {len(points)} points; expected {n_points} (x, y) pairs")
    return points


def _is_float(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def format_landmarks(points: np.ndarray) -> str:
    """Write points as CheXmask's comma list ``x0,y0,x1,y1,...`` (integers when all values are integral)."""
    p = np.asarray(points, dtype=np.float64).reshape(-1)
    if np.all(p == np.round(p)):
        return ",".join(map(str, p.astype(np.int64).tolist()))
    return ",".join(map(repr, p.tolist()))


def split_organs(points: np.ndarray) -> Organs:
    """Split the 120 CheXmask points into right lung ``[0:44]``, left lung ``[44:94]``, heart ``[94:120]``."""
    p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if len(p) != N_LANDMARKS:
        raise InputError(f"CheXmask landmarks have {N_LANDMARKS} points; got {len(p)}")
    return Organs(*(p[ORGAN_SLICES[name]] for name in ORGANS))


def fill_contour(points: np.ndarray, height: int, width: int) -> np.ndarray:
    """Fill one closed contour of ``(x, y)`` points into a ``(height, width)`` bool mask.

    Coordinates are truncated toward zero (``astype(int)``) and filled with
    ``cv2.drawContours(thickness=-1)``, which is how CheXmask built its RLE masks. Points may lie
    outside the image; the fill is clipped.
    """
    p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if len(p) < 3:
        raise InputError(f"a contour needs at least 3 points; got {len(p)}")
    if not np.isfinite(p).all():
        raise InputError("contour has non-finite coordinates")
    lim = 2**30  # cv2 uses int32 coordinates
    if np.abs(p).max() >= lim:
        raise InputError(f"contour coordinate {np.abs(p).max():g} is out of range (|v| < {lim})")
    canvas = np.zeros((int(height), int(width)), dtype=np.uint8)
    cv2.drawContours(canvas, [p.astype(np.int32).reshape(-1, 1, 2)], -1, 1, thickness=-1)
    return canvas.view(bool)


def organ_masks(points: np.ndarray, height: int = 1024, width: int = 1024) -> dict[str, np.ndarray]:
    """Fill the three CheXmask contours into ``{"right_lung", "left_lung", "heart"}`` bool masks.

    ``points`` must be in the pixel space of the ``(height, width)`` mask (1024 space for the
    preprocessed CSVs).
    """
    organs = split_organs(points)
    return {name: fill_contour(getattr(organs, name), height, width) for name in ORGANS}


def to_original(points: np.ndarray, height: int, width: int, size: int = 1024) -> np.ndarray:
    """Map ``(x, y)`` points from the ``size`` square (CheXmask 1024 space) to the original ``height x width`` image.

    Inverse of CheXmask's preprocessing (pad to a centred square, resize): ``p * side / size - pad``.
    Returns floats; CheXmask's original-resolution release rounds them (``np.round``).
    """
    return SquareResize(height, width, size).points_to_original(points)


def to_square(points: np.ndarray, height: int, width: int, size: int = 1024) -> np.ndarray:
    """Map ``(x, y)`` points from the original ``height x width`` image to the ``size`` square (floats)."""
    return SquareResize(height, width, size).points_to_square(points)

"""Lungs and heart drawn over a radiograph: filled translucent masks, outlines and landmarks (BGR uint8)."""

from __future__ import annotations

import cv2
import numpy as np

from cxrkit.errors import InputError
from cxrkit.io.landmarks import ORGANS, split_organs

# BGR colours per organ.
ORGAN_COLORS: dict[str, tuple[int, int, int]] = {
    "right_lung": (80, 80, 255),  # red
    "left_lung": (255, 160, 60),  # blue
    "heart": (60, 220, 255),  # yellow
}
DARK_CANVAS = 24


def render_overlay(
    masks: dict[str, np.ndarray],
    points: np.ndarray | None = None,
    image: np.ndarray | None = None,
    *,
    alpha: float = 0.35,
    point_radius: int | None = None,
) -> np.ndarray:
    """Draw masks (filled, translucent, with outlines) and landmarks over an image; returns BGR uint8.

    ``masks`` are bool ``(H, W)`` per organ; ``points`` ``(120, 2)`` ``(x, y)`` in the same pixels
    (drawn as dots coloured by organ); ``image`` is a gray or BGR uint8 ``(H, W)`` image, or None
    for a dark canvas.
    """
    shapes = {m.shape for m in masks.values()}
    if len(shapes) != 1:
        raise InputError(f"masks have different shapes {sorted(shapes)}")
    (shape,) = shapes
    if image is None:
        canvas = np.full(shape + (3,), DARK_CANVAS, dtype=np.uint8)
    else:
        img = np.asarray(image)
        if img.shape[:2] != shape:
            raise InputError(f"image shape {img.shape[:2]} does not match the masks' {shape}")
        if img.dtype != np.uint8:
            raise InputError(f"image must be uint8, got {img.dtype}")
        canvas = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR) if img.ndim == 2 else img[..., :3].copy()
    scale = max(shape) / 1024
    for organ in ORGANS:
        if organ not in masks:
            continue
        m = masks[organ]
        color = np.array(ORGAN_COLORS[organ], dtype=np.float32)
        canvas[m] = (canvas[m] * (1 - alpha) + color * alpha).astype(np.uint8)
        contours, _ = cv2.findContours(m.view(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(canvas, contours, -1, ORGAN_COLORS[organ], max(1, int(round(2 * scale))), cv2.LINE_AA)
    if points is not None:
        r = point_radius if point_radius is not None else max(2, int(round(4 * scale)))
        organs = split_organs(points)
        for organ in ORGANS:
            for x, y in getattr(organs, organ):
                cv2.circle(canvas, (int(round(x)), int(round(y))), r, (255, 255, 255), -1, cv2.LINE_AA)
                cv2.circle(canvas, (int(round(x)), int(round(y))), max(1, r - 1), ORGAN_COLORS[organ], -1, cv2.LINE_AA)
    return canvas

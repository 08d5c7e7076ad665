"""Drawing on radiographs: boxes, labels and heatmaps (OpenCV, BGR uint8 canvases). Array in, array out."""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

# BGR colours, as in the ChestX-ray8 paper's figures: ground truth blue, hits green, false positives red.
BLUE, GREEN, RED, YELLOW = (255, 128, 0), (0, 200, 0), (0, 0, 230), (0, 220, 255)


def to_bgr(gray: np.ndarray) -> np.ndarray:
    """uint8 ``(H, W)`` gray -> ``(H, W, 3)`` BGR canvas (a copy)."""
    if gray.ndim == 3:
        return gray.copy()
    return cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)


def draw_boxes(
    canvas: np.ndarray,
    boxes: np.ndarray,
    labels: Sequence[str] | None = None,
    color: tuple[int, int, int] = BLUE,
    thickness: int = 3,
) -> np.ndarray:
    """Draw ``(N, 4)`` ``(x, y, w, h)`` boxes (pixels of ``canvas``) with optional text labels, in place."""
    scale = max(canvas.shape[:2]) / 1024
    for k, (x, y, w, h) in enumerate(np.asarray(boxes, dtype=float).reshape(-1, 4)):
        p1, p2 = (int(round(x)), int(round(y))), (int(round(x + w)), int(round(y + h)))
        cv2.rectangle(canvas, p1, p2, color, max(1, int(thickness * scale)), cv2.LINE_AA)
        if labels is not None:
            cv2.putText(canvas, str(labels[k]), (p1[0], max(12, p1[1] - 6)), cv2.FONT_HERSHEY_SIMPLEX,
                        0.9 * scale, color, max(1, int(2 * scale)), cv2.LINE_AA)
    return canvas


def heat_overlay(gray: np.ndarray, heatmap: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """Blend a heatmap (same H x W as ``gray``, any float range) over a gray image with the jet colormap.

    The heatmap is min-max normalized to [0, 255] first; the blend weight is ``alpha`` times the normalized
    heat (cold regions stay plain radiograph). Returns a BGR uint8 canvas.
    """
    h = np.asarray(heatmap, dtype=np.float32)
    if h.shape != gray.shape[:2]:
        raise ValueError(f"heatmap shape {h.shape} does not match image shape {gray.shape[:2]}")
    lo, hi = float(h.min()), float(h.max())
    h8 = ((h - lo) / (hi - lo) * 255).astype(np.uint8) if hi > lo else np.zeros(h.shape, np.uint8)
    color = cv2.applyColorMap(h8, cv2.COLORMAP_JET).astype(np.float32)
    # Blend in proportion to the heat, so cold regions keep the radiograph visible.
    a = (alpha * h8.astype(np.float32) / 255.0)[..., None]
    return (to_bgr(gray).astype(np.float32) * (1 - a) + color * a).round().astype(np.uint8)

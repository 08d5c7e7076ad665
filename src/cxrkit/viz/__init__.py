"""Drawing: boxes and heatmaps (:mod:`~cxrkit.viz.draw`), lungs and heart overlays (:mod:`~cxrkit.viz.overlays`),
figures and PNG files (:mod:`~cxrkit.viz.figures`; the encoder is :func:`cxrkit.io.images.encode_png`). Array in, array (or PNG bytes) out."""

from cxrkit.viz.draw import BLUE, GREEN, RED, YELLOW, draw_boxes, heat_overlay, to_bgr
from cxrkit.viz.figures import pyplot, save_figure, save_png
from cxrkit.viz.overlays import DARK_CANVAS, ORGAN_COLORS, render_overlay

__all__ = ["BLUE", "GREEN", "RED", "YELLOW", "DARK_CANVAS", "ORGAN_COLORS", "draw_boxes", "heat_overlay",
           "pyplot", "render_overlay", "save_figure", "save_png", "to_bgr"]

"""Anatomical segmentation with landmarks: training, inference to CheXmask's format."""

# The public modules of this package (import them by name: ``from cxrkit.segmentation import evaluate``).
__all__ = ["evaluate", "infer", "job", "postprocess", "rows", "train", "work"]

"""Datasets: NIH ChestX-ray14 metadata, boxes and splits; CheXmask CSVs; torch Dataset wrappers."""

# The public modules of this package (import them by name: ``from cxrkit.data import cache``).
__all__ = ["cache", "chexmask", "id_styles", "jsrt", "locate", "nih", "splits", "torch_datasets"]

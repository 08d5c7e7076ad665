"""File formats: images, CheXmask RLE and landmarks, geometry, atomic writes. No torch here."""

# The public modules of this package (import them by name: ``from cxrkit.io import atomic``).
__all__ = ["atomic", "geometry", "images", "inputs", "landmarks", "outputs", "progress", "rle", "stream_errors", "tables", "workers"]

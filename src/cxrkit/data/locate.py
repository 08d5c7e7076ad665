"""Finding NIH images on disk: the official ``images_001..012/images/`` layout or a flat folder."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from cxrkit.errors import InputError, UsageError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".dcm")


class ImageLocator:
    """Maps an image file name (``00000001_000.png``) to its path under ``root``.

    ``root`` may be a flat folder of images, the NIH download folder holding ``images_001/images``
    .. ``images_012/images``, or any tree of images (searched recursively once, at construction).
    """

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        if not self.root.is_dir():
            raise UsageError(f"{self.root}: image folder does not exist")
        self._index: dict[str, Path] = {}
        for dirpath, _dirs, files in os.walk(self.root):
            for name in files:
                if name.lower().endswith(IMAGE_SUFFIXES):
                    self._index.setdefault(name, Path(dirpath) / name)
        log.info("indexed %d images under %s", len(self._index), self.root)

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, name: str) -> bool:
        return name in self._index

    def path(self, name: str) -> Path:
        """Path of image ``name``; raises :class:`CxrkitError` naming it and the folder if absent."""
        try:
            return self._index[name]
        except KeyError:
            raise InputError(f"image {name!r} not found under {self.root}") from None

    def names(self) -> list[str]:
        return sorted(self._index)

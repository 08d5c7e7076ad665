"""Opening text tables that may be plain or gzip-compressed (detected by magic bytes, not suffix)."""

from __future__ import annotations

import gzip
import io
import os
from pathlib import Path
from typing import IO

from cxrkit.errors import UsageError

_GZIP_MAGIC = b"\x1f\x8b"


def open_text(path: str | os.PathLike, encoding: str = "utf-8") -> IO[str]:
    """Open a text file for reading, transparently decompressing gzip.

    Raises :class:`UsageError` naming the file when it does not exist (a path given on the command line).
    """
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"{p}: no such file" if not p.exists() else f"{p}: is not a file")
    with open(p, "rb") as fh:
        magic = fh.read(2)
    if magic == _GZIP_MAGIC:
        return io.TextIOWrapper(gzip.open(p, "rb"), encoding=encoding, newline="")
    return open(p, encoding=encoding, newline="")

"""Turning errors of the byte stream under a CSV reader into one-line :class:`~cxrkit.errors.CxrkitError`.

A text table (plain or gzip, see :func:`cxrkit.io.tables.open_text`) can fail below the :mod:`csv`
module: bytes that are not UTF-8, a gzip file cut short (``EOFError``) or corrupt (``BadGzipFile``,
``zlib.error``), a read error. Python reports them without the file or line. :func:`stream_error`
names both: for bad UTF-8 the exact line and byte are found by re-reading the file in binary (this
costs a pass over the file up to that line, on the error path only).
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

from cxrkit.errors import CxrkitError, one_line

__all__ = ["STREAM_ERRORS", "stream_error"]

#: What the byte stream under a text reader raises (catch these around ``next(reader)``).
STREAM_ERRORS: tuple[type[BaseException], ...] = (UnicodeDecodeError, EOFError, OSError, zlib.error)


def _first_bad_utf8(path: Path) -> tuple[int, int, int] | None:
    """``(line, column, byte)`` (1-based line and column in bytes) of the first byte of ``path`` (gunzipped
    when it is gzip) that is not UTF-8; None when none is found (or the file cannot be read that far)."""
    try:
        with open(path, "rb") as fh:
            gz = fh.read(2) == b"\x1f\x8b"
        with (gzip.open(path, "rb") if gz else open(path, "rb")) as fh:
            for number, raw in enumerate(fh, start=1):  # a UTF-8 sequence never contains b"\n"
                try:
                    raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    return number, exc.start + 1, raw[exc.start]
    except STREAM_ERRORS:
        return None
    return None


def stream_error(path: str | os.PathLike, lines_read: int, exc: BaseException) -> CxrkitError:
    """A one-line error for ``exc`` raised while reading ``path`` after ``lines_read`` complete lines."""
    if isinstance(exc, UnicodeDecodeError):
        found = _first_bad_utf8(Path(path))
        if found is not None:
            line, column, byte = found
            return CxrkitError(f"{path}: line {line}: byte 0x{byte:02x} (column {column}) is not valid UTF-8; expected a UTF-8 text file")
        return CxrkitError(f"{path}: after line {lines_read}: text is not valid UTF-8 ({exc.reason}); expected a UTF-8 text file")
    if isinstance(exc, EOFError):
        return CxrkitError(f"{path}: the gzip stream ends early, after line {lines_read} (truncated .gz file?)")
    return CxrkitError(f"{path}: unreadable after line {lines_read} ({one_line(exc)})")

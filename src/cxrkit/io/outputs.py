"""Checking output paths before work starts, and leaving nothing empty behind when it fails.

Every command that writes a file (``--out FILE``) or a folder (``--out DIR``) checks the path first, so a
mistake (a folder where a file goes, a file where a folder goes, a parent that is a file) is a one-line
:class:`~cxrkit.errors.UsageError` before any work, and :func:`output_dir` removes a folder it created when the
command fails before writing anything into it.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

from cxrkit.errors import UsageError


def _check_parents(path: Path, flag: str) -> None:
    for parent in path.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise UsageError(f"{flag} {path}: {parent} is a file, not a folder")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise UsageError(f"{flag} {path}: cannot write into {parent} (permission denied)")
            return


def check_out_file(path: str | os.PathLike, flag: str = "--out") -> Path:
    """``path`` as a file to write: not an existing folder, under a writable folder (or one that can be made)."""
    p = Path(path)
    if str(path).endswith(("/", os.sep)) or p.is_dir():
        raise UsageError(f"{flag} {path}: is a folder; this command writes a file there (give a file name)")
    _check_parents(p, flag)
    return p


def check_out_dir(path: str | os.PathLike, flag: str = "--out") -> Path:
    """``path`` as a folder to write into: not an existing file, under a writable folder."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise UsageError(f"{flag} {path}: is a file; this command writes a folder there (give a folder name)")
    if p.is_dir():
        if not os.access(p, os.W_OK | os.X_OK):
            raise UsageError(f"{flag} {path}: cannot write into this folder (permission denied)")
        return p
    _check_parents(p, flag)
    return p


@contextlib.contextmanager
def output_dir(path: str | os.PathLike, flag: str = "--out") -> Iterator[Path]:
    """Create the output folder ``path`` (checked with :func:`check_out_dir`); if the block raises and the
    folders made here are still empty, remove them again (a failed command leaves no empty folders)."""
    p = check_out_dir(path, flag)
    made: list[Path] = []
    for q in [p, *p.absolute().parents]:
        if q.exists():
            break
        made.append(q)
    p.mkdir(parents=True, exist_ok=True)
    try:
        yield p
    except BaseException:
        for q in made:  # deepest first
            try:
                q.rmdir()
            except OSError:
                break
        raise

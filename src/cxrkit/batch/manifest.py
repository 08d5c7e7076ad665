"""Batch manifests: a CSV or Parquet table with one image path per row.

The ``path`` column (another name with ``path_column``) holds PNG/JPEG/DICOM paths; relative paths are
resolved against the manifest's own folder, so a manifest and its images can be moved together. An
optional id column (``id_column``) gives each row's ``image_id``; without one it is the image's identity, its
path relative to the common parent folder of all the manifest's paths (:mod:`cxrkit.io.inputs`; for images
of one flat folder, the file name, as CheXmask's ``ImageID``). Rows keep their manifest order: row ``i`` of the manifest is ``row_index`` ``i``
of the results.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

from cxrkit.errors import InputError, UsageError, require
from cxrkit.io.atomic import write_text

log = logging.getLogger(__name__)

PARQUET_SUFFIXES = (".parquet", ".pq")


@dataclass(frozen=True)
class ManifestRow:
    """One image to process: its manifest position, resolved path and id."""

    row_index: int
    path: str
    image_id: str


@dataclass(frozen=True)
class Manifest:
    """A read manifest: where it came from and its rows in order."""

    source: Path
    rows: tuple[ManifestRow, ...]

    def __len__(self) -> int:
        return len(self.rows)

    def digest(self) -> str:
        """sha256 over the resolved paths and ids in order: identifies the work, not the file's bytes."""
        h = hashlib.sha256()
        for r in self.rows:
            h.update(r.path.encode("utf-8", "surrogateescape") + b"\0" + r.image_id.encode("utf-8", "surrogateescape") + b"\n")
        return h.hexdigest()


def _read_table(path: Path):
    import pandas as pd

    if path.suffix.lower() in PARQUET_SUFFIXES:
        require("pyarrow", "scale")
        try:
            return pd.read_parquet(path)
        except Exception as exc:  # noqa: BLE001 - pyarrow raises many types on bad files
            raise InputError(f"{path}: not a readable Parquet manifest ({exc})") from None
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise InputError(f"{path}: empty manifest (expected a CSV header with a path column)") from None
    except (UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise InputError(f"{path}: not a readable CSV manifest ({str(exc).splitlines()[0]})") from None


def read_manifest(path: str | os.PathLike, path_column: str = "path", id_column: str | None = None) -> Manifest:
    """Read a CSV or Parquet manifest (by suffix: ``.parquet``/``.pq`` is Parquet, anything else CSV).

    Raises :class:`CxrkitError` naming the file and the columns it has when ``path_column`` (or
    ``id_column``) is missing, or when the file is absent or unreadable. Empty path cells are kept: they
    become error rows in the results, like any other unreadable image.
    """
    source = Path(path).resolve()
    if not source.is_file():
        raise UsageError(f"{path}: manifest not found")
    table = _read_table(source)
    columns = [str(c) for c in table.columns]
    for what, col in (("path", path_column), ("id", id_column)):
        if col is not None and col not in columns:
            raise UsageError(f"{path}: no {what} column {col!r}; the manifest's columns are {columns} "
                              f"(choose one with --{what}-column)")
    base = source.parent
    ids = table[id_column].tolist() if id_column else None
    resolved = []
    for raw in table[path_column].tolist():
        text = "" if raw is None or (isinstance(raw, float) and math.isnan(raw)) else str(raw).strip()
        resolved.append(str(base / text) if text and not os.path.isabs(text) else text)
    root = _common_folder([p for p in resolved if p])
    rows = []
    for i, path in enumerate(resolved):
        if ids is not None and ids[i] is not None:
            image_id = str(ids[i])
        else:
            image_id = os.path.relpath(path, root).replace(os.sep, "/") if path and root else Path(path).name
        rows.append(ManifestRow(i, path, image_id))
    log.info("%s: %d rows", source, len(rows))
    return Manifest(source, tuple(rows))


def write_manifest(paths: list[str | os.PathLike], out: str | os.PathLike, path_column: str = "path") -> Path:
    """Write a one-column CSV manifest (atomically) listing ``paths`` as given; returns its path."""
    import csv
    import io


    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([path_column])
    w.writerows([str(p)] for p in paths)
    write_text(out, buf.getvalue())
    return Path(out)


def _common_folder(paths: list[str]) -> str | None:
    """The deepest folder holding every path (whether or not the files exist), or None for no paths."""
    if not paths:
        return None
    return os.path.commonpath([os.path.dirname(os.path.abspath(p)) for p in paths])

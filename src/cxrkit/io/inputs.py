"""Which images a command works on, and each image's identity.

An image's **identity** is its path relative to the *input root*, with ``/`` separators:

* one folder given: that folder (``cxrkit segment CheXpert-v1.0/`` gives ``train/patient00001/study1/view1_frontal.jpg``);
* several folders and/or files: their common parent folder (``dup/p1/img.png dup/p2/img.png`` give ``p1/img.png``
  and ``p2/img.png``; files from one flat folder give their file names, ``00000001_000.png``, as before);
* a batch manifest: its ID column, or without one the paths relative to their common parent.

Resume, de-duplication, matching masks to images, output names and ID columns all use it, so nested
datasets whose file names repeat (CheXpert's ``view1_frontal.jpg``, MIMIC-CXR's per-study folders) keep every
image. Output files mirror the input tree: ``OUT/<relative folder>/<stem>.<ext>`` (see :func:`output_stems`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Iterable, Sequence

from cxrkit.errors import InputError, UsageError

IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".dcm", ".dicom")


@dataclass(frozen=True)
class ImageInput:
    """One input image: where it is (``path``, as found) and its identity (``id``, relative to the root)."""

    path: Path
    id: str

    @property
    def name(self) -> str:
        """The file name (``view1_frontal.jpg``)."""
        return self.path.name


def common_root(paths: Iterable[str | os.PathLike]) -> Path:
    """The deepest folder containing every path (folders count as themselves, files as their parent)."""
    parents = []
    for p in paths:
        a = os.path.abspath(p)
        parents.append(a if os.path.isdir(a) else os.path.dirname(a))
    if not parents:
        raise UsageError("no input paths given")
    return Path(os.path.commonpath(parents))


def relative_id(path: str | os.PathLike, root: str | os.PathLike) -> str:
    """``path`` relative to ``root`` with ``/`` separators (the identity of :mod:`cxrkit.io.inputs`)."""
    rel = os.path.relpath(os.path.abspath(path), os.path.abspath(root))
    if rel == "." or rel.startswith(".." + os.sep) or rel == "..":
        raise InputError(f"{path}: not below the input root {root}")
    return PurePosixPath(*Path(rel).parts).as_posix()


def collect_images(items: Sequence[str | os.PathLike], suffixes: tuple[str, ...] = IMAGE_SUFFIXES
                   ) -> tuple[Path, list[ImageInput]]:
    """The input root and the images of ``items`` (files as given, folders searched recursively for
    ``suffixes``, case-insensitive), each with its identity; sorted by identity within a folder, in the order
    the items were given, each file once. A path that does not exist is a :class:`UsageError`; a folder
    without images is an :class:`InputError`."""
    if not items:
        raise UsageError("no input images or folders given")
    files: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            found = sorted((q for q in p.rglob("*") if q.suffix.lower() in suffixes and q.is_file()),
                           key=lambda q: q.relative_to(p).as_posix())
            if not found:
                raise InputError(f"{p}: no images ({', '.join(suffixes)}) in this folder or below")
            files.extend(found)
        elif p.is_file():
            files.append(p)
        elif p.exists():
            raise UsageError(f"{p}: not a file or folder")
        else:
            raise UsageError(f"{p}: no such file or folder")
    root = common_root(items)
    seen: set[str] = set()
    out: list[ImageInput] = []
    for f in files:
        key = os.path.abspath(f)
        if key in seen:
            continue
        seen.add(key)
        out.append(ImageInput(f, relative_id(f, root)))
    return root, out


def output_stems(ids: Sequence[str]) -> dict[str, str]:
    """The output stem (relative path without extension, ``/`` separators) of each identity.

    An image's outputs go to ``OUT/<its relative folder>/<stem><suffix>``. The stem is the file name without
    its extension; when several images of one folder share a stem (``chest.png``, ``chest.jpg``,
    ``chest.dcm``), each of them keeps its extension instead (``chest.png``, ``chest.jpg``, ``chest.dcm``, so
    ``chest.png.json``), whatever order they come in. Two identities never get the same stem (an
    :class:`InputError` otherwise, e.g. for ``a.png`` beside a file literally named ``a.png.png``).
    """
    by_folder_stem: dict[tuple[str, str], int] = {}
    parsed = []
    for i in ids:
        p = PurePosixPath(i)
        key = (str(p.parent), p.stem)
        by_folder_stem[key] = by_folder_stem.get(key, 0) + 1
        parsed.append((i, p, key))
    out: dict[str, str] = {}
    taken: dict[str, str] = {}
    for i, p, key in parsed:
        name = p.name if by_folder_stem[key] > 1 else p.stem
        stem = (p.parent / name).as_posix() if str(p.parent) != "." else name
        if stem in taken and taken[stem] != i:
            raise InputError(f"{i} and {taken[stem]} would write the same output files ({stem}.*); rename one")
        taken[stem] = i
        out[i] = stem
    return out

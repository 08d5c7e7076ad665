"""Finding the validation inputs (a subsets folder or explicit files) and matching physician rows to CheXmask rows."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

from cxrkit.benchmarks.chexmask_validation.common import (
    _CSV_SUFFIXES,
    _IMAGE_EXTENSIONS,
    MATCH_LEVELS,
)
from cxrkit.data.chexmask import CheXmaskRecord, iter_records
from cxrkit.errors import InputError, UsageError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ValidationInputs:
    """One dataset: its CheXmask CSV, 1 or 2 physicians' annotation CSVs (A first), an optional name mapping."""
    dataset: str
    csv: Path
    annotations: tuple[Path, ...]
    physicians: tuple[str, ...]
    name_mapping: Path | None = None

    def __post_init__(self) -> None:
        if not 1 <= len(self.annotations) <= 2:
            raise InputError(
                f"{self.csv}: expected 1 or 2 physicians' annotation files, got {len(self.annotations)}: "
                f"{', '.join(map(str, self.annotations)) or 'none'}"
            )
        if len(self.physicians) != len(self.annotations):
            raise InputError(f"{self.csv}: {len(self.physicians)} physician names for {len(self.annotations)} files")
        if len(set(self.physicians)) != len(self.physicians):
            raise InputError(f"{self.csv}: two annotation files with the same physician name {self.physicians}")


def _strip_csv(name: str) -> str | None:
    for suffix in _CSV_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return None


def _physician_name(path: Path, dataset: str) -> str:
    """``<dataset>_<who>_annotations.csv`` -> ``who``; any other file name -> its name without ``.csv``."""
    stem = _strip_csv(path.name) or path.stem
    if stem.endswith("_annotations"):
        stem = stem[: -len("_annotations")]
        if stem.startswith(dataset + "_") and len(stem) > len(dataset) + 1:
            stem = stem[len(dataset) + 1 :]
    return stem


def _check_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise UsageError(f"{path}: {what} not found")
    return path


def discover_subsets(folder: str | os.PathLike) -> list[ValidationInputs]:
    """Every ``<name>.csv`` (or ``.csv.gz``) in ``folder`` with ``<name>_<physician>_annotations.csv``
    siblings, sorted by name; physicians sorted by name (the first is A). ``<name>_name_mapping.csv``
    is used when present. An annotation file is given to the longest dataset name it starts with."""
    root = Path(folder)
    if not root.is_dir():
        raise InputError(f"{root}: not a folder; expected the CheXmask subsets folder (<name>.csv + <name>_*_annotations.csv)")
    stems: dict[str, Path] = {}
    annotation_files: list[tuple[str, Path]] = []
    for path in sorted(root.iterdir()):
        stem = _strip_csv(path.name)
        if stem is None or not path.is_file():
            continue
        if stem.endswith("_annotations"):
            annotation_files.append((stem, path))
        elif not stem.endswith("_name_mapping"):
            stems[stem] = path
    owned: dict[str, list[Path]] = {}
    for stem, path in annotation_files:
        owners = [d for d in stems if stem.startswith(d + "_") and len(stem) > len(d) + len("_annotations") + 1]
        if not owners:
            log.warning("%s: no <dataset>.csv in %s for this annotation file; ignored", path, root)
            continue
        owned.setdefault(max(owners, key=len), []).append(path)
    out: list[ValidationInputs] = []
    for name in sorted(owned):
        files = sorted(owned[name], key=lambda p: _physician_name(p, name))
        mappings = [root / f"{name}_name_mapping{s}" for s in _CSV_SUFFIXES]
        mapping = next((m for m in mappings if m.is_file()), None)
        out.append(ValidationInputs(name, stems[name], tuple(files), tuple(_physician_name(p, name) for p in files), mapping))
    if not out:
        raise InputError(f"{root}: no <name>.csv with <name>_<physician>_annotations.csv beside it")
    return out


def explicit_inputs(
    csv: str | os.PathLike,
    annotations: Sequence[str | os.PathLike],
    *,
    dataset: str | None = None,
    name_mapping: str | os.PathLike | None = None,
) -> ValidationInputs:
    """One dataset from explicit paths (dataset name: ``dataset`` or the CSV's name without ``.csv``)."""
    path = _check_file(Path(csv), "CheXmask CSV")
    files = tuple(_check_file(Path(a), "annotation CSV") for a in annotations)
    name = dataset or _strip_csv(path.name) or path.stem
    if len({f.resolve() for f in files}) != len(files):
        raise InputError(f"the same annotation file is given twice: {', '.join(map(str, files))}")
    names = tuple(_physician_name(f, name) for f in files)
    if len(set(names)) != len(names):  # e.g. two folders' a_annotations.csv
        names = tuple(f"{n}{i + 1}" for i, n in enumerate(names))
    mapping = _check_file(Path(name_mapping), "name mapping CSV") if name_mapping is not None else None
    return ValidationInputs(name, path, files, names, mapping)


def id_keys(image_id: str) -> dict[str, str]:
    """Match keys of an image id: ``id`` (as written), ``basename`` (last path component, ``/`` or
    ``\\``), ``stem`` (the basename without an image extension such as ``.png``/``.jpg``/``.dcm``)."""
    exact = image_id.strip()
    base = exact.replace("\\", "/").rsplit("/", 1)[-1]
    root, ext = os.path.splitext(base)
    return {"id": exact, "basename": base, "stem": root if ext.lower() in _IMAGE_EXTENSIONS and root else base}


@dataclass
class _Hit:
    count: int = 0
    records: list[CheXmaskRecord] = field(default_factory=list)


@dataclass(frozen=True)
class _Unmatched:
    dataset: str
    physician: str
    file: str
    line: int
    image_id: str
    reason: str


def _candidates(image_id: str, mapping: Mapping[str, str]) -> list[tuple[str, bool]]:
    """The id itself, then its name-mapped original (``True``) when the mapping lists it."""
    out = [(image_id, False)]
    for key in (image_id.strip(), id_keys(image_id)["basename"]):
        if key in mapping and mapping[key] != image_id:
            out.append((mapping[key], True))
            break
    return out


def _resolve(cands: list[tuple[str, bool]], index: dict[str, dict[str, _Hit]]) -> tuple[CheXmaskRecord | None, str]:
    """(record, how it matched) or (None, why not)."""
    for level in MATCH_LEVELS:
        for cand, mapped in cands:
            key = id_keys(cand)[level]
            hit = index[level].get(key)
            if hit is None:
                continue
            via = f"{level}+name_mapping" if mapped else level
            if hit.count == 1:
                return hit.records[0], via
            lines = ", ".join(str(r.line) for r in hit.records)
            more = ", ..." if hit.count > len(hit.records) else ""
            return None, f"ambiguous: {hit.count} CheXmask rows have the {level} {key!r} (lines {lines}{more})"
    tried = "id, basename, stem" + (" and the name-mapped id" if len(cands) > 1 else "")
    return None, f"no CheXmask row matches (tried {tried})"


def _read_annotations(path: Path) -> list[CheXmaskRecord]:
    records = list(iter_records(path))
    seen: dict[str, int] = {}
    for r in records:
        if r.image_id in seen:
            raise InputError(f"{path}:{r.line}: row {r.image_id!r}: the same image id is on line {seen[r.image_id]}")
        seen[r.image_id] = r.line
    return records

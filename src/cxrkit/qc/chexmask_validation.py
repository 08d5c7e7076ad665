"""CheXmask's technical validation, reproduced: HybridGNet masks vs two physicians, Dice RCA vs true Dice.

CheXmask (Gaggion et al. 2023) checked its HybridGNet masks on ~50 images per dataset whose masks two
physicians corrected by hand (``<Dataset>_<physician>_annotations.csv``). Per dataset and structure
(``right_lung``, ``left_lung``, ``heart``, and ``average``: the mean of the three per image) this module
computes:

* ``dice_vs_a``, ``dice_vs_b``: Dice of the HybridGNet mask with physician A's and B's;
* ``dice_a_vs_b``: Dice of the two physicians' masks (inter-observer agreement);
* ``dice_vs_ab_mean``: the mean of ``dice_vs_a`` and ``dice_vs_b`` (the "true Dice" against both);
* the Pearson and Spearman correlation of the row's ``Dice RCA (Mean)`` (the quality estimate that
  comes without ground truth; repaired where Padchest swapped Mean and Max, see
  :mod:`cxrkit.data.chexmask`) with each true Dice, and the mean absolute error ``|RCA - dice_vs_ab_mean|``.

Coordinates: every Dice is computed in CheXmask's ``size x size`` (1024) space, the image padded with
zeros to a centred square and resized (:class:`~cxrkit.io.geometry.SquareResize`). The physicians'
masks are 1024 x 1024. A CheXmask row stored at the image's own resolution (``Height x Width`` not
1024 x 1024) has its masks padded to a centred square and resized to 1024 with nearest neighbour first.

Matching: a physician row is matched to the CheXmask row with the same image id; failing that, the
same last path component (``basename``), then the same basename without an image extension (``stem``),
each only when exactly one CheXmask row has it. Ids listed in a ``<Dataset>_name_mapping.csv``
(``Original,New``: the physicians' anonymized name -> the dataset path) are also tried through the
mapping. On the real subsets every physician row matches its CheXmask row by the exact id (the
ChestX-Ray8 physician files already use the NIH ``Image Index``; the name mapping is not needed).
Physician rows that match no CheXmask row are never dropped silently: they are returned (and written)
in ``unmatched`` with the reason, and logged as warnings.

Array-first: :func:`to_square_space`, :func:`compare_masks`, :func:`pearson`, :func:`spearman` work on
numpy arrays; :func:`validate_chexmask` reads the files (streaming the CheXmask CSV, which may be
several GB; only rows some physician annotated are kept in memory).
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Mapping, Sequence

import cv2
import numpy as np

from cxrkit.data.chexmask import (
    STORED_SIZE,
    CheXmaskRecord,
    iter_records,
    read_name_mapping,
)
from cxrkit.errors import CxrkitError, UsageError
from cxrkit.io.atomic import write_text
from cxrkit.io.geometry import SquareResize
from cxrkit.io.landmarks import ORGANS
from cxrkit.metrics.segmentation import dice
from cxrkit.viz import pyplot, save_figure

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

log = logging.getLogger(__name__)

__all__ = [
    "STRUCTURES",
    "AVERAGE",
    "MATCH_LEVELS",
    "ValidationInputs",
    "ValidationResult",
    "to_square_space",
    "record_masks",
    "compare_masks",
    "pearson",
    "spearman",
    "id_keys",
    "discover_subsets",
    "explicit_inputs",
    "validate_dataset",
    "summarize",
    "validate_chexmask",
    "format_summary",
    "write_outputs",
    "plot_rca_scatter",
    "plot_dice_boxplots",
]

STRUCTURES: tuple[str, ...] = ORGANS  # ("right_lung", "left_lung", "heart")
AVERAGE = "average"  # pseudo-structure: per image, the mean of the three structures' Dice
MATCH_LEVELS: tuple[str, ...] = ("id", "basename", "stem")
METRICS: tuple[str, ...] = ("dice_vs_a", "dice_vs_b", "dice_a_vs_b", "dice_vs_ab_mean")
_IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".dcm", ".dicom", ".tif", ".tiff", ".bmp"})
_CSV_SUFFIXES = (".csv.gz", ".csv")
_MAX_KEPT_PER_KEY = 3  # CheXmask rows kept per match key (only to name them when a key is ambiguous)

Masks = Mapping[str, np.ndarray]


# ------------------------------------------------------------------------------------------------
# arrays
# ------------------------------------------------------------------------------------------------
def to_square_space(mask: np.ndarray, size: int = STORED_SIZE) -> np.ndarray:
    """Map a ``(H, W)`` mask in an image's own pixels to CheXmask's ``(size, size)`` space (bool).

    Pads to a centred square (``pad // 2`` before, the rest after) and resizes with nearest
    neighbour, as CheXmask preprocessed its images. A ``(size, size)`` mask is returned as it is.
    """
    m = np.asarray(mask)
    if m.ndim != 2:
        raise CxrkitError(f"mask must be 2-D (H, W), got shape {m.shape}")
    if m.shape == (size, size):
        return m.astype(bool, copy=False)
    tf = SquareResize(m.shape[0], m.shape[1], size)
    return tf.image_to_square(m.astype(np.uint8), interpolation=cv2.INTER_NEAREST).astype(bool)


def record_masks(record: CheXmaskRecord, size: int = STORED_SIZE) -> tuple[dict[str, np.ndarray], bool]:
    """A record's three masks in the ``(size, size)`` space, and whether they had to be mapped there."""
    masks = record.masks()
    moved = (record.height, record.width) != (size, size)
    if moved:
        masks = {organ: to_square_space(m, size) for organ, m in masks.items()}
    return masks, moved


def compare_masks(hybridgnet: Masks, physician_a: Masks | None, physician_b: Masks | None = None) -> dict[str, dict[str, float]]:
    """Dice per structure: ``{structure: {metric: value}}`` for the metrics of :data:`METRICS`.

    All masks are bool ``(H, W)`` in one pixel space (shapes must agree). A missing physician gives
    NaN for the metrics that need it. ``average`` (:data:`AVERAGE`) holds the mean over the three
    structures of each metric; ``dice_vs_ab_mean`` is the mean of ``dice_vs_a`` and ``dice_vs_b``
    (the one that exists when only one physician annotated the image).
    """
    nan = float("nan")
    out: dict[str, dict[str, float]] = {}
    for s in STRUCTURES:
        va = dice(hybridgnet[s], physician_a[s]) if physician_a is not None else nan
        vb = dice(hybridgnet[s], physician_b[s]) if physician_b is not None else nan
        ab = dice(physician_a[s], physician_b[s]) if physician_a is not None and physician_b is not None else nan
        out[s] = {"dice_vs_a": va, "dice_vs_b": vb, "dice_a_vs_b": ab, "dice_vs_ab_mean": _nanmean([va, vb])}
    out[AVERAGE] = {m: float(np.mean([out[s][m] for s in STRUCTURES])) for m in METRICS}
    return out


def _nanmean(values: Iterable[float]) -> float:
    v = [x for x in values if not math.isnan(x)]
    return float(sum(v) / len(v)) if v else float("nan")


def _pairs(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(x, dtype=np.float64).ravel(), np.asarray(y, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise CxrkitError(f"correlation needs two sequences of the same length, got {a.size} and {b.size}")
    ok = np.isfinite(a) & np.isfinite(b)
    return a[ok], b[ok]


def pearson(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> float:
    """Pearson r over the pairs where both values are finite; NaN with < 3 pairs or a constant side."""
    a, b = _pairs(x, y)
    if a.size < 3:
        return float("nan")
    da, db = a - a.mean(), b - b.mean()
    den = math.sqrt(float((da * da).sum()) * float((db * db).sum()))
    if den == 0.0:
        return float("nan")
    return float(np.clip(float((da * db).sum()) / den, -1.0, 1.0))


def _rank(v: np.ndarray) -> np.ndarray:
    """Ranks 1..n, ties given their average rank."""
    import pandas as pd

    return pd.Series(v).rank(method="average").to_numpy()


def spearman(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> float:
    """Spearman rho (Pearson r of the average ranks) over the finite pairs; NaN as for :func:`pearson`."""
    a, b = _pairs(x, y)
    return pearson(_rank(a), _rank(b)) if a.size else float("nan")


# ------------------------------------------------------------------------------------------------
# inputs
# ------------------------------------------------------------------------------------------------
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
            raise CxrkitError(
                f"{self.csv}: expected 1 or 2 physicians' annotation files, got {len(self.annotations)}: "
                f"{', '.join(map(str, self.annotations)) or 'none'}"
            )
        if len(self.physicians) != len(self.annotations):
            raise CxrkitError(f"{self.csv}: {len(self.physicians)} physician names for {len(self.annotations)} files")
        if len(set(self.physicians)) != len(self.physicians):
            raise CxrkitError(f"{self.csv}: two annotation files with the same physician name {self.physicians}")


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
        raise CxrkitError(f"{root}: not a folder; expected the CheXmask subsets folder (<name>.csv + <name>_*_annotations.csv)")
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
        raise CxrkitError(f"{root}: no <name>.csv with <name>_<physician>_annotations.csv beside it")
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
        raise CxrkitError(f"the same annotation file is given twice: {', '.join(map(str, files))}")
    names = tuple(_physician_name(f, name) for f in files)
    if len(set(names)) != len(names):  # e.g. two folders' a_annotations.csv
        names = tuple(f"{n}{i + 1}" for i, n in enumerate(names))
    mapping = _check_file(Path(name_mapping), "name mapping CSV") if name_mapping is not None else None
    return ValidationInputs(name, path, files, names, mapping)


# ------------------------------------------------------------------------------------------------
# matching and per-image Dice
# ------------------------------------------------------------------------------------------------
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
            raise CxrkitError(f"{path}:{r.line}: row {r.image_id!r}: the same image id is on line {seen[r.image_id]}")
        seen[r.image_id] = r.line
    return records


def validate_dataset(
    inputs: ValidationInputs, *, size: int = STORED_SIZE, progress: bool = False
) -> tuple[list[dict[str, object]], list[_Unmatched]]:
    """Per-image rows (long format: one per image and structure) and the unmatched physician rows."""
    from tqdm.auto import tqdm

    mapping = read_name_mapping(inputs.name_mapping) if inputs.name_mapping is not None else {}
    roles = ("a", "b")[: len(inputs.annotations)]
    physician_rows = {role: _read_annotations(path) for role, path in zip(roles, inputs.annotations)}
    wanted: dict[str, set[str]] = {level: set() for level in MATCH_LEVELS}
    for rows in physician_rows.values():
        for r in rows:
            for cand, _ in _candidates(r.image_id, mapping):
                for level, key in id_keys(cand).items():
                    wanted[level].add(key)

    # One streaming pass over the (possibly huge) CheXmask CSV: keep only rows some physician may mean.
    index: dict[str, dict[str, _Hit]] = {level: {} for level in MATCH_LEVELS}
    n_rows = 0
    for rec in tqdm(iter_records(inputs.csv), desc=f"scan {inputs.dataset}", unit="row", disable=not progress, leave=False):
        n_rows += 1
        for level, key in id_keys(rec.image_id).items():
            if key in wanted[level]:
                hit = index[level].setdefault(key, _Hit())
                hit.count += 1
                if len(hit.records) < _MAX_KEPT_PER_KEY:
                    hit.records.append(rec)

    matched: dict[int, dict[str, object]] = {}  # CheXmask line -> {"record", "a": (rec, via), "b": ...}
    unmatched: list[_Unmatched] = []
    for role, physician, path in zip(roles, inputs.physicians, inputs.annotations):
        for prec in physician_rows[role]:
            record, how = _resolve(_candidates(prec.image_id, mapping), index)
            if record is None:
                unmatched.append(_Unmatched(inputs.dataset, physician, str(path), prec.line, prec.image_id, how))
                continue
            slot = matched.setdefault(record.line, {"record": record})
            if role in slot:
                first = slot[role][0]  # type: ignore[index]
                unmatched.append(_Unmatched(
                    inputs.dataset, physician, str(path), prec.line, prec.image_id,
                    f"duplicate: line {first.line} ({first.image_id!r}) of this file already matches CheXmask "
                    f"line {record.line} ({record.image_id!r})",
                ))
                continue
            slot[role] = (prec, how)
    for u in unmatched:
        log.warning("%s:%d: physician %s's row %r not used: %s", u.file, u.line, u.physician, u.image_id, u.reason)

    rows: list[dict[str, object]] = []
    for line in tqdm(sorted(matched), desc=f"Dice {inputs.dataset}", unit="image", disable=not progress, leave=False):
        slot = matched[line]
        record: CheXmaskRecord = slot["record"]  # type: ignore[assignment]
        hg, moved = record_masks(record, size)
        phys: dict[str, dict[str, np.ndarray] | None] = {}
        for role in ("a", "b"):
            if role in slot:
                prec = slot[role][0]  # type: ignore[index]
                phys[role] = record_masks(prec, size)[0]
            else:
                phys[role] = None
        scores = compare_masks(hg, phys["a"], phys["b"])
        base = {
            "dataset": inputs.dataset,
            "image_id": record.image_id,
            "physician_a": inputs.physicians[0],
            "physician_b": inputs.physicians[1] if len(inputs.physicians) > 1 else "",
            "chexmask_line": record.line,
            "line_a": slot["a"][0].line if "a" in slot else None,  # type: ignore[index]
            "line_b": slot["b"][0].line if "b" in slot else None,  # type: ignore[index]
            "match_a": slot["a"][1] if "a" in slot else "",  # type: ignore[index]
            "match_b": slot["b"][1] if "b" in slot else "",  # type: ignore[index]
            "height": record.height,
            "width": record.width,
            "resized": moved,
            "dice_rca_mean": record.dice_mean,
            "dice_rca_max": record.dice_max,
            "dice_swapped": record.dice_swapped,
        }
        for structure, values in scores.items():
            rows.append({**base, "structure": structure, **values})
    log.info("%s: %d CheXmask rows scanned, %d images matched, %d physician rows unmatched",
             inputs.dataset, n_rows, len(matched), len(unmatched))
    return rows, unmatched


# ------------------------------------------------------------------------------------------------
# summary
# ------------------------------------------------------------------------------------------------
PER_IMAGE_COLUMNS: tuple[str, ...] = (
    "dataset", "image_id", "structure", "physician_a", "physician_b", "chexmask_line", "line_a", "line_b",
    "match_a", "match_b", "height", "width", "resized", "dice_rca_mean", "dice_rca_max", "dice_swapped", *METRICS,
)
UNMATCHED_COLUMNS: tuple[str, ...] = ("dataset", "physician", "file", "line", "image_id", "reason")
_TRUE = {"a": "dice_vs_a", "b": "dice_vs_b", "ab_mean": "dice_vs_ab_mean"}


def _one(values: Iterable[object]) -> str:
    v = sorted({str(x) for x in values if str(x)})
    return v[0] if len(v) == 1 else ("mixed" if v else "")


def _summary_row(df: "pd.DataFrame", dataset: str, structure: str) -> dict[str, object]:
    row: dict[str, object] = {
        "dataset": dataset,
        "structure": structure,
        "n": len(df),
        "n_a": int(df["dice_vs_a"].notna().sum()),
        "n_b": int(df["dice_vs_b"].notna().sum()),
        "physician_a": _one(df["physician_a"]),
        "physician_b": _one(df["physician_b"]),
    }
    for m in METRICS:
        v = df[m].to_numpy(dtype=np.float64)
        v = v[np.isfinite(v)]
        row[f"{m}_mean"] = float(v.mean()) if v.size else float("nan")
        row[f"{m}_std"] = float(v.std(ddof=1)) if v.size > 1 else float("nan")
        row[f"{m}_median"] = float(np.median(v)) if v.size else float("nan")
        row[f"{m}_min"] = float(v.min()) if v.size else float("nan")
    rca = df["dice_rca_mean"].to_numpy(dtype=np.float64)
    row["n_rca"] = int(np.isfinite(rca).sum())
    row["dice_rca_mean_mean"] = float(np.nanmean(rca)) if row["n_rca"] else float("nan")
    for key, col in _TRUE.items():
        row[f"pearson_rca_vs_{key}"] = pearson(rca, df[col].to_numpy(dtype=np.float64))
    for key, col in _TRUE.items():
        row[f"spearman_rca_vs_{key}"] = spearman(rca, df[col].to_numpy(dtype=np.float64))
    a, b = _pairs(rca, df["dice_vs_ab_mean"].to_numpy(dtype=np.float64))
    row["mae_rca_vs_ab_mean"] = float(np.abs(a - b).mean()) if a.size else float("nan")
    return row


def summarize(per_image: "pd.DataFrame") -> "pd.DataFrame":
    """Per dataset x structure, plus an ``all`` dataset row per structure (all images pooled).

    Columns: ``n`` (images), ``n_a``/``n_b`` (with each physician), ``<metric>_mean|_std|_median|_min``
    for the metrics of :data:`METRICS`, ``dice_rca_mean_mean``, ``pearson_rca_vs_{a,b,ab_mean}``,
    ``spearman_rca_vs_{a,b,ab_mean}`` (``Dice RCA (Mean)`` against the true Dice; NaN with < 3 pairs)
    and ``mae_rca_vs_ab_mean``.
    """
    import pandas as pd

    rows = []
    datasets = list(dict.fromkeys(per_image["dataset"])) if len(per_image) else []
    for structure in (*STRUCTURES, AVERAGE):
        sub = per_image[per_image["structure"] == structure] if len(per_image) else per_image
        for name in datasets:
            rows.append(_summary_row(sub[sub["dataset"] == name], name, structure))
        if len(datasets):
            rows.append(_summary_row(sub, "all", structure))
    return pd.DataFrame(rows)


@dataclass
class ValidationResult:
    """What :func:`validate_chexmask` computed; ``unmatched`` lists physician rows not used, with the reason."""
    per_image: "pd.DataFrame"
    summary: "pd.DataFrame"
    unmatched: "pd.DataFrame"
    inputs: list[ValidationInputs]
    outputs: dict[str, Path] = field(default_factory=dict)

    def matched_images(self) -> dict[str, int]:
        """Images per dataset with at least one physician's mask."""
        sub = self.per_image[self.per_image["structure"] == AVERAGE]
        return {i.dataset: int((sub["dataset"] == i.dataset).sum()) for i in self.inputs}


def _resolve_inputs(
    subsets_dir_or_csvs: str | os.PathLike | ValidationInputs | Sequence[str | os.PathLike | ValidationInputs],
    annotations: Sequence[str | os.PathLike] | None,
    dataset: str | None,
    name_mapping: str | os.PathLike | None,
) -> list[ValidationInputs]:
    single = isinstance(subsets_dir_or_csvs, (str, os.PathLike, ValidationInputs))
    items = [subsets_dir_or_csvs] if single else list(subsets_dir_or_csvs)  # type: ignore[arg-type]
    if not items:
        raise CxrkitError("nothing to validate: give a subsets folder or a CheXmask CSV with its annotation files")
    if annotations:
        if len(items) != 1 or isinstance(items[0], ValidationInputs) or Path(items[0]).is_dir():
            raise CxrkitError("annotation files go with exactly one CheXmask CSV (not a folder or several CSVs)")
        return [explicit_inputs(items[0], annotations, dataset=dataset, name_mapping=name_mapping)]
    out: list[ValidationInputs] = []
    for item in items:
        if isinstance(item, ValidationInputs):
            out.append(item)
            continue
        path = Path(item)
        if path.is_dir():
            out.extend(discover_subsets(path))
            continue
        _check_file(path, "CheXmask CSV")
        name = _strip_csv(path.name) or path.stem
        try:
            found = [i for i in discover_subsets(path.parent) if i.csv.name == path.name]
        except CxrkitError:
            found = []
        if not found:
            raise CxrkitError(f"{path}: no {name}_<physician>_annotations.csv beside it; pass the annotation files explicitly")
        out.extend(found)
    names = [i.dataset for i in out]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise CxrkitError(f"dataset name(s) given twice: {', '.join(dup)}")
    return out


def validate_chexmask(
    subsets_dir_or_csvs: str | os.PathLike | ValidationInputs | Sequence[str | os.PathLike | ValidationInputs],
    *,
    annotations: Sequence[str | os.PathLike] | None = None,
    dataset: str | None = None,
    name_mapping: str | os.PathLike | None = None,
    out: str | os.PathLike | None = None,
    plots: bool = True,
    size: int = STORED_SIZE,
    progress: bool = False,
) -> ValidationResult:
    """Reproduce CheXmask's technical validation on CheXmask CSV(s) with physicians' annotation files.

    ``subsets_dir_or_csvs``: a folder (every ``<name>.csv`` with ``<name>_*_annotations.csv``
    siblings, see :func:`discover_subsets`), CSV path(s) whose siblings are found the same way, or
    :class:`ValidationInputs`; or one CSV with explicit ``annotations`` (1 or 2 files, A first;
    ``dataset`` names it, default the file name). ``size``: side of the square space compared in
    (pixels; CheXmask's 1024). With ``out``, writes ``per_image.csv``, ``summary.csv``,
    ``unmatched.csv`` and (``plots``) ``rca_vs_true_dice.png`` and ``dice_boxplots.png`` atomically.
    Bad files or rows raise :class:`CxrkitError` naming the file and line.
    """
    import pandas as pd

    inputs = _resolve_inputs(subsets_dir_or_csvs, annotations, dataset, name_mapping)
    rows: list[dict[str, object]] = []
    unmatched: list[_Unmatched] = []
    for item in inputs:
        r, u = validate_dataset(item, size=size, progress=progress)
        rows.extend(r)
        unmatched.extend(u)
    per_image = pd.DataFrame(rows, columns=list(PER_IMAGE_COLUMNS))
    for col in ("line_a", "line_b"):
        per_image[col] = per_image[col].astype("Int64")
    result = ValidationResult(
        per_image=per_image,
        summary=summarize(per_image),
        unmatched=pd.DataFrame([u.__dict__ for u in unmatched], columns=list(UNMATCHED_COLUMNS)),
        inputs=inputs,
    )
    if out is not None:
        result.outputs = write_outputs(result, out, plots=plots)
    return result


# ------------------------------------------------------------------------------------------------
# output
# ------------------------------------------------------------------------------------------------
def _pm(mean: float, std: float) -> str:
    if math.isnan(mean):
        return "-"
    return f"{mean:.3f}" + (f"±{std:.3f}" if not math.isnan(std) else "")


def _r(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:+.2f}"


def format_summary(summary: "pd.DataFrame") -> str:
    """A readable fixed-width table of :func:`summarize`'s output (Dice as mean±sd; r = Pearson,
    rho = Spearman of ``Dice RCA (Mean)`` with the true Dice)."""
    if summary.empty:
        return "no matched images"
    phys_a, phys_b = _one(summary["physician_a"]), _one(summary["physician_b"])
    head = (f"{'dataset':<15} {'structure':<10} {'n':>4}  {'HG vs A':>12} {'HG vs B':>12} {'A vs B':>12}  "
            f"{'RCA':>5}  {'r(A)':>5} {'r(B)':>5} {'r(AB)':>5} {'rho(AB)':>7} {'MAE':>5}")
    legend = (f"A = {phys_a or '-'}, B = {phys_b or '-'}; HG = HybridGNet (CheXmask); Dice mean±sd in the 1024 space; "
              "RCA = mean Dice RCA (Mean); r/rho = Pearson/Spearman of Dice RCA (Mean) with the true Dice "
              "vs A, vs B, vs the mean of both (AB); MAE = mean |RCA - Dice vs AB|")
    lines = [legend, head, "-" * len(head)]
    last = None
    for row in summary.itertuples(index=False):
        if last is not None and row.structure != last:
            lines.append("")
        last = row.structure
        lines.append(
            f"{row.dataset:<15} {row.structure:<10} {row.n:>4}  "
            f"{_pm(row.dice_vs_a_mean, row.dice_vs_a_std):>12} {_pm(row.dice_vs_b_mean, row.dice_vs_b_std):>12} "
            f"{_pm(row.dice_a_vs_b_mean, row.dice_a_vs_b_std):>12}  "
            f"{'-' if math.isnan(row.dice_rca_mean_mean) else f'{row.dice_rca_mean_mean:.3f}':>5}  "
            f"{_r(row.pearson_rca_vs_a):>5} {_r(row.pearson_rca_vs_b):>5} {_r(row.pearson_rca_vs_ab_mean):>5} "
            f"{_r(row.spearman_rca_vs_ab_mean):>7} "
            f"{'-' if math.isnan(row.mae_rca_vs_ab_mean) else f'{row.mae_rca_vs_ab_mean:.3f}':>5}"
        )
    return "\n".join(lines)


def write_outputs(result: ValidationResult, out: str | os.PathLike, *, plots: bool = True) -> dict[str, Path]:
    """Write ``per_image.csv``, ``summary.csv``, ``unmatched.csv`` and the plots into ``out`` (atomically)."""
    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise CxrkitError(f"{folder}: exists and is not a folder")
    folder.mkdir(parents=True, exist_ok=True)
    paths = {
        "per_image": folder / "per_image.csv",
        "summary": folder / "summary.csv",
        "unmatched": folder / "unmatched.csv",
    }
    write_text(paths["per_image"], result.per_image.to_csv(index=False, float_format="%.6f", lineterminator="\n"))
    write_text(paths["summary"], result.summary.to_csv(index=False, float_format="%.6f", lineterminator="\n"))
    write_text(paths["unmatched"], result.unmatched.to_csv(index=False, lineterminator="\n"))
    if plots and len(result.per_image):
        paths["scatter"] = folder / "rca_vs_true_dice.png"
        paths["boxplots"] = folder / "dice_boxplots.png"
        plot_rca_scatter(result.per_image, paths["scatter"])
        plot_dice_boxplots(result.per_image, paths["boxplots"])
    log.info("wrote %s", ", ".join(str(p) for p in paths.values()))
    return paths


def plot_rca_scatter(per_image: "pd.DataFrame", path: str | os.PathLike, true_column: str = "dice_vs_ab_mean") -> None:
    """Scatter of ``Dice RCA (Mean)`` (y) against the true Dice (x, default vs the mean of both
    physicians), one panel per structure and ``average``, coloured by dataset; dashed: y = x."""
    plt = pyplot()
    panels = (*STRUCTURES, AVERAGE)
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.3), squeeze=False)
    datasets = list(dict.fromkeys(per_image["dataset"]))
    cmap = plt.get_cmap("tab10")
    for ax, structure in zip(axes[0], panels):
        sub = per_image[per_image["structure"] == structure]
        for k, name in enumerate(datasets):
            d = sub[sub["dataset"] == name]
            ax.scatter(d[true_column], d["dice_rca_mean"], s=14, alpha=0.75, color=cmap(k % 10), label=name)
        x = sub[true_column].to_numpy(dtype=float)
        y = sub["dice_rca_mean"].to_numpy(dtype=float)
        finite = np.concatenate([x[np.isfinite(x)], y[np.isfinite(y)]])
        lo = min(0.5, float(finite.min())) if finite.size else 0.5
        ax.plot([lo, 1], [lo, 1], "k--", lw=0.8)
        ax.set_xlim(lo - 0.01, 1.005)
        ax.set_ylim(lo - 0.01, 1.005)
        ax.set_title(f"{structure} (r={_r(pearson(y, x))}, n={int(np.isfinite(x).sum())})", fontsize=10)
        ax.set_xlabel(f"true Dice ({true_column})")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("Dice RCA (Mean)")
    axes[0][0].legend(fontsize=7, loc="lower right")
    fig.suptitle("CheXmask: RCA quality estimate vs Dice with the physicians' masks")
    save_figure(fig, path)


def plot_dice_boxplots(per_image: "pd.DataFrame", path: str | os.PathLike) -> None:
    """Per-dataset Dice boxplots, one panel per structure: HybridGNet vs A, vs B, and A vs B."""
    plt = pyplot()
    datasets = list(dict.fromkeys(per_image["dataset"]))
    kinds = (("dice_vs_a", "HG vs A", "#4c72b0"), ("dice_vs_b", "HG vs B", "#55a868"), ("dice_a_vs_b", "A vs B", "#c44e52"))
    fig, axes = plt.subplots(1, len(STRUCTURES), figsize=(5.5 * len(STRUCTURES), 4.5), squeeze=False, sharey=True)
    width = 0.25
    for ax, structure in zip(axes[0], STRUCTURES):
        sub = per_image[per_image["structure"] == structure]
        for k, (col, label, color) in enumerate(kinds):
            data, pos = [], []
            for i, name in enumerate(datasets):
                v = sub.loc[sub["dataset"] == name, col].to_numpy(dtype=float)
                v = v[np.isfinite(v)]
                if v.size:
                    data.append(v)
                    pos.append(i + (k - 1) * width)
            if data:
                bp = ax.boxplot(data, positions=pos, widths=width * 0.9, patch_artist=True, showfliers=True,
                                flierprops={"markersize": 3})
                for box in bp["boxes"]:
                    box.set_facecolor(color)
                    box.set_alpha(0.7)
            ax.plot([], [], color=color, lw=6, alpha=0.7, label=label)
        ax.set_xticks(range(len(datasets)))
        ax.set_xticklabels(datasets, rotation=30, ha="right", fontsize=8)
        ax.set_title(structure)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel("Dice (1024 space)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="upper right", ncol=len(kinds))
    fig.suptitle("CheXmask technical validation: Dice per dataset")
    save_figure(fig, path)

"""Per-image Dice against the physicians, per-dataset summaries, the whole validation run."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cxrkit.benchmarks.chexmask_validation.common import (
    _MAX_KEPT_PER_KEY,
    AVERAGE,
    MATCH_LEVELS,
    METRICS,
    STRUCTURES,
    _one,
    compare_masks,
    record_masks,
)
from cxrkit.benchmarks.chexmask_validation.inputs import (
    ValidationInputs,
    _candidates,
    _Hit,
    _read_annotations,
    _resolve,
    _Unmatched,
    id_keys,
)
from cxrkit.data.chexmask import (
    STORED_SIZE,
    CheXmaskRecord,
    iter_records,
    read_name_mapping,
)
from cxrkit.metrics.stats import paired, pearson, spearman

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

log = logging.getLogger(__name__)


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


PER_IMAGE_COLUMNS: tuple[str, ...] = (
    "dataset", "image_id", "structure", "physician_a", "physician_b", "chexmask_line", "line_a", "line_b",
    "match_a", "match_b", "height", "width", "resized", "dice_rca_mean", "dice_rca_max", "dice_swapped", *METRICS,
)
UNMATCHED_COLUMNS: tuple[str, ...] = ("dataset", "physician", "file", "line", "image_id", "reason")
_TRUE = {"a": "dice_vs_a", "b": "dice_vs_b", "ab_mean": "dice_vs_ab_mean"}


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
    a, b = paired(rca, df["dice_vs_ab_mean"].to_numpy(dtype=np.float64))
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

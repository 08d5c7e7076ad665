"""Running CheXmask's technical validation end to end: inputs, per-image Dice, summary, outputs."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from cxrkit.benchmarks.chexmask_validation.inputs import (
    ValidationInputs,
    _check_file,
    _strip_csv,
    _Unmatched,
    discover_subsets,
    explicit_inputs,
)
from cxrkit.benchmarks.chexmask_validation.report import write_outputs
from cxrkit.benchmarks.chexmask_validation.validate import (
    PER_IMAGE_COLUMNS,
    UNMATCHED_COLUMNS,
    ValidationResult,
    summarize,
    validate_dataset,
)
from cxrkit.data.chexmask import STORED_SIZE
from cxrkit.errors import CxrkitError, InputError

if TYPE_CHECKING:  # pragma: no cover
    pass

log = logging.getLogger(__name__)


def _resolve_inputs(
    subsets_dir_or_csvs: str | os.PathLike | ValidationInputs | Sequence[str | os.PathLike | ValidationInputs],
    annotations: Sequence[str | os.PathLike] | None,
    dataset: str | None,
    name_mapping: str | os.PathLike | None,
) -> list[ValidationInputs]:
    single = isinstance(subsets_dir_or_csvs, (str, os.PathLike, ValidationInputs))
    items = [subsets_dir_or_csvs] if single else list(subsets_dir_or_csvs)  # type: ignore[arg-type]
    if not items:
        raise InputError("nothing to validate: give a subsets folder or a CheXmask CSV with its annotation files")
    if annotations:
        if len(items) != 1 or isinstance(items[0], ValidationInputs) or Path(items[0]).is_dir():
            raise InputError("annotation files go with exactly one CheXmask CSV (not a folder or several CSVs)")
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
            raise InputError(f"{path}: no {name}_<physician>_annotations.csv beside it; pass the annotation files explicitly")
        out.extend(found)
    names = [i.dataset for i in out]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise InputError(f"dataset name(s) given twice: {', '.join(dup)}")
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

"""CheXmask CSVs (Gaggion et al. 2023): a streaming reader (:mod:`~cxrkit.data.chexmask.reader`), Dice filtering
and summaries (:mod:`~cxrkit.data.chexmask.filters`), the NIH join (:mod:`~cxrkit.data.chexmask.join`) and mask
export (:mod:`~cxrkit.data.chexmask.export`). Drawing overlays lives in :mod:`cxrkit.viz.overlays`.
"""

from cxrkit.data.chexmask.export import (
    mask_paths,
    safe_filename,
    write_mask_arrays,
    write_masks,
)
from cxrkit.data.chexmask.filters import (
    STRUCTURE_CHOICES,
    FilterSummary,
    dice_reject_reason,
    filter_csv,
    parse_structure_thresholds,
    structure_dice_column,
    summarize_csv,
)
from cxrkit.data.chexmask.join import (
    NihJoined,
    image_basename,
    join_nih,
    read_name_mapping,
    records_frame,
)
from cxrkit.data.chexmask.reader import (
    DEFAULT_MIN_DICE,
    ID_COLUMNS,
    STORED_SIZE,
    CheXmaskRecord,
    Columns,
    RowError,
    find_record,
    iter_chunks,
    iter_records,
    iter_rows,
    read_columns,
)

__all__ = [
    "DEFAULT_MIN_DICE", "ID_COLUMNS", "STORED_SIZE", "STRUCTURE_CHOICES", "CheXmaskRecord", "Columns", "FilterSummary",
    "NihJoined", "RowError", "dice_reject_reason", "filter_csv", "find_record", "image_basename", "iter_chunks",
    "iter_records", "iter_rows", "join_nih", "mask_paths", "parse_structure_thresholds", "read_columns",
    "read_name_mapping", "records_frame", "safe_filename", "structure_dice_column", "summarize_csv",
    "write_mask_arrays", "write_masks",
]

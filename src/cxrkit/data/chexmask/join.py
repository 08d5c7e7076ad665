"""Joining CheXmask rows with NIH metadata, records as a DataFrame, the physicians' name mapping."""

from __future__ import annotations

import csv
import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Literal

from cxrkit.errors import InputError
from cxrkit.io.stream_errors import STREAM_ERRORS, stream_error
from cxrkit.io.tables import open_text

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

log = logging.getLogger(__name__)

from cxrkit.data.chexmask.reader import CheXmaskRecord, RowError


@dataclass(frozen=True)
class NihJoined:
    """A CheXmask record with its NIH metadata row (``nih`` is None when unmatched, with ``how='left'``)."""

    record: CheXmaskRecord
    nih: dict[str, Any] | None


def _nih_table(nih: "pd.DataFrame") -> "pd.DataFrame":
    if nih.index.name == "Image Index":
        table = nih
    elif "Image Index" in nih.columns:
        table = nih.set_index("Image Index", drop=False)
    else:
        raise InputError(
            "NIH metadata needs an 'Image Index' column or index; got columns "
            f"{', '.join(map(str, nih.columns))}"
        )
    if not table.index.is_unique:
        dup = table.index[table.index.duplicated()][:3].tolist()
        raise InputError(f"NIH metadata has duplicate 'Image Index' values, e.g. {dup}")
    return table


def image_basename(image_id: str) -> str:
    """The file name of an image id (after the last ``/`` or ``\\``): NIH's ``Image Index`` for ChestX-ray8."""
    return image_id.replace("\\", "/").rsplit("/", 1)[-1]


def join_nih(
    records: Iterable[CheXmaskRecord | RowError],
    nih: "pd.DataFrame",
    *,
    how: Literal["inner", "left"] = "inner",
    chunksize: int = 1000,
    key=image_basename,
) -> Iterator[NihJoined | RowError]:
    """Join CheXmask records with NIH metadata on ``Image Index`` (streaming, in chunks).

    ``nih`` is a DataFrame with an ``Image Index`` column or index (e.g. from
    ``cxrkit.data.nih``). ``key`` maps a CheXmask id to an NIH image index (default: the file name
    after the last ``/``, so ``images_001/images/00000001_000.png`` matches too). With
    ``how="inner"`` unmatched records are left out and their count is logged as a warning; with
    ``how="left"`` they are yielded with ``nih=None``. :class:`RowError` items pass through.
    """
    if how not in ("inner", "left"):
        raise InputError(f"how must be 'inner' or 'left', got {how!r}")
    table = _nih_table(nih)
    unmatched = total = 0
    first_unmatched: str | None = None

    def flush(chunk: list[CheXmaskRecord | RowError]) -> Iterator[NihJoined | RowError]:
        nonlocal unmatched, first_unmatched
        recs = [r for r in chunk if not isinstance(r, RowError)]
        found = table.index.get_indexer([key(r.image_id) for r in recs]).tolist() if recs else []
        positions = iter(found)
        hits = [p for p in found if p >= 0]
        rows = iter(table.iloc[hits].to_dict("records")) if hits else iter(())
        for item in chunk:  # input order is kept, errors included
            if isinstance(item, RowError):
                yield item
                continue
            if next(positions) >= 0:
                yield NihJoined(item, next(rows))
            else:
                unmatched += 1
                first_unmatched = first_unmatched or item.image_id
                if how == "left":
                    yield NihJoined(item, None)

    chunk: list[CheXmaskRecord | RowError] = []
    for item in records:
        total += not isinstance(item, RowError)
        chunk.append(item)
        if len(chunk) >= chunksize:
            yield from flush(chunk)
            chunk = []
    if chunk:
        yield from flush(chunk)
    if unmatched:
        log.warning(
            "%d of %d CheXmask rows have no NIH metadata (first: %r)%s",
            unmatched, total, first_unmatched, "; left out (how='inner')" if how == "inner" else "",
        )


def records_frame(records: Iterable[CheXmaskRecord | RowError]) -> "pd.DataFrame":
    """Scalar columns of the records (no masks) as a DataFrame; RowErrors raise."""
    import pandas as pd

    rows = []
    for r in records:
        if isinstance(r, RowError):
            raise InputError(str(r))
        rows.append(
            {
                "image_id": r.image_id,
                "dice_mean": r.dice_mean,
                "dice_max": r.dice_max,
                "height": r.height,
                "width": r.width,
                "dataset": r.dataset,
                "dice_swapped": r.dice_swapped,
                "source": r.source,
                "line": r.line,
            }
        )
    return pd.DataFrame(rows, columns=["image_id", "dice_mean", "dice_max", "height", "width", "dataset",
                                       "dice_swapped", "source", "line"])


def read_name_mapping(path: str | os.PathLike) -> dict[str, str]:
    """Read a CheXmask ``*_name_mapping.csv`` (``Original,New``): ``{new name: original file name}``.

    The physicians annotated anonymized copies (``image_1.png``); ``Original`` is the dataset path,
    whose last component is the NIH ``Image Index`` for ChestX-ray8.
    """
    out: dict[str, str] = {}
    with open_text(path, encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        try:
            if reader.fieldnames is None or not {"Original", "New"} <= set(reader.fieldnames):
                raise InputError(f"{path}: expected columns Original,New; got {reader.fieldnames}")
            for row in reader:
                if row["New"] is None or row["Original"] is None:  # a short row
                    raise InputError(f"{path}:{reader.line_num}: expected 2 fields Original,New; got {list(v for v in row.values() if v is not None)}")
                out[row["New"].strip()] = image_basename(row["Original"].strip())
        except STREAM_ERRORS as exc:
            raise stream_error(str(path), reader.line_num, exc) from None
        except csv.Error as exc:
            raise InputError(f"{path}:{reader.line_num + 1}: unreadable CSV row: {exc}") from None
    return out

"""Writing labels: CheXpert-style and NIH-style CSV, and JSON with evidence, streamed and atomic.

Rows are written as they are labeled to temporary files beside the targets, which replace the
targets only when the whole input has been processed (:func:`cxrkit.io.atomic.atomic_open`), so a
crash never leaves a half-written output.

CheXpert style: ``<id>, <14 findings>, No Finding, status``; cells ``1`` (positive), ``0``
(negative), ``-1`` (uncertain) or empty (not mentioned); a row that could not be labeled has empty
cells and the reason in ``status``. NIH style: ``<id>, Finding Labels, status`` with the positive
findings joined by ``|`` or ``No Finding``.
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Callable, Iterable, Iterator

from cxrkit.findings import FINDINGS, NO_FINDING
from cxrkit.io.atomic import atomic_open
from cxrkit.reports.io import DEFAULT_XML_SECTIONS, count_reports, iter_reports
from cxrkit.reports.labeler import Labeler, ReportLabels, empty_labels

log = logging.getLogger(__name__)

__all__ = ["STYLES", "header", "row", "LabelSummary", "label_file", "iter_labeled"]

STYLES: tuple[str, ...] = ("chexpert", "nih")


def _cell(value: int | None) -> str:
    return "" if value is None else str(int(value))


def header(style: str, id_column: str = "id") -> list[str]:
    """CSV header for ``style`` (``chexpert`` or ``nih``)."""
    if style == "chexpert":
        return [id_column, *FINDINGS, NO_FINDING, "status"]
    if style == "nih":
        return [id_column, "Finding Labels", "status"]
    raise ValueError(f"unknown style {style!r}; expected one of {', '.join(STYLES)}")


def row(result: ReportLabels, style: str) -> list[str]:
    """CSV row for one result in ``style``."""
    if style == "chexpert":
        cells = ["" for _ in range(len(FINDINGS) + 1)] if not result.ok else [_cell(result.labels[n]) for n in (*FINDINGS, NO_FINDING)]
        return [result.id, *cells, result.status]
    if style == "nih":
        return [result.id, result.nih_labels(), result.status]
    raise ValueError(f"unknown style {style!r}; expected one of {', '.join(STYLES)}")


@dataclass
class LabelSummary:
    """What :func:`label_file` did: counts of reports, of rows with a status, and positives per finding."""

    reports: int = 0
    with_status: int = 0
    positives: dict[str, int] = field(default_factory=lambda: {f: 0 for f in FINDINGS})
    uncertain: dict[str, int] = field(default_factory=lambda: {f: 0 for f in FINDINGS})
    seconds: float = 0.0

    def add(self, result: ReportLabels) -> None:
        self.reports += 1
        if not result.ok:
            self.with_status += 1
            return
        for f in FINDINGS:
            v = result.labels[f]
            if v == 1:
                self.positives[f] += 1
            elif v == -1:
                self.uncertain[f] += 1


def iter_labeled(
    source: str | os.PathLike,
    labeler: Labeler,
    *,
    id_column: str = "id",
    text_column: str = "text",
    encoding: str = "utf-8",
) -> Iterator[ReportLabels]:
    """Read ``source`` lazily (:func:`~cxrkit.reports.io.iter_reports`) and label each report in order."""
    xml_sections = tuple(sorted(labeler.sections)) if labeler.sections is not None else DEFAULT_XML_SECTIONS
    for item in iter_reports(
        source,
        id_column=id_column,
        text_column=text_column,
        encoding=encoding,
        xml_sections=xml_sections,
        section_rules=labeler.rules.sections,
    ):
        if item.status:
            log.debug("%s: not labeled: %s", item.source, item.status)
            yield ReportLabels(item.id, empty_labels(), status=item.status, text=item.text or "")
        else:
            yield labeler.label(item.text, item.id)


class _JsonArrayWriter:
    """Writes a JSON array one element at a time."""

    def __init__(self, fh: IO[str]) -> None:
        self.fh = fh
        self.n = 0
        fh.write("[")

    def write(self, obj: object) -> None:
        self.fh.write(",\n" if self.n else "\n")
        self.fh.write(json.dumps(obj, ensure_ascii=False))
        self.n += 1

    def close(self) -> None:
        self.fh.write("\n]\n" if self.n else "]\n")


def _progress(total: int | None, enabled: bool | None) -> Callable[[Iterable[ReportLabels]], Iterable[ReportLabels]]:
    if enabled is None:
        enabled = sys.stderr.isatty() and (total is None or total >= 200)
    if not enabled:
        return lambda it: it
    from tqdm import tqdm

    return lambda it: tqdm(it, total=total, unit="report", file=sys.stderr, delay=0.5, dynamic_ncols=True)


def label_file(
    source: str | os.PathLike,
    out_csv: str | os.PathLike,
    *,
    style: str = "chexpert",
    labeler: Labeler | None = None,
    id_column: str = "id",
    text_column: str = "text",
    encoding: str = "utf-8",
    json_out: str | os.PathLike | None = None,
    progress: bool | None = None,
) -> LabelSummary:
    """Label every report in ``source`` and write ``out_csv`` (and ``json_out`` with evidence).

    One output row per input report, in input order; rows that could not be labeled carry a
    ``status``. Both files are written incrementally to temporary files and renamed into place at
    the end. ``progress``: ``None`` shows a tqdm bar on stderr only for a terminal and long inputs.
    Raises :class:`~cxrkit.errors.CxrkitError` for unusable input as a whole (missing file or
    column, unknown format); nothing is written then.
    """
    import time

    if style not in STYLES:
        raise ValueError(f"unknown style {style!r}; expected one of {', '.join(STYLES)}")
    labeler = labeler or Labeler()
    summary = LabelSummary()
    t0 = time.perf_counter()
    results = iter_labeled(source, labeler, id_column=id_column, text_column=text_column, encoding=encoding)
    bar = _progress(count_reports(source), progress)
    with contextlib.ExitStack() as stack:
        fh = stack.enter_context(atomic_open(out_csv, "w", encoding="utf-8", newline=""))
        writer = csv.writer(fh, lineterminator="\n")
        # csv (Python 3.11) leaves a lone "\r" unquoted with lineterminator="\n", and a reader ends the row
        # there: rows with one (an id read from a damaged file) are written fully quoted
        quoted = csv.writer(fh, lineterminator="\n", quoting=csv.QUOTE_ALL)
        writer.writerow(header(style, id_column))
        jw = None
        if json_out is not None:
            jfh = stack.enter_context(atomic_open(json_out, "w", encoding="utf-8"))
            jw = _JsonArrayWriter(jfh)
        for result in bar(results):
            cells = row(result, style)
            (quoted if any("\r" in c for c in cells) else writer).writerow(cells)
            if jw is not None:
                jw.write(result.to_dict())
            summary.add(result)
        if jw is not None:
            jw.close()
    summary.seconds = time.perf_counter() - t0
    log.info("labeled %d reports (%d with a status) in %.2f s -> %s", summary.reports, summary.with_status, summary.seconds, Path(out_csv))
    return summary

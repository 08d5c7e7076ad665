"""Scoring the labeler against gold report labels (OpenI / IU, as distributed with NegBio).

Gold file: CSV with ``filename`` (``CXR<N>``), one 0/1 column per NIH finding and ``normal``.
A finding counts as gold-positive when its cell is 1. The labeler's output is mapped to binary as
``positive = label 1``; uncertain mentions (-1) count as negative by default, which is the gold
convention: the OpenI gold labels come from the reports' manual MeSH indexing, which codes hedged
findings ("possible mass", "may represent consolidation") as absent but high-probability ones
("probable atelectasis", "consistent with emphysema") as present (see docs/reports.md).
``uncertain_as="positive"`` scores the other mapping.

Findings with no gold positive at all (Hernia in this gold file: the indexers' "Hernia, Hiatal"
is never mapped to it) are not annotated by the gold standard; they are listed but left out of the
micro and macro averages (``annotated`` in :class:`EvalResult`).
"""

from __future__ import annotations

import csv
import logging
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

from cxrkit.errors import InputError, UsageError
from cxrkit.findings import FINDINGS
from cxrkit.reports.io import iter_reports
from cxrkit.reports.labeler import Labeler, ReportLabels

log = logging.getLogger(__name__)

__all__ = [
    "PAPER_FIGURES",
    "Score",
    "EvalResult",
    "read_gold",
    "evaluate",
    "score",
    "format_table",
    "split_of",
]

#: Published OpenI figures (ChestX-ray8, Wang et al., CVPR 2017, Table 1, 14 classes, "Total"):
#: (precision, recall, F1) in percent.
PAPER_FIGURES: Mapping[str, tuple[float, float, float]] = {
    "ChestX-ray8 labeler (paper, OpenI, 14 classes)": (89.8, 85.0, 87.3),
    "MetaMap + NegEx baseline (same paper)": (77.2, 84.6, 80.7),
}
GOLD_FILE = "openi_gold_dev.csv"
REPORTS_FILE = "NLMCXR_reports.tgz"


@dataclass(frozen=True)
class Score:
    """Counts and precision / recall / F1 (``None`` where undefined: no predicted or gold positives)."""

    name: str
    tp: int
    fp: int
    fn: int

    @property
    def n_gold(self) -> int:
        return self.tp + self.fn

    @property
    def n_pred(self) -> int:
        return self.tp + self.fp

    @property
    def precision(self) -> float | None:
        return self.tp / self.n_pred if self.n_pred else None

    @property
    def recall(self) -> float | None:
        return self.tp / self.n_gold if self.n_gold else None

    @property
    def f1(self) -> float | None:
        p, r = self.precision, self.recall
        if p is None or r is None:
            return None
        return 2 * p * r / (p + r) if p + r else 0.0


@dataclass
class EvalResult:
    """Per-finding scores, micro / macro averages over the annotated findings, and bookkeeping."""

    per_finding: list[Score]
    micro: Score
    macro: tuple[float, float, float]
    annotated: list[str]
    n_reports: int
    uncertain_as: str
    missing: list[str] = field(default_factory=list)
    with_status: list[str] = field(default_factory=list)
    splits: dict[str, Score] = field(default_factory=dict)


def split_of(report_id: str) -> str:
    """Stable development / held-out assignment of a report id: ``"A"`` (2/3) or ``"B"`` (1/3).

    Rules were developed looking at split A only; split B was held out and is reported separately.
    For ``CXR<N>`` ids the split is ``B`` when ``N % 3 == 0``; other ids use a CRC32 of the id.
    """
    digits = report_id[3:] if report_id.upper().startswith("CXR") else ""
    n = int(digits) if digits.isdigit() else zlib.crc32(report_id.encode("utf-8"))
    return "B" if n % 3 == 0 else "A"


def read_gold(path: str | os.PathLike) -> dict[str, dict[str, int]]:
    """Read the gold CSV: ``{id: {finding: 0/1}}``. Raises :class:`CxrkitError` on a bad file."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: gold file not found")
    gold: dict[str, dict[str, int]] = {}
    with open(p, encoding="utf-8-sig", newline="") as fh:
        reader = csv.DictReader(fh)
        cols = reader.fieldnames or []
        id_col = "filename" if "filename" in cols else ("id" if "id" in cols else None)
        missing = [f for f in FINDINGS if f not in cols]
        if id_col is None or missing:
            what = "an id column ('filename' or 'id')" if id_col is None else f"column {missing[0]!r}"
            raise InputError(f"{p}: missing {what}; columns are {', '.join(cols)}")
        for i, rec in enumerate(reader, start=2):
            rid = (rec[id_col] or "").strip()
            if rid.lower().endswith(".xml"):
                rid = f"CXR{Path(rid).stem}"
            labels: dict[str, int] = {}
            for f in FINDINGS:
                v = (rec[f] or "").strip()
                try:
                    labels[f] = 1 if float(v) == 1 else 0 if v else 0
                except ValueError:
                    raise InputError(f"{p} line {i}: column {f!r} has {v!r}; expected 0 or 1") from None
            gold[rid] = labels
    if not gold:
        raise InputError(f"{p}: no gold rows")
    return gold


def _binary(value: int | None, uncertain_as: str) -> int:
    if value == 1:
        return 1
    if value == -1 and uncertain_as == "positive":
        return 1
    return 0


def score(pairs: Iterable[tuple[Mapping[str, int], Mapping[str, int | None]]], uncertain_as: str = "negative") -> dict[str, Score]:
    """Per-finding TP/FP/FN from ``(gold, predicted labels)`` pairs."""
    tp = {f: 0 for f in FINDINGS}
    fp = dict(tp)
    fn = dict(tp)
    for gold, pred in pairs:
        for f in FINDINGS:
            g = gold.get(f, 0) == 1
            p = _binary(pred.get(f), uncertain_as) == 1
            if g and p:
                tp[f] += 1
            elif p:
                fp[f] += 1
            elif g:
                fn[f] += 1
    return {f: Score(f, tp[f], fp[f], fn[f]) for f in FINDINGS}


def _micro(scores: Iterable[Score], name: str) -> Score:
    scores = list(scores)
    return Score(name, sum(s.tp for s in scores), sum(s.fp for s in scores), sum(s.fn for s in scores))


def evaluate(
    gold_path: str | os.PathLike,
    reports_path: str | os.PathLike | None = None,
    labeler: Labeler | None = None,
    uncertain_as: str = "negative",
    results: Iterable[ReportLabels] | None = None,
) -> EvalResult:
    """Label the gold reports and score them.

    ``gold_path``: the gold labels (``openi_gold_dev.csv``); ``reports_path``: anything :func:`iter_reports` reads
    whose ids match the gold ids (``NLMCXR_reports.tgz``; default: that file beside the gold file).
    ``results`` may pass already-labeled reports instead of ``reports_path``.
    """
    if uncertain_as not in ("negative", "positive"):
        raise UsageError(f"uncertain_as must be 'negative' or 'positive', got {uncertain_as!r}")
    if reports_path is None and results is None:
        reports_path = Path(gold_path).parent / REPORTS_FILE
    gold = read_gold(gold_path)
    labeler = labeler or Labeler()
    if results is None:
        xml_sections = tuple(sorted(labeler.sections)) if labeler.sections is not None else ("findings", "impression")
        found: dict[str, ReportLabels] = {}
        for item in iter_reports(reports_path, xml_sections=xml_sections, section_rules=labeler.rules.sections):  # type: ignore[arg-type]
            if item.id in gold:
                found[item.id] = (
                    ReportLabels(item.id, {f: None for f in FINDINGS}, status=item.status) if item.status else labeler.label(item.text, item.id)
                )
    else:
        found = {r.id: r for r in results if r.id in gold}
    missing = sorted(set(gold) - set(found))
    if missing:
        log.warning("%d gold reports not found in %s (e.g. %s); they are scored as all-negative predictions", len(missing), reports_path, missing[0])
    with_status = sorted(rid for rid, r in found.items() if not r.ok)
    empty: dict[str, int | None] = {f: None for f in FINDINGS}
    pairs = [(gold[rid], found[rid].labels if rid in found else empty) for rid in gold]
    per = score(pairs, uncertain_as)
    annotated = [f for f in FINDINGS if per[f].n_gold > 0]
    micro = _micro((per[f] for f in annotated), "micro")
    ps = [per[f].precision or 0.0 for f in annotated]
    rs = [per[f].recall or 0.0 for f in annotated]
    fs = [per[f].f1 or 0.0 for f in annotated]
    n = max(len(annotated), 1)
    macro = (sum(ps) / n, sum(rs) / n, sum(fs) / n)
    splits: dict[str, Score] = {}
    for part in ("A", "B"):
        sub = [(gold[rid], found[rid].labels if rid in found else empty) for rid in gold if split_of(rid) == part]
        sp = score(sub, uncertain_as)
        splits[part] = _micro((sp[f] for f in annotated), f"{len(sub)} reports")
    return EvalResult([per[f] for f in FINDINGS], micro, macro, annotated, len(gold), uncertain_as, missing, with_status, splits)


def _pct(x: float | None) -> str:
    return "   -" if x is None else f"{100 * x:5.1f}"


_W = 60


def format_table(result: EvalResult, other: EvalResult | None = None) -> str:
    """Plain-text table: per finding P/R/F1 and counts, micro / macro, the paper's figures beside.

    ``other``: the same evaluation with the other mapping of uncertain labels, summarised below.
    """
    lines = [
        f"OpenI gold: {result.n_reports} reports; positive = label 1, uncertain (-1) counted as {result.uncertain_as}",
        f"{'finding':<20}{'gold+':>6}{'pred+':>6}{'TP':>6}{'FP':>5}{'FN':>5}{'prec':>7}{'rec':>7}{'F1':>7}",
    ]
    for s in result.per_finding:
        note = "" if s.name in result.annotated else "   (not annotated in gold: excluded from averages)"
        lines.append(
            f"{s.name:<20}{s.n_gold:>6}{s.n_pred:>6}{s.tp:>6}{s.fp:>5}{s.fn:>5}{_pct(s.precision):>7}{_pct(s.recall):>7}{_pct(s.f1):>7}{note}"
        )
    m = result.micro
    lines.append(f"{'micro average':<20}{m.n_gold:>6}{m.n_pred:>6}{m.tp:>6}{m.fp:>5}{m.fn:>5}{_pct(m.precision):>7}{_pct(m.recall):>7}{_pct(m.f1):>7}")
    mp, mr, mf = result.macro
    lines.append(f"{'macro average':<20}{'':>28}{_pct(mp):>7}{_pct(mr):>7}{_pct(mf):>7}   (over {len(result.annotated)} annotated findings)")
    lines.append("")
    lines.append(f"{'':<{_W}}{'prec':>7}{'rec':>7}{'F1':>7}")
    lines.append(f"{'cxrkit (this run, micro)':<{_W}}{_pct(m.precision):>7}{_pct(m.recall):>7}{_pct(m.f1):>7}")
    for name, (p, r, f) in PAPER_FIGURES.items():
        lines.append(f"{name:<{_W}}{p:>7.1f}{r:>7.1f}{f:>7.1f}")
    for part, s in result.splits.items():
        label = f"cxrkit split {part} ({'seen while writing rules' if part == 'A' else 'held out'}, {s.name})"
        lines.append(f"{label:<{_W}}{_pct(s.precision):>7}{_pct(s.recall):>7}{_pct(s.f1):>7}")
    skipped = [s for s in result.per_finding if s.name not in result.annotated]
    if any(s.n_pred for s in skipped):
        a = _micro(result.per_finding, "all")
        names = ", ".join(s.name for s in skipped)
        lines.append(f"{'cxrkit micro counting ' + names + ' too':<{_W}}{_pct(a.precision):>7}{_pct(a.recall):>7}{_pct(a.f1):>7}")
    if other is not None:
        o = other.micro
        lines.append(f"{'cxrkit with uncertain counted as ' + other.uncertain_as:<{_W}}{_pct(o.precision):>7}{_pct(o.recall):>7}{_pct(o.f1):>7}")
    if result.with_status:
        lines.append(f"{len(result.with_status)} gold reports could not be labeled (status set), e.g. {result.with_status[0]}")
    if result.missing:
        lines.append(f"{len(result.missing)} gold reports were not found in the reports input, e.g. {result.missing[0]}")
    return "\n".join(lines)

"""Rule-based labeling of radiology report text for the 14 NIH findings (plus ``No Finding``).

For each mention of a finding the labeler decides positive / negative / uncertain from the
negation and uncertainty triggers around it (see ``rules/triggers.toml``) and records the evidence:
the mention's span, its sentence, its section, the mention rule and the rule that decided it.

Offsets convention: every ``start``/``end`` is a 0-based character offset into the text that was
passed to :meth:`Labeler.label`, ``end`` exclusive (``text[start:end]`` is the span).

Per finding the mentions are combined as CheXpert does: positive if any mention is positive, else
uncertain if any is uncertain, else negative if any is negative, else not mentioned (``None``).
``No Finding`` is 1 when no finding is positive or uncertain, and ``None`` otherwise.
"""

from __future__ import annotations

import bisect
import logging
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from cxrkit.findings import FINDINGS, NO_FINDING
from cxrkit.reports.rules import MentionRule, RuleSet, TriggerRule, load_rules
from cxrkit.reports.text import (
    SectionSpan,
    SentenceSpan,
    split_sections,
    split_sentences,
)

log = logging.getLogger(__name__)

__all__ = [
    "POSITIVE",
    "NEGATIVE",
    "UNCERTAIN",
    "LABEL_OF_STATUS",
    "Evidence",
    "ReportLabels",
    "Labeler",
    "label_text",
]

POSITIVE, NEGATIVE, UNCERTAIN = 1, 0, -1
#: Mention status -> CheXpert-style label value.
LABEL_OF_STATUS: Mapping[str, int] = {"positive": POSITIVE, "negative": NEGATIVE, "uncertain": UNCERTAIN}
_RANK = {"positive": 3, "uncertain": 2, "negative": 1}
_EFFECT_RANK = {"negative": 3, "uncertain": 2, "positive": 1, "none": 0}
_WORD_RE = re.compile(r"\w+")
# Bytes that could not be decoded, kept as lone surrogates by errors="surrogateescape".
_UNDECODED_RE = re.compile("[\udc80-\udcff]")
DEFAULT_RULE = "default:affirmed (no trigger in scope)"


@dataclass(frozen=True)
class Evidence:
    """One mention of a finding and how it was classified.

    ``start``/``end`` span the mention, ``sentence_start``/``sentence_end`` its sentence and
    ``trigger_start``/``trigger_end`` the deciding trigger (``None`` when no trigger decided),
    all 0-based offsets into the labeled text, end exclusive.
    """

    finding: str
    status: str
    start: int
    end: int
    text: str
    sentence_start: int
    sentence_end: int
    section: str
    mention_rule: str
    rule: str
    trigger_start: int | None = None
    trigger_end: int | None = None
    trigger_text: str | None = None

    @property
    def label(self) -> int:
        """1 / 0 / -1 for positive / negative / uncertain."""
        return LABEL_OF_STATUS[self.status]

    def to_dict(self, text: str) -> dict[str, Any]:
        """JSON-ready dict; ``text`` is the labeled text (for the sentence string)."""
        return {
            "finding": self.finding,
            "status": self.status,
            "label": self.label,
            "start": self.start,
            "end": self.end,
            "text": self.text,
            "sentence": {"start": self.sentence_start, "end": self.sentence_end, "text": text[self.sentence_start : self.sentence_end]},
            "section": self.section,
            "mention_rule": self.mention_rule,
            "rule": self.rule,
            "trigger": None
            if self.trigger_start is None
            else {"start": self.trigger_start, "end": self.trigger_end, "text": self.trigger_text},
        }


@dataclass(frozen=True)
class ReportLabels:
    """Labels of one report.

    ``labels`` maps each of :data:`~cxrkit.findings.FINDINGS` and ``"No Finding"`` to 1 (positive),
    0 (negative), -1 (uncertain) or ``None`` (not mentioned). ``status`` is empty when the report was
    labeled, otherwise the reason it could not be (and every label is ``None``). ``text`` is the text
    the evidence offsets refer to.
    """

    id: str
    labels: Mapping[str, int | None]
    evidence: tuple[Evidence, ...] = ()
    status: str = ""
    text: str = ""
    sections: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        """True when the report was labeled (``status`` empty)."""
        return not self.status

    def positives(self) -> list[str]:
        """Positive findings in canonical order."""
        return [f for f in FINDINGS if self.labels.get(f) == POSITIVE]

    def nih_labels(self) -> str:
        """NIH ``Finding Labels`` cell: positives joined with ``|``, or ``No Finding`` (empty if not labeled)."""
        if not self.ok:
            return ""
        pos = self.positives()
        return "|".join(pos) if pos else NO_FINDING

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict with labels and evidence."""
        return {
            "id": self.id,
            "status": self.status,
            "labels": dict(self.labels),
            "finding_labels": self.nih_labels(),
            "sections": list(self.sections),
            "text": self.text,
            "evidence": [e.to_dict(self.text) for e in self.evidence],
        }


def empty_labels() -> dict[str, int | None]:
    """All findings and ``No Finding`` set to ``None``."""
    return {name: None for name in (*FINDINGS, NO_FINDING)}


@dataclass(frozen=True)
class _Hit:
    start: int
    end: int
    rule: TriggerRule


class _SentenceHits:
    """The trigger hits of one sentence, indexed by start and end, so that deciding a mention looks only at
    the hits inside it or within its pre/post word windows, and at the terminators between. (Scanning every
    hit of the sentence per mention, and counting words with a regex per pair, was cubic in the length of
    long unpunctuated text: 26 kB of "no effusion, " took 9 minutes.)"""

    def __init__(self, hits: list[_Hit]) -> None:
        self.hits = hits  # in text order (by start), as found
        self.starts = [h.start for h in hits]
        self.by_end = sorted(range(len(hits)), key=lambda i: hits[i].end)
        self.ends = [hits[i].end for i in self.by_end]
        self.terms = [h for h in hits if h.rule.group == "terminator"]
        self.term_starts = [t.start for t in self.terms]

    def candidates(self, ms: int, me: int, pre_lo: int, post_hi: int) -> list[_Hit]:
        """Hits that start inside ``[ms, me)``, end in ``[pre_lo, ms]`` or start in ``[me, post_hi]``, in text order."""
        idx = set(range(bisect.bisect_left(self.starts, ms), bisect.bisect_left(self.starts, me)))
        idx.update(self.by_end[bisect.bisect_left(self.ends, pre_lo) : bisect.bisect_right(self.ends, ms)])
        idx.update(range(bisect.bisect_left(self.starts, me), bisect.bisect_right(self.starts, post_hi)))
        return [self.hits[i] for i in sorted(idx)]

    def terminated(self, a: int, b: int, pre: bool) -> bool:
        """Whether a terminator lies within ``[a, b]`` (for a pre-trigger, not a post-only one)."""
        j = bisect.bisect_left(self.term_starts, a)
        while j < len(self.terms) and self.terms[j].start < b:
            t = self.terms[j]
            if t.end <= b and not (pre and t.rule.post_only_terminator):
                return True
            j += 1
        return False


class Labeler:
    """Labels report text with a :class:`~cxrkit.reports.rules.RuleSet`.

    ``sections``: canonical section names to label (e.g. ``{"findings", "impression",
    "indication"}``, or ``{"all"}``); ``None`` labels every section except the rule set's
    ``default_excluded`` (COMPARISON, INDICATION, HISTORY, TECHNIQUE, RECOMMENDATION). Text before
    any header (section ``body``) is always labeled.

    A Labeler holds only immutable compiled rules, so one instance can be shared freely.
    """

    def __init__(self, rules: RuleSet | None = None, sections: Iterable[str] | None = None) -> None:
        self.rules = rules if rules is not None else load_rules()
        self.sections = None if sections is None else frozenset(s.strip().lower() for s in sections)
        self._mention_by_group: dict[str, MentionRule] = {}
        for name in self.rules.mention_re.groupindex:
            self._mention_by_group[name] = self.rules.mention_rules[int(name[1:])]
        self._trigger_by_group: dict[str, TriggerRule] = {}
        for name in self.rules.trigger_re.groupindex:
            self._trigger_by_group[name] = self.rules.trigger_rules[int(name[1:])]

    # ------------------------------------------------------------------ public
    def wants(self, section: str) -> bool:
        """Whether section ``section`` (canonical name) is labeled."""
        if section == "body":
            return True  # text before any header, or a report without headers
        if self.sections is not None:
            return section in self.sections or "all" in self.sections
        return section not in self.rules.sections.default_excluded

    def label(self, text: str | None, report_id: str = "") -> ReportLabels:
        """Label one report. Never raises for bad text: returns a result with a ``status`` instead."""
        if text is None:
            return ReportLabels(report_id, empty_labels(), status="missing text")
        if not isinstance(text, str):
            return ReportLabels(report_id, empty_labels(), status=f"text is {type(text).__name__}, not a string")
        if not text.strip():
            return ReportLabels(report_id, empty_labels(), status="empty text", text=text)
        bad = _UNDECODED_RE.search(text)
        if bad:
            byte = ord(bad.group(0)) - 0xDC00
            status = f"text is not valid UTF-8 (byte 0x{byte:02X} at character {bad.start()}); re-save it as UTF-8 or pass --encoding"
            return ReportLabels(report_id, empty_labels(), status=status)
        all_sections = split_sections(text, self.rules.sections)
        kept = [s for s in all_sections if self.wants(s.name)]
        if not any(text[s.start : s.end].strip() for s in kept):
            names = sorted({s.name for s in all_sections})
            return ReportLabels(
                report_id,
                empty_labels(),
                status=f"no text to label: sections present are {', '.join(names)} (use --sections to include them)",
                text=text,
            )
        low = _lower_same_length(text)
        evidence: list[Evidence] = []
        for sec in kept:
            if sec.end > sec.start:
                evidence.extend(self._label_section(text, low, sec))
        return ReportLabels(report_id, self._aggregate(evidence), tuple(evidence), "", text, tuple(s.name for s in kept))

    # ------------------------------------------------------------------ internals
    def _label_section(self, text: str, low: str, sec: SectionSpan) -> list[Evidence]:
        mentions = list(self.rules.mention_re.finditer(low, sec.start, sec.end))
        if not mentions:
            return []
        sentences = split_sentences(text, sec.start, sec.end, sec.name)
        if not sentences:
            return []
        starts = [s.start for s in sentences]
        hits_by_sentence: dict[int, list[_Hit]] = {}
        for m in self.rules.trigger_re.finditer(low, sec.start, sec.end):
            rule = self._trigger_by_group[m.lastgroup]  # type: ignore[index]
            si = bisect.bisect_right(starts, m.start()) - 1
            if si >= 0:
                hits_by_sentence.setdefault(si, []).append(_Hit(m.start(), m.end(), rule))
        indexed = {si: _SentenceHits(hits) for si, hits in hits_by_sentence.items()}
        spans = [w.span() for w in _WORD_RE.finditer(text, sec.start, sec.end)]
        words = ([a for a, _ in spans], [b for _, b in spans])  # word starts, word ends (both sorted)
        out: list[Evidence] = []
        for m in mentions:
            mrule = self._mention_by_group[m.lastgroup]  # type: ignore[index]
            if mrule.kind == "exclude":
                continue
            si = bisect.bisect_right(starts, m.start()) - 1
            if si < 0 or m.start() >= sentences[si].end:
                continue  # inside a list marker or similar; not part of any sentence
            sent = sentences[si]
            if mrule.kind == "negative":
                out.append(self._evidence(text, m, mrule, sent, "negative", mrule.rule_id, None))
                continue
            status, rule_id, hit = self._decide(text, m.start(), m.end(), indexed.get(si), words)
            if mrule.kind == "sign" and status != "negative":
                # a sign suggests the finding without establishing it
                base = mrule.rule_id if hit is None else rule_id
                status, rule_id = "uncertain", f"{base}; sign: uncertain unless negated"
            out.append(self._evidence(text, m, mrule, sent, status, rule_id, hit))
        return out

    def _decide(
        self, text: str, ms: int, me: int, sent: _SentenceHits | None, words: tuple[list[int], list[int]]
    ) -> tuple[str, str, _Hit | None]:
        if sent is None:
            return "positive", DEFAULT_RULE, None
        wstarts, wends = words
        pre, post = self.rules.pre_window, self.rules.post_window
        # Hits further than the windows cannot count: a pre-trigger must end at or after pre_lo (then at
        # most `pre` words lie between it and the mention), a post-trigger start at or before post_hi.
        k = bisect.bisect_left(wstarts, ms)  # words starting before the mention
        pre_lo = min(wends[k - pre - 1], ms) if k - pre - 1 >= 0 else -1
        r = bisect.bisect_right(wends, me)  # words ending by the mention's end
        post_hi = max(wstarts[r + post], me) if r + post < len(wstarts) else len(text)
        best: tuple[int, int, _Hit] | None = None  # (effect rank, -distance, hit)
        for h in sent.candidates(ms, me, pre_lo, post_hi):
            rule = h.rule
            if rule.group == "terminator":
                continue
            if h.start >= ms and h.end <= me:
                dist = 0  # inside a multi-word mention
            elif h.end <= ms and rule.direction in ("pre", "both"):
                if sent.terminated(h.end, ms, pre=True):
                    continue
                dist = _words_between(words, h.end, ms)
                if dist > pre:
                    continue
            elif h.start >= me and rule.direction in ("post", "both"):
                if sent.terminated(me, h.start, pre=False):
                    continue
                dist = _words_between(words, me, h.start)
                if dist > post:
                    continue
            else:
                continue
            key = (_EFFECT_RANK[rule.effect], -dist)
            if best is None or key > best[:2]:
                best = (key[0], key[1], h)
        if best is None:
            return "positive", DEFAULT_RULE, None
        hit = best[2]
        if hit.rule.effect == "none":
            # a pseudo-trigger ("no change in") governs: the mention stays affirmed, and the
            # evidence says why the "no" in it did not negate
            return "positive", hit.rule.rule_id, hit
        return hit.rule.effect, hit.rule.rule_id, hit

    @staticmethod
    def _evidence(text: str, m: re.Match[str], mrule: MentionRule, sent: SentenceSpan, status: str, rule_id: str, hit: _Hit | None) -> Evidence:
        return Evidence(
            finding=mrule.finding,
            status=status,
            start=m.start(),
            end=m.end(),
            text=text[m.start() : m.end()],
            sentence_start=sent.start,
            sentence_end=sent.end,
            section=sent.section,
            mention_rule=mrule.rule_id,
            rule=rule_id,
            trigger_start=None if hit is None else hit.start,
            trigger_end=None if hit is None else hit.end,
            trigger_text=None if hit is None else text[hit.start : hit.end],
        )

    @staticmethod
    def _aggregate(evidence: Iterable[Evidence]) -> dict[str, int | None]:
        best: dict[str, str] = {}
        for e in evidence:
            if e.finding not in best or _RANK[e.status] > _RANK[best[e.finding]]:
                best[e.finding] = e.status
        labels = empty_labels()
        for f, st in best.items():
            labels[f] = LABEL_OF_STATUS[st]
        labels[NO_FINDING] = None if any(v in (POSITIVE, UNCERTAIN) for k, v in labels.items() if k != NO_FINDING) else 1
        return labels


def _words_between(words: tuple[list[int], list[int]], a: int, b: int) -> int:
    """Number of ``\\w+`` runs in ``text[a:b]`` (``len(_WORD_RE.findall(text, a, b))``) from the sorted word
    spans of the section: the words that overlap ``[a, b)``."""
    if a >= b:
        return 0
    wstarts, wends = words
    return bisect.bisect_left(wstarts, b) - bisect.bisect_right(wends, a)


def _lower_same_length(text: str) -> str:
    """``text.lower()``, keeping every offset: characters whose lower case is longer stay as they are."""
    low = text.lower()
    if len(low) == len(text):
        return low
    return "".join(c if len(c.lower()) != 1 else c.lower() for c in text)


def label_text(text: str, report_id: str = "", labeler: Labeler | None = None) -> ReportLabels:
    """Label one free-text report with the packaged rules (convenience wrapper)."""
    return (labeler or Labeler()).label(text, report_id)

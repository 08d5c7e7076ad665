"""Section and sentence segmentation for radiology report text.

Offsets convention (used everywhere in :mod:`cxrkit.reports`): spans are ``(start, end)`` pairs of
0-based character offsets into the *original* text, ``end`` exclusive, so ``text[start:end]`` is the
span. Nothing here copies or normalises the text; segmentation only produces offsets.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping

__all__ = [
    "SectionSpan",
    "SentenceSpan",
    "canonical_section",
    "split_sections",
    "split_sentences",
    "SectionRules",
]


@dataclass(frozen=True)
class SectionSpan:
    """A report section: ``name`` (canonical, lower case) and the span of its body (header excluded)."""

    name: str
    start: int
    end: int


@dataclass(frozen=True)
class SentenceSpan:
    """One sentence: the span of its text (leading/trailing whitespace excluded) and its section."""

    start: int
    end: int
    section: str


# A header is 1-4 words followed by a colon, at the start of the text, of a line, or right after a
# sentence end. Only known section names (SectionRules.aliases), or ALL-CAPS words, count, so
# "Chest: the heart ..." in running text is not taken for a section, but "LUNGS:" in a structured
# report is.
_HEADER_RE = re.compile(
    r"(?:^|(?<=\n)|(?<=[.!?]\s)|(?<=[.!?]\s\s))[ \t]*"
    r"(?P<name>[A-Za-z][A-Za-z /&]{1,40}?)[ \t]*:(?!\d)",
)


@dataclass(frozen=True)
class SectionRules:
    """Header spellings -> canonical names, and the sections skipped by default (rules/sections.toml)."""

    aliases: Mapping[str, str]
    default_excluded: frozenset[str]


def _norm(name: str) -> str:
    return re.sub(r"\s+", " ", name.strip().lower())


def canonical_section(name: str, rules: SectionRules) -> str:
    """Canonical lower-case name for a section header as written (``"IMPRESSION"`` -> ``impression``)."""
    key = _norm(name)
    return rules.aliases.get(key, key)


def _is_header(name: str, rules: SectionRules) -> bool:
    if _norm(name) in rules.aliases:
        return True
    stripped = name.strip()
    return 1 <= len(stripped.split()) <= 4 and stripped.isupper() and len(stripped) >= 3


def split_sections(text: str, rules: SectionRules) -> list[SectionSpan]:
    """Split ``text`` at section headers (``FINDINGS:``, ``Impression:``, ...).

    Returns the body span of each section in text order; text before the first header (or the whole
    text when there is no header) is the section ``"body"``. Empty sections are kept (with
    ``start == end``) so callers can tell that a header was present.
    """
    headers = [m for m in _HEADER_RE.finditer(text) if _is_header(m.group("name"), rules)]
    if not headers:
        return [SectionSpan("body", 0, len(text))]
    spans: list[SectionSpan] = []
    first = headers[0].start()
    if text[:first].strip():
        spans.append(SectionSpan("body", 0, first))
    for i, m in enumerate(headers):
        end = headers[i + 1].start() if i + 1 < len(headers) else len(text)
        spans.append(SectionSpan(canonical_section(m.group("name"), rules), m.end(), end))
    return spans


# Abbreviations after which a period does not end a sentence.
_ABBREVIATIONS = frozenset(
    "dr mr mrs ms vs approx appr e.g i.e etc cf fig resp incl".split()
)
# Candidate boundaries: end punctuation followed by whitespace or the end, a period glued to a
# capitalised word ("lungs.Reports"), a blank line, a new list item on a new line, or a line break
# before a capital letter (structured "Heart: normal size" lines without periods) unless the line
# ends like a hard-wrapped sentence (comma, hyphen, "and", "of", ...).
_BOUNDARY_RE = re.compile(
    r"[.!?]+(?=\s|$)|\.(?=[A-Z][a-z])|\n[ \t]*\n|\n(?=[ \t]*(?:\d{1,2}[.)]|[-*\u2022])\s)|\n(?=[ \t]*[A-Z])"
)
_WRAPPED_RE = re.compile(r"(?:[,\-/(&]|\b(?:and|or|nor|of|the|a|an|with|without|no|to|for|in|on|at|by|from|versus|vs))\s*$", re.IGNORECASE)
_LIST_MARKER_RE = re.compile(r"\s*(?:(?:\d{1,2}[.)]|[-*\u2022])(?=\s|$))?\s*")
_LAST_WORD_RE = re.compile(r"([A-Za-z][A-Za-z.]*)\.+$")


def split_sentences(text: str, start: int = 0, end: int | None = None, section: str = "body") -> list[SentenceSpan]:
    """Split ``text[start:end]`` into sentences, returning spans into ``text``.

    Sentences end at ``.``/``!``/``?`` followed by whitespace (not after abbreviations such as
    ``Dr.`` or ``vs.``, not inside decimals such as ``1.5``), at blank lines and before list items on
    new lines. A bare list marker (``1.``) is not a sentence; it is skipped. Whitespace around each
    sentence is trimmed, and empty sentences are dropped.
    """
    if end is None:
        end = len(text)
    out: list[SentenceSpan] = []
    cur = start
    for m in _BOUNDARY_RE.finditer(text, start, end):
        stop = m.end() if m.group(0)[0] in ".!?" else m.start()
        piece = text[cur:stop]
        if m.group(0) == "\n" and _WRAPPED_RE.search(piece):
            continue  # a hard-wrapped line, not a sentence end
        if m.group(0)[0] == ".":
            # do not split after an abbreviation or a bare list marker
            if _LIST_MARKER_RE.fullmatch(piece):
                continue
            lw = _LAST_WORD_RE.search(piece)
            if lw and lw.group(1).lower().rstrip(".") in _ABBREVIATIONS and m.group(0) == ".":
                continue
        _append(out, text, cur, stop, section)
        cur = stop
    _append(out, text, cur, end, section)
    return out


def _append(out: list[SentenceSpan], text: str, a: int, b: int, section: str) -> None:
    m = _LIST_MARKER_RE.match(text, a, b)  # leading list marker / whitespace
    if m:
        # keep a list marker out of the sentence only when it is followed by text
        a = m.end() if m.end() < b else a
    while a < b and text[a].isspace():
        a += 1
    while b > a and text[b - 1].isspace():
        b -= 1
    if b > a and any(ch.isalnum() for ch in text[a:b]):
        out.append(SentenceSpan(a, b, section))


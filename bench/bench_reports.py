"""Benchmark: report labeling throughput on one CPU core, on the 3,955 real OpenI reports.

    .venv/bin/python bench/bench_reports.py [--reports ../shared/data/reports/openi/NLMCXR_reports.tgz] [--repeat 3]

Measured in the same run, on the same reports:

1. ``cxrkit`` - :class:`cxrkit.reports.Labeler` with its precompiled combined patterns (one
   alternation for all mention phrases and one for all triggers, name groups at the end of each
   alternative, one hoisted word-start check, matched on lower-cased text).
2. ``same rules, plain alternation`` - the same labeler and rules, but each combined pattern built
   the obvious way: ``(?P<name>phrase)|...`` with re.IGNORECASE. Labels are checked to be identical,
   so this isolates what the pattern construction buys.
3. ``naive per-sentence baseline`` - a NegEx-style keyword labeler: split sentences, for every
   finding run every keyword regex on every sentence, negate when a negation cue precedes it in the
   sentence. Simpler and less accurate (its micro F1 on the gold set is printed beside it).

Labeling time excludes reading the archive (reported separately), and an end-to-end
``label_file`` run (read .tgz, label, write CSV) is timed too. The process is pinned to one core
where the OS allows it. Target: >= 2,000 reports/s for (1).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from cxrkit.findings import FINDINGS
from cxrkit.reports.evaluate import GOLD_FILE, read_gold, score
from cxrkit.reports.io import iter_reports
from cxrkit.reports.labeler import Labeler, empty_labels
from cxrkit.reports.output import label_file
from cxrkit.reports.rules import RuleSet, load_rules

DEFAULT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "reports" / "openi" / "NLMCXR_reports.tgz"


def plain_alternation(rules: RuleSet) -> RuleSet:
    """The same rules with each combined pattern built as ``(?P<name>phrase)|...`` + IGNORECASE."""

    def build(pattern: re.Pattern[str], regexes: list[str]) -> re.Pattern[str]:
        # keep the priority order of the optimised pattern: group names in the order they appear
        order = sorted(pattern.groupindex, key=pattern.groupindex.__getitem__)
        return re.compile("|".join(f"(?P<{n}>{regexes[int(n[1:])]})" for n in order), re.IGNORECASE)

    return replace(
        rules,
        mention_re=build(rules.mention_re, [r.regex for r in rules.mention_rules]),
        trigger_re=build(rules.trigger_re, [r.regex for r in rules.trigger_rules]),
    )


# --- naive baseline ------------------------------------------------------------------------------
NAIVE_TERMS = {
    "Atelectasis": [r"atelecta\w*", r"collapse"],
    "Cardiomegaly": [r"cardiomegaly", r"enlarged heart", r"heart (?:is )?enlarged", r"enlarged cardiac silhouette"],
    "Effusion": [r"effusions?", r"pleural fluid"],
    "Infiltration": [r"infiltrat\w*"],
    "Mass": [r"mass(?:es)?"],
    "Nodule": [r"nodules?"],
    "Pneumonia": [r"pneumonia"],
    "Pneumothorax": [r"pneumothora(?:x|ces)"],
    "Consolidation": [r"consolidat\w*"],
    "Edema": [r"edema"],
    "Emphysema": [r"emphysema\w*"],
    "Fibrosis": [r"fibros\w*", r"fibrotic"],
    "Pleural_Thickening": [r"pleural thickening"],
    "Hernia": [r"hernia"],
}
NAIVE_NEG = re.compile(r"\b(?:no|not|without|negative for|free of|clear of)\b", re.IGNORECASE)
NAIVE_UNC = re.compile(r"\b(?:may|possible|possibly|versus|cannot exclude|suspicious for|question)\b", re.IGNORECASE)
NAIVE_SENT = re.compile(r"(?<=[.!?])\s+|\n+")


def naive_label(text: str) -> dict[str, int | None]:
    labels = empty_labels()
    for sentence in NAIVE_SENT.split(text):
        for finding, terms in NAIVE_TERMS.items():
            for term in terms:
                m = re.search(rf"\b{term}\b", sentence, re.IGNORECASE)
                if not m:
                    continue
                before = sentence[: m.start()]
                value = 0 if NAIVE_NEG.search(before) else -1 if NAIVE_UNC.search(sentence) else 1
                old = labels[finding]
                labels[finding] = value if old is None else max(old, value, key=lambda v: {1: 3, -1: 2, 0: 1}[v])
    return labels


def pin_one_core() -> str:
    if hasattr(os, "sched_setaffinity"):
        cpu = sorted(os.sched_getaffinity(0))[0]
        os.sched_setaffinity(0, {cpu})
        return f"pinned to CPU {cpu}"
    return "not pinned (sched_setaffinity unavailable)"


def best_rate(fn, n: int, repeat: int) -> tuple[float, float]:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return n / min(times), n / statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reports", type=Path, default=DEFAULT, help="OpenI NLMCXR_reports.tgz (or any input cxrkit reports label reads)")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    if not args.reports.exists():
        print(f"error: {args.reports} not found (pass --reports)", file=sys.stderr)
        return 2
    pinned = pin_one_core()

    t0 = time.perf_counter()
    items = list(iter_reports(args.reports))
    t_read = time.perf_counter() - t0
    texts = [(i.id, i.text) for i in items if not i.status]
    n = len(items)
    print(f"{n} reports ({len(texts)} with FINDINGS/IMPRESSION text) from {args.reports.name}; {pinned}; python {sys.version.split()[0]}")
    print(f"reading + parsing the XML archive: {t_read:.2f} s ({n / t_read:,.0f} reports/s)")

    rules = load_rules()
    fast = Labeler(rules)
    plain = Labeler(plain_alternation(rules))
    fast_labels = [fast.label(t, i).labels for i, t in texts]
    same = fast_labels == [plain.label(t, i).labels for i, t in texts]

    rate_fast, med_fast = best_rate(lambda: [fast.label(t, i) for i, t in texts], len(texts), args.repeat)
    rate_plain, med_plain = best_rate(lambda: [plain.label(t, i) for i, t in texts], len(texts), 1)  # slow: once
    rate_naive, med_naive = best_rate(lambda: [naive_label(t) for _, t in texts], len(texts), args.repeat)

    f1 = {}
    gold_path = args.reports.parent / GOLD_FILE
    if gold_path.exists():
        gold = read_gold(gold_path)
        for name, labels in (("cxrkit", fast_labels), ("naive", [naive_label(t) for _, t in texts])):
            by_id = dict(zip((i for i, _ in texts), labels))
            per = score((gold[r], by_id.get(r, empty_labels())) for r in gold)
            tp = sum(per[f].tp for f in FINDINGS if per[f].n_gold)
            fp = sum(per[f].fp for f in FINDINGS if per[f].n_gold)
            fn_ = sum(per[f].fn for f in FINDINGS if per[f].n_gold)
            f1[name] = f"micro F1 {2 * tp / (2 * tp + fp + fn_):.3f}"

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        label_file(args.reports, Path(tmp) / "out.csv", labeler=fast, progress=False)
        t_e2e = time.perf_counter() - t0

    print(f"\nlabeling only, best (median) of {args.repeat} runs, one core:")
    print(f"  {'cxrkit Labeler (combined patterns)':<46}{rate_fast:>8,.0f} ({med_fast:,.0f}) reports/s   {f1.get('cxrkit', '')}")
    print(f"  {'same rules, plain named-group alternation':<46}{rate_plain:>8,.0f} (1 run) reports/s   labels identical: {'yes' if same else 'NO'}")
    print(f"  {'naive keyword + NegEx-style per sentence':<46}{rate_naive:>8,.0f} ({med_naive:,.0f}) reports/s   {f1.get('naive', '')}")
    print(f"  speed-up of combined patterns over plain alternation: {rate_fast / rate_plain:.1f}x; target >= 2,000 reports/s: {'met' if rate_fast >= 2000 else 'NOT met'}")
    print(f"\nend to end (read .tgz, label, write CSV): {t_e2e:.2f} s, {n / t_e2e:,.0f} reports/s")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())

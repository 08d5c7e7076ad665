"""Benchmark: report labeling throughput on one CPU core, on the 3,955 real OpenI reports.

    .venv/bin/python bench/bench_reports.py [--reports ../shared/data/reports/openi/NLMCXR_reports.tgz] [--repeat 3] [--tiny]

Measured in the same process, on the same reports, passes interleaved (cxrkit, naive, ...) ``--repeat``
times, best (and median) pass reported for every method:

1. ``cxrkit`` - :class:`cxrkit.reports.Labeler` (the CheXpert-style mention / negation / uncertainty
   rules, matched with precompiled combined patterns on lower-cased text).
2. ``naive keyword + NegEx`` - the labeler a user would write instead: split sentences, for every
   finding run its keyword regexes (precompiled) on every sentence, negative when a negation cue
   ("no", "without", "negative for", ...) precedes the keyword in the sentence, uncertain when an
   uncertainty cue is in the sentence. This is the baseline; both micro F1 scores against the gold
   labels (``openi_gold_dev.csv`` beside the archive, 3,080 reports) are printed beside the speeds.
3. secondary, an ablation (not a baseline a user would pick): the same cxrkit labeler and rules with
   each combined pattern built the obvious way, ``(?P<name>phrase)|...`` with re.IGNORECASE; labels
   are checked to be identical, so it isolates what the pattern construction buys.

Labeling time excludes reading the archive (reported separately), and an end-to-end ``label_file``
run (read .tgz, label, write CSV) is timed too. The process is pinned to one core where the OS
allows it. Target: >= 2,000 reports/s for (1).
``--tiny``: the first 100 reports, one pass (a smoke run for the test suite; no figure is asserted).
Without ``../shared/data`` the bundled sample reports (``src/cxrkit/demo/sample/reports``, no gold) are used.
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

REPO = Path(__file__).resolve().parents[1]
DEFAULT = Path(os.environ.get("CXRKIT_SHARED_DATA", REPO.parent / "shared" / "data")) / "reports" / "openi" / "NLMCXR_reports.tgz"
SAMPLE = REPO / "src" / "cxrkit" / "demo" / "sample" / "reports"


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
NAIVE_TERMS_RE = {f: [re.compile(rf"\b{t}\b", re.IGNORECASE) for t in terms] for f, terms in NAIVE_TERMS.items()}
NAIVE_NEG = re.compile(r"\b(?:no|not|without|negative for|free of|clear of)\b", re.IGNORECASE)
NAIVE_UNC = re.compile(r"\b(?:may|possible|possibly|versus|cannot exclude|suspicious for|question)\b", re.IGNORECASE)
NAIVE_SENT = re.compile(r"(?<=[.!?])\s+|\n+")


def naive_label(text: str) -> dict[str, int | None]:
    labels = empty_labels()
    for sentence in NAIVE_SENT.split(text):
        for finding, terms in NAIVE_TERMS_RE.items():
            for term in terms:
                m = term.search(sentence)
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


def interleaved_rates(fns: dict, n: int, repeat: int) -> dict[str, tuple[float, float]]:
    """Reports/s (best pass, median pass) per method; the methods' passes alternate, so load drift hits all."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {k: (n / min(v), n / statistics.median(v)) for k, v in times.items()}


def micro_f1(gold: dict, ids: list[str], labels: list[dict]) -> float:
    by_id = dict(zip(ids, labels))
    per = score((gold[r], by_id.get(r, empty_labels())) for r in gold)
    tp = sum(per[f].tp for f in FINDINGS if per[f].n_gold)
    fp = sum(per[f].fp for f in FINDINGS if per[f].n_gold)
    fn_ = sum(per[f].fn for f in FINDINGS if per[f].n_gold)
    return 2 * tp / (2 * tp + fp + fn_)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reports", type=Path, default=None,
                    help="OpenI NLMCXR_reports.tgz (or any input cxrkit reports label reads); default the shared "
                         "archive, else the bundled sample")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--tiny", action="store_true", help="the first 100 reports, one pass: a smoke run")
    args = ap.parse_args(argv)
    if args.reports is None:
        args.reports = DEFAULT if DEFAULT.exists() else SAMPLE
    if args.tiny:
        args.repeat = 1
    if not args.reports.exists():
        print(f"error: {args.reports} not found (pass --reports)", file=sys.stderr)
        return 2
    pinned = pin_one_core()

    t0 = time.perf_counter()
    items = list(iter_reports(args.reports))
    t_read = time.perf_counter() - t0
    n_all = len(items)
    if args.tiny:
        items = items[:100]
    texts = [(i.id, i.text) for i in items if not i.status]
    n = len(items)
    print(f"{n} reports ({len(texts)} with FINDINGS/IMPRESSION text) from {args.reports.name}; {pinned}; python {sys.version.split()[0]}")
    print(f"reading + parsing the input: {t_read:.2f} s ({n_all / t_read:,.0f} reports/s)")

    rules = load_rules()
    fast = Labeler(rules)
    plain = Labeler(plain_alternation(rules))
    ids = [i for i, _ in texts]
    fast_labels = [fast.label(t, i).labels for i, t in texts]
    naive_labels = [naive_label(t) for _, t in texts]
    same = fast_labels == [plain.label(t, i).labels for i, t in texts]

    rates = interleaved_rates({
        "cxrkit": lambda: [fast.label(t, i) for i, t in texts],
        "naive": lambda: [naive_label(t) for _, t in texts],
        "plain": lambda: [plain.label(t, i) for i, t in texts],
    }, len(texts), args.repeat)

    f1 = {}
    gold_path = (args.reports if args.reports.is_dir() else args.reports.parent) / GOLD_FILE
    if gold_path.exists():
        read_ids = {i.id for i in items}  # gold reports read here (all of them unless --tiny)
        gold = {r: g for r, g in read_gold(gold_path).items() if r in read_ids}
        f1 = {"cxrkit": micro_f1(gold, ids, fast_labels), "naive": micro_f1(gold, ids, naive_labels)}
        gold_note = f"micro F1 on the {len(gold):,} reports of {gold_path.name} read here"
    else:
        gold_note = f"no {GOLD_FILE} beside the input: F1 not computed"

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        label_file(args.reports, Path(tmp) / "out.csv", labeler=fast, progress=False)
        t_e2e = time.perf_counter() - t0

    def row(label: str, key: str, extra: str = "") -> None:
        best, med = rates[key]
        f = f"   micro F1 {f1[key]:.3f}" if key in f1 else ""
        print(f"  {label:<50}{best:>8,.0f} ({med:>6,.0f}) reports/s{f}{extra}")

    print(f"\nlabeling only, one core, best (median) of {args.repeat} interleaved passes; {gold_note}:")
    row("cxrkit Labeler", "cxrkit")
    row("baseline: naive keyword + NegEx-style negation", "naive")
    speed = rates["cxrkit"][0] / rates["naive"][0]
    f1_note = f"; F1 {f1['cxrkit']:.3f} vs {f1['naive']:.3f}" if f1 else ""
    print(f"  cxrkit vs the naive baseline: {speed:.2f}x the speed (best passes){f1_note}")
    print("secondary (an ablation, not a baseline a user would pick):")
    row("cxrkit rules, plain named-group alternation", "plain", f"   labels identical: {'yes' if same else 'NO'}")
    print(f"  combined patterns vs plain alternation: {rates['cxrkit'][0] / rates['plain'][0]:.1f}x; "
          f"target >= 2,000 reports/s for cxrkit: {'met' if rates['cxrkit'][0] >= 2000 else 'NOT met'}")
    print(f"\nend to end (read input, label, write CSV): {t_e2e:.2f} s for {n_all:,} reports, {n_all / t_e2e:,.0f} reports/s")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())

"""``cxrkit reports``: label radiology reports for the 14 NIH findings, evaluate, explain.

``cxrkit reports label INPUT --out OUT.csv [--style chexpert|nih] [--id-column C] [--text-column C]``
is a stable interface (see CONTRACTS.md); ``eval``, ``explain`` and ``rules`` are conveniences.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
from pathlib import Path

from cxrkit.errors import InputError, UsageError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "reports",
        help="label radiology report text (14 findings, negation, uncertainty, evidence)",
        description="Mine the 14 NIH ChestX-ray14 findings from radiology report text with rule files "
        "(mentions, negation, uncertainty), with evidence for every label.",
    )
    s = p.add_subparsers(dest="reports_command", metavar="REPORTS_COMMAND")
    s.required = True

    lab = s.add_parser(
        "label",
        help="label reports from a CSV, a folder of .txt, OpenI XML (folder or .tgz)",
        description="Label every report in INPUT; one output row per input report, in input order. "
        "Cells: 1 positive, 0 negative, -1 uncertain, empty not mentioned; rows that could not be "
        "labeled have empty cells and a reason in the final 'status' column.",
    )
    lab.add_argument("input", metavar="INPUT", help="CSV (plain or gzip), folder of .txt files, OpenI .xml file or folder, or a .tgz of OpenI XML")
    lab.add_argument("--out", required=True, help="output CSV (written atomically)")
    lab.add_argument("--style", choices=("chexpert", "nih"), default="chexpert", help="chexpert: 14 findings + No Finding as 1/0/-1/blank (default); nih: pipe-joined 'Finding Labels'")
    lab.add_argument("--id-column", default="id", help="CSV input: column with the report id (default: id); also the id column name in the output")
    lab.add_argument("--text-column", default="text", help="CSV input: column with the report text (default: text)")
    lab.add_argument("--json", dest="json_out", metavar="OUT.json", help="also write a JSON array with labels and evidence spans per report")
    _common(lab)
    lab.add_argument("--encoding", default="utf-8", help="text encoding of CSV / .txt input (default utf-8; e.g. cp1252)")
    bar = lab.add_mutually_exclusive_group()
    bar.add_argument("--progress", dest="progress", action="store_true", default=None, help="always show a progress bar on stderr")
    bar.add_argument("--no-progress", dest="progress", action="store_false", help="never show a progress bar")
    lab.set_defaults(func=_label)

    ev = s.add_parser(
        "eval",
        help="precision / recall / F1 against the OpenI gold labels, beside the ChestX-ray8 paper",
        description="Label the OpenI reports that have gold labels and print per-finding precision, recall "
        "and F1 with micro and macro averages, beside the ChestX-ray8 paper's OpenI figures. Gold positive = 1.",
    )
    ev.add_argument("--gold", help="gold CSV (default: ../shared/data/reports/openi/openi_gold_dev.csv)")
    ev.add_argument("--reports", help="reports whose ids match the gold ids (default: NLMCXR_reports.tgz next to the gold file)")
    ev.add_argument("--uncertain", choices=("negative", "positive"), default="negative", help="how uncertain (-1) labels count (default: negative, the gold convention)")
    ev.add_argument("--out", help="also write the table as CSV (atomically)")
    _common(ev)
    ev.set_defaults(func=_eval)

    ex = s.add_parser("explain", help="label one text and print every mention with its evidence")
    ex.add_argument("text", metavar="TEXT", help="report text ('-' reads stdin)")
    ex.add_argument("--json", action="store_true", help="print the JSON record instead of the readable listing")
    _common(ex)
    ex.set_defaults(func=_explain)

    ru = s.add_parser("rules", help="show where the rule files are, or copy them to edit")
    ru.add_argument("--copy-to", metavar="DIR", help="copy the packaged rule files into DIR (use with --rules DIR)")
    ru.set_defaults(func=_rules)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rules", metavar="DIR", help="folder with edited rule files (mentions.toml, triggers.toml, sections.toml)")
    p.add_argument(
        "--sections",
        metavar="LIST",
        help="comma-separated sections to label, e.g. findings,impression,indication, or 'all' "
        "(default: all but comparison/indication/history/technique/recommendation; OpenI XML: findings,impression)",
    )


def _labeler(args: argparse.Namespace):
    from cxrkit.reports.labeler import Labeler
    from cxrkit.reports.rules import load_rules

    sections = None
    if getattr(args, "sections", None):
        sections = [s.strip().lower() for s in args.sections.split(",") if s.strip()]
        if not sections:
            raise UsageError(f"--sections {args.sections!r}: no section names given")
    return Labeler(load_rules(args.rules) if args.rules else None, sections)


def _label(args: argparse.Namespace) -> int:
    from cxrkit.reports.output import label_file

    summary = label_file(
        args.input,
        args.out,
        style=args.style,
        labeler=_labeler(args),
        id_column=args.id_column,
        text_column=args.text_column,
        encoding=args.encoding,
        json_out=args.json_out,
        progress=args.progress,
    )
    msg = f"labeled {summary.reports} reports in {summary.seconds:.2f} s -> {args.out}"
    if args.json_out:
        msg += f" and {args.json_out}"
    print(msg, file=sys.stderr)
    if summary.with_status:
        print(f"warning: {summary.with_status} of {summary.reports} reports could not be labeled; see the 'status' column", file=sys.stderr)
    return 0


def _eval(args: argparse.Namespace) -> int:
    from cxrkit.cli.shared import find_shared
    from cxrkit.io.atomic import atomic_open
    from cxrkit.reports.evaluate import (
        GOLD_FILE,
        REPORTS_FILE,
        evaluate,
        format_table,
        read_gold,
    )
    from cxrkit.reports.output import iter_labeled

    gold = Path(args.gold) if args.gold else find_shared(
        f"reports/openi/{GOLD_FILE}", "pass --gold FILE --reports NLMCXR_reports.tgz or set CXRKIT_SHARED_DATA")
    if args.reports:
        reports = Path(args.reports)
    else:
        reports = gold.parent / REPORTS_FILE
        if not reports.exists():
            raise UsageError(f"{reports}: reports not found next to the gold file; pass --reports")
    labeler = _labeler(args)
    ids = set(read_gold(gold))
    # label once, score both mappings of uncertain labels
    results = [r for r in iter_labeled(reports, labeler) if r.id in ids]
    other_mapping = "positive" if args.uncertain == "negative" else "negative"
    result = evaluate(gold, reports, labeler, args.uncertain, results=results)
    other = evaluate(gold, reports, labeler, other_mapping, results=results)
    print(format_table(result, other))
    if args.out:
        with atomic_open(args.out, "w", encoding="utf-8", newline="") as fh:
            w = csv.writer(fh, lineterminator="\n")
            w.writerow(["finding", "n_gold", "n_pred", "tp", "fp", "fn", "precision", "recall", "f1", "in_averages"])
            for s in result.per_finding:
                w.writerow([s.name, s.n_gold, s.n_pred, s.tp, s.fp, s.fn, _fmt(s.precision), _fmt(s.recall), _fmt(s.f1), int(s.name in result.annotated)])
            m = result.micro
            w.writerow(["micro", m.n_gold, m.n_pred, m.tp, m.fp, m.fn, _fmt(m.precision), _fmt(m.recall), _fmt(m.f1), ""])
            w.writerow(["macro", "", "", "", "", "", *(_fmt(x) for x in result.macro), ""])
        print(f"wrote {args.out}", file=sys.stderr)
    return 0


def _fmt(x: float | None) -> str:
    return "" if x is None else f"{x:.4f}"


def _explain(args: argparse.Namespace) -> int:
    from cxrkit.findings import FINDINGS, NO_FINDING

    text = sys.stdin.read() if args.text == "-" else args.text
    result = _labeler(args).label(text, "text")
    if args.json:
        print(json.dumps(result.to_dict(), indent=2, ensure_ascii=False))
        return 0
    if not result.ok:
        raise InputError(f"cannot label this text: {result.status}")
    names = {1: "positive", 0: "negative", -1: "uncertain"}
    for f in (*FINDINGS, NO_FINDING):
        v = result.labels[f]
        if v is not None:
            print(f"{f:<20}{v:>3}  {names[v]}")
    print(f"Finding Labels: {result.nih_labels()}")
    print()
    for e in result.evidence:
        trig = f' trigger "{e.trigger_text}" [{e.trigger_start}:{e.trigger_end}]' if e.trigger_text is not None else ""
        print(f'{e.finding} {e.status}: "{e.text}" [{e.start}:{e.end}] in {e.section}{trig}')
        print(f"    rule: {e.rule}")
        print(f"    sentence [{e.sentence_start}:{e.sentence_end}]: {text[e.sentence_start:e.sentence_end]}")
    return 0


def _rules(args: argparse.Namespace) -> int:
    from cxrkit.reports.rules import RULE_FILES, default_rules_dir, load_rules

    src = default_rules_dir()
    if not args.copy_to:
        print(src)
        print(load_rules().describe())
        return 0
    dest = Path(args.copy_to)
    dest.mkdir(parents=True, exist_ok=True)
    for name in RULE_FILES:
        target = dest / name
        if target.exists():
            raise InputError(f"{target}: already exists; not overwriting edited rules")
    for name in RULE_FILES:
        shutil.copyfile(src / name, dest / name)
    print(f"copied {', '.join(RULE_FILES)} to {dest}; edit them and pass --rules {dest}")
    return 0

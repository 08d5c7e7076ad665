"""Demo section: label a few bundled real OpenI reports and show the evidence spans.

Writes ``reports/labels.csv`` (CheXpert style), ``reports/labels_nih.csv`` and
``reports/evidence.json`` under the demo folder, and an HTML fragment showing each report with its
mentions highlighted by status and the deciding triggers underlined, plus the label table.
"""

from __future__ import annotations

import html
from pathlib import Path

from cxrkit.demo.section import DemoContext, Section
from cxrkit.findings import FINDINGS, NO_FINDING
from cxrkit.reports.labeler import Labeler, ReportLabels
from cxrkit.reports.output import iter_labeled, label_file

COLORS = {"positive": "#f6b8b8", "negative": "#bfe6c3", "uncertain": "#ffe08a"}
CELL = {1: ("1", "#f6b8b8"), 0: ("0", "#bfe6c3"), -1: ("-1", "#ffe08a"), None: ("", "#fff")}
_SHORT = {"Pleural_Thickening": "Pleural thick.", "Consolidation": "Consolid.", "Infiltration": "Infiltr.", "Pneumothorax": "Pneumoth."}


def highlight(result: ReportLabels) -> str:
    """HTML of the report text with mention spans colored by status and trigger spans underlined.

    Every character belongs to at most one mention (mentions never overlap); a trigger may lie
    inside a mention ("heart is *not* enlarged"). The text is cut at every span boundary and each
    piece is wrapped in the spans that cover it.
    """
    text = result.text
    mentions = sorted(result.evidence, key=lambda e: e.start)
    triggers = {(e.trigger_start, e.trigger_end) for e in result.evidence if e.trigger_start is not None}
    cuts = {0, len(text)}
    for e in mentions:
        cuts.update((e.start, e.end))
    for a, b in triggers:
        cuts.update((a, b))  # type: ignore[arg-type]
    points = sorted(c for c in cuts if c is not None)
    out: list[str] = []
    for a, b in zip(points, points[1:]):
        piece = html.escape(text[a:b]).replace("\n", "<br>")
        trig = any(ta <= a and b <= tb for ta, tb in triggers)  # type: ignore[operator]
        if trig:
            piece = f'<u style="text-decoration-thickness:2px" title="trigger">{piece}</u>'
        covering = [e for e in mentions if e.start <= a and b <= e.end]
        if covering:
            e = covering[0]
            tip = html.escape(f"{e.finding}: {e.status} ({e.rule})", quote=True)
            piece = f'<span style="background:{COLORS[e.status]};border-radius:3px" title="{tip}">{piece}</span>'
        out.append(piece)
    return "".join(out)


def _table(results: list[ReportLabels]) -> str:
    head = "".join(f"<th>{html.escape(_SHORT.get(f, f))}</th>" for f in (*FINDINGS, NO_FINDING))
    rows = []
    for r in results:
        cells = []
        for f in (*FINDINGS, NO_FINDING):
            txt, color = CELL[r.labels.get(f)]
            cells.append(f'<td style="background:{color};text-align:center">{txt}</td>')
        rows.append(f"<tr><td>{html.escape(r.id)}</td>{''.join(cells)}<td>{html.escape(r.nih_labels())}</td></tr>")
    return f'<table><tr><th>id</th>{head}<th>NIH Finding Labels</th></tr>{"".join(rows)}</table>'


def _evidence_table(result: ReportLabels) -> str:
    rows = []
    for e in result.evidence:
        rule = e.rule if len(e.rule) <= 70 else e.rule[:67] + "..."
        trig = "" if e.trigger_text is None else f"{html.escape(e.trigger_text)} [{e.trigger_start}:{e.trigger_end}]"
        rows.append(
            f'<tr><td>{html.escape(e.finding)}</td><td style="background:{COLORS[e.status]}">{e.status}</td>'
            f"<td>{html.escape(e.text)}</td><td>{e.start}:{e.end}</td><td>{trig}</td>"
            f'<td title="{html.escape(e.rule, quote=True)}"><code>{html.escape(rule)}</code></td></tr>'
        )
    return (
        '<details><summary>evidence (character offsets into the text above, end exclusive)</summary>'
        "<table><tr><th>finding</th><th>status</th><th>mention</th><th>span</th><th>trigger</th><th>rule</th></tr>"
        f'{"".join(rows)}</table></details>'
    )


def build(ctx: DemoContext) -> Section:
    """Label the bundled reports, write the CSV / JSON outputs and return the section."""
    sample = Path(ctx.sample_dir) / "reports"
    out_dir = ctx.out / "reports"
    labeler = Labeler()
    label_file(sample, out_dir / "labels.csv", labeler=labeler, json_out=out_dir / "evidence.json", progress=False)
    label_file(sample, out_dir / "labels_nih.csv", style="nih", labeler=labeler, progress=False)
    results = list(iter_labeled(sample, labeler))
    legend = " ".join(
        f'<span style="background:{c};padding:0 4px;border-radius:3px">{s}</span>' for s, c in COLORS.items()
    )
    parts = [
        "<p>Five real Indiana University (OpenI) chest X-ray reports, labeled by <code>cxrkit reports label</code> "
        "with the packaged rule files. Mentions of the 14 findings are highlighted by status "
        f"({legend}); the trigger that decided a mention is <u>underlined</u>; hover a mention for the rule. "
        "FINDINGS and IMPRESSION are labeled (COMPARISON and INDICATION are skipped by default).</p>",
        _table(results),
    ]
    for r in results:
        parts.append(
            f'<h3 style="margin-bottom:.2em">{html.escape(r.id)}: {html.escape(r.nih_labels())}</h3>'
            f'<div style="font-family:Georgia,serif;line-height:1.6;border-left:3px solid #ccc;padding-left:.8em">{highlight(r)}</div>'
            + _evidence_table(r)
        )
    parts.append(
        '<p>Outputs: <a href="reports/labels.csv">labels.csv</a> (CheXpert style: 1 / 0 / -1 / blank), '
        '<a href="reports/labels_nih.csv">labels_nih.csv</a> (NIH <code>Finding Labels</code>), '
        '<a href="reports/evidence.json">evidence.json</a> (every mention with character offsets, sentence and rule). '
        "Reports: OpenI, Indiana University / NLM, CC BY-NC-ND 4.0 (Demner-Fushman et al., JAMIA 2016).</p>"
    )
    return Section(
        title="Report labeling",
        html="\n".join(parts),
        files=["reports/labels.csv", "reports/labels_nih.csv", "reports/evidence.json"],
    )

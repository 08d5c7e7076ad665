"""The self-contained HTML report of one analysis (overlays embedded as PNG data URIs)."""

from __future__ import annotations

import html

from cxrkit.analysis.document import data_uri
from cxrkit.io.images import encode_png


def _provenance_html(title: str, card: dict | None, e) -> str:
    if card is None:
        return (f"<h2>{e(title)}</h2><p>No classifier was run: cxrkit ships none trained on real labels. Name one "
                "with <code>--model</code> (trained with <code>cxrkit train</code> or imported with <code>cxrkit "
                "models import</code>).</p>")
    p = card.get("provenance") or {}
    warn = ("<p class=\"warn\">Trained on <b>synthetic</b> findings: these outputs are not findings on real "
            "radiographs.</p>") if p.get("synthetic") else ""
    rows = "".join(f"<tr><td>{e(k.replace('_', ' '))}</td><td>{e(str(v))}</td></tr>"
                   for k, v in (("training_data", p.get("training_data")), ("intended_use", p.get("intended_use")),
                                ("license", p.get("license")),
                                ("metrics", ", ".join(f"{k} {v}" for k, v in (p.get("metrics") or {}).items())))
                   if v)
    return f"<h2>{e(title)}: {e(card['name'])}</h2><p>{e(card.get('description', ''))}</p>{warn}<table>{rows}</table>"


def render_html(doc: dict, overlays: dict) -> str:
    """A self-contained HTML report of one analysis."""
    e = html.escape
    probs = sorted(doc["probabilities"].items(), key=lambda kv: -kv[1])
    bars = "".join(f'<tr><td>{e(k)}</td><td><div class="bar" style="width:{200 * v:.0f}px"></div></td>'
                   f"<td>{v:.3f}</td></tr>" for k, v in probs)
    m = doc["measurements"]
    meas = "".join(f"<tr><td>{e(k)}</td><td>{v if not isinstance(v, float) else f'{v:.4g}'}</td></tr>"
                   for k, v in m.items())
    q = doc["qc"]
    qc = (f"Dice RCA mean {q['dice_rca_mean']:.3f}, max {q['dice_rca_max']:.3f}"
          + (f", calibrated {q['dice_rca_calibrated']:.3f}" if q["dice_rca_calibrated"] is not None else "")
          + (" &mdash; <b>flag for review</b>" if q["dice_rca_mean"] < 0.7 else "")) if q else e(doc.get("qc_note", ""))
    ctr = m.get("ctr")
    heat = (f'<img src="{data_uri(encode_png(overlays["heatmap"], 768))}" alt="heatmap and boxes">'
            if overlays.get("heatmap") is not None else "")
    seg = doc["segmentation"]
    seg_card = {"name": seg["model"], "description": "", "provenance": seg.get("provenance") or {}}
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>cxrkit analysis: {e(doc['image'])}</title>
<style>body{{font-family:system-ui,sans-serif;margin:1.5em;color:#222}} img{{max-width:48%;margin-right:1%}}
table{{border-collapse:collapse;font-size:13px}} td{{padding:2px 6px;border-bottom:1px solid #eee}}
.bar{{height:10px;background:#3a7bd5}} .badge{{display:inline-block;padding:3px 8px;border-radius:4px;background:#eef;margin-right:8px}}
.warn{{background:#fff3cd;border:1px solid #e0c060;padding:6px 10px}}
</style></head><body>
<h1>{e(doc['image'])}</h1>
<p>{doc['width']} x {doc['height']} px; schema {e(doc['schema_version'])}</p>
<p><span class="badge">CTR {'' if ctr is None else f'{ctr:.3f}'}</span><span class="badge">QC: {qc}</span></p>
<p><img src="{data_uri(encode_png(overlays['segmentation'], 768))}" alt="landmarks and masks">
{heat}</p>
{_provenance_html("Classifier", doc["classifier"], e)}
<table>{bars}</table>
{_provenance_html("Segmentation", seg_card, e)}
<h2>Measurements</h2><table>{meas}</table>
</body></html>
"""

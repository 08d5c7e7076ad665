"""Demo section: every model on one image (``cxrkit analyze``) and the web viewer's browse mode over it.

The bundled images are analyzed into ``DIR/analysis`` exactly as ``cxrkit analyze --heatmaps`` does (JSON
with probabilities, heatmaps, boxes, landmarks, masks, QC and CTR; a self-contained HTML report; a preview
PNG), so ``cxrkit serve --results DIR/analysis`` browses them in the viewer.
"""

from __future__ import annotations

import html
import json

from cxrkit.analysis.analyze import Analyzer, analyze_files
from cxrkit.demo.section import DemoContext, Section
from cxrkit.io.inputs import collect_images
from cxrkit.models import load_model
from cxrkit.qc.rca import optional_estimator

N_IMAGES = 3
DEMO_CLASSIFIER = "resnet_lite_lesions"


def build(ctx: DemoContext) -> Section:
    title = "One image, every model: cxrkit analyze and the web viewer"
    qc, note = optional_estimator()
    out = ctx.out / "analysis"
    _, inputs = collect_images(sorted((ctx.sample_dir / "nih" / "images").glob("*.png"))[:N_IMAGES])
    images = [i.path for i in inputs]
    # The only shipped classifier is the lesion benchmark's (synthetic findings): named explicitly here and
    # labelled as what it is; `cxrkit analyze` runs no classifier unless one is named.
    bench_model = load_model(DEMO_CLASSIFIER, task="classification", device="cpu")
    failures = analyze_files(Analyzer(bench_model, None, qc, note), inputs, out, progress=False, heatmaps=True,
                             preview=True)
    if failures:
        raise RuntimeError(f"analyze failed on {failures[0][0]}: {failures[0][1]}")
    rows, files = [], []
    for path in images:
        doc = json.loads((out / f"{path.stem}.json").read_text())
        probs = doc["probabilities"]
        top = ", ".join(f"{k} {v:.2f}" for k, v in sorted(probs.items(), key=lambda kv: -kv[1])[:3])
        qc_doc = doc.get("qc") or {}
        dice = qc_doc.get("dice_rca_mean")
        ctr = (doc.get("measurements") or {}).get("ctr")
        files += [f"analysis/{path.stem}.json", f"analysis/{path.stem}.html"]
        rows.append(f'<tr><td><a href="analysis/{html.escape(path.stem)}.html">{html.escape(path.name)}</a></td>'
                    f"<td>{html.escape(top)}</td><td>{'' if ctr is None else f'{ctr:.3f}'}</td>"
                    f"<td>{'' if dice is None else f'{dice:.3f}'}</td>"
                    f'<td><a href="analysis/{html.escape(path.stem)}.json">JSON</a> '
                    f"(schema {html.escape(str(doc['schema_version']))})</td></tr>")
    qc_line = "" if qc is not None else f"<p>Quality control skipped: {html.escape(note.splitlines()[0])}</p>"
    prov = bench_model.card.provenance
    body = (
        f"<p><code>cxrkit analyze IMAGE... --out DIR --heatmaps --model {DEMO_CLASSIFIER}</code> runs the landmark "
        "segmentation (120 landmarks, CheXmask RLE masks), RCA quality control and the cardiothoracic ratio on each "
        "image, and the classifier named with <code>--model</code> (probabilities, class activation heatmaps, boxes), "
        "and writes one JSON per image (documented schema with a version field) plus a self-contained HTML report. "
        "Without <code>--model</code> no classifier runs: cxrkit ships none trained on real labels.</p>"
        f'<p class="warn"><b>The classifier here is a benchmark model, not a findings classifier:</b> '
        f"<code>{DEMO_CLASSIFIER}</code> was trained on {html.escape(prov.training_data)}. Intended use: "
        f"{html.escape(prov.intended_use)}.</p><p>The bundled images, analyzed that way:</p>"
        "<table><tr><th>image (HTML report)</th><th>benchmark model outputs (synthetic findings)</th><th>CTR</th>"
        "<th>Dice RCA (Mean)</th>"
        "<th>JSON</th></tr>" + "".join(rows) + "</table>" + qc_line +
        "<p>Browse these results in the web viewer (masks, landmarks, heatmaps and boxes as toggles, probabilities "
        "as bars, QC and CTR badges; its Analyze tab takes an upload or a dropped image):</p>"
        "<pre>pip install 'cxrkit[serve]'\n"
        f"cxrkit serve --results {html.escape(str(out))}   # then open http://127.0.0.1:8000/</pre>"
    )
    return Section(title=title, html=body, files=files)

"""Demo section: RCA quality estimates beside each segmentation, and one deliberately broken mask flagged."""

from __future__ import annotations

import html

from cxrkit.demo.section import DemoContext, Section
from cxrkit.io.images import load_gray8
from cxrkit.io.landmarks import organ_masks
from cxrkit.models import create_model
from cxrkit.qc.rca import optional_estimator
from cxrkit.segmentation.infer import predict_landmarks
from cxrkit.viz import render_overlay, save_png

THRESHOLD = 0.7


def build(ctx: DemoContext) -> Section:
    import cv2
    import numpy as np


    title = "Quality control: Reverse Classification Accuracy (RCA)"
    estimator, note = optional_estimator()
    if estimator is None:
        return Section(title=title, html=f"<p>Skipped: {html.escape(note)}</p>")
    reference = estimator.reference
    model = create_model("hybridgnet", pretrained=True)
    out = ctx.out / "qc"
    out.mkdir(parents=True, exist_ok=True)
    images = sorted((ctx.sample_dir / "nih" / "images").glob("*.png"))
    cases = []
    for path in images:
        gray = load_gray8(path)
        pts = predict_landmarks(model, [gray])[0]
        cases.append((path.name, gray, organ_masks(pts, *gray.shape), pts, "model output"))
    name, gray, masks, pts, _ = cases[0]
    h = gray.shape[0]
    broken = {"right_lung": masks["left_lung"], "left_lung": masks["right_lung"],
              "heart": np.roll(masks["heart"], -h // 4, axis=0)}
    cases.append((name, gray, broken, None, "deliberately broken: lungs swapped, heart moved up"))
    rows, figures, files = [], [], []
    for k, (name, gray, masks, pts, kind) in enumerate(cases):
        est = estimator.estimate(gray, masks)
        flagged = est.mean < THRESHOLD
        canvas = render_overlay(masks, pts, gray)
        colour = (0, 0, 255) if flagged else (0, 160, 0)
        cv2.putText(canvas, f"Dice RCA mean {est.mean:.2f}", (20, 60), cv2.FONT_HERSHEY_SIMPLEX,
                    gray.shape[1] / 700, colour, 3)
        fig = f"qc_{k}_{name.rsplit('.', 1)[0]}.png"
        save_png(out / fig, cv2.resize(canvas, (512, 512), interpolation=cv2.INTER_AREA))
        files.append(f"qc/{fig}")
        verdict = "FLAGGED for review" if flagged else "ok"
        ps = est.per_structure_mean
        rows.append(f"<tr><td>{html.escape(name)}</td><td>{html.escape(kind)}</td><td>{est.mean:.3f}</td>"
                    f"<td>{est.max:.3f}</td><td>{ps['right_lung']:.3f}</td><td>{ps['left_lung']:.3f}</td>"
                    f"<td>{ps['heart']:.3f}</td><td>{verdict}</td></tr>")
        figures.append(f'<figure><img src="qc/{fig}" alt="{html.escape(name)}"><figcaption>{html.escape(name)} '
                       f"({html.escape(kind)}): Dice RCA mean {est.mean:.3f}, {verdict}</figcaption></figure>")
    body = (
        f"<p>Each segmentation is registered to {len(reference)} reference radiographs with expert masks "
        f"({html.escape(reference.source)}; learned registration <code>rca_regnet</code>), its masks are carried "
        "into each reference and scored against the expert masks there: the mean and the maximum over the "
        f"references estimate its Dice with no ground truth. Masks with <code>Dice RCA (Mean) &lt; {THRESHOLD}</code> "
        "are flagged, as CheXmask recommends. The last row is the first image's segmentation broken on purpose.</p>"
        "<table><tr><th>image</th><th>segmentation</th><th>Dice RCA mean</th><th>max</th><th>right lung</th>"
        "<th>left lung</th><th>heart</th><th>verdict</th></tr>" + "".join(rows) + "</table>"
        f'<div class="grid">{"".join(figures)}</div>'
    )
    return Section(title=title, html=body, files=files)

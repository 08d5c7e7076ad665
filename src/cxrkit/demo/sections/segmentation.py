"""Demo section: lungs + heart landmarks and masks from the shipped HybridGNet-style model, with CTR."""

from __future__ import annotations

import html

from cxrkit.anatomy.measure import measure_masks
from cxrkit.demo.section import DemoContext, Section
from cxrkit.io.images import load_gray8
from cxrkit.io.inputs import collect_images
from cxrkit.io.landmarks import organ_masks
from cxrkit.models import create_model
from cxrkit.segmentation.infer import predict_landmarks, segment_files
from cxrkit.viz import render_overlay, save_png


def build(ctx: DemoContext) -> Section:
    import cv2


    model = create_model("hybridgnet", pretrained=True)
    out = ctx.out / "segmentation"
    out.mkdir(parents=True, exist_ok=True)

    _, inputs = collect_images([ctx.sample_dir / "nih" / "images"])
    images = [i.path for i in inputs]
    seg_csv = out / "segmentation.csv"
    seg_csv.unlink(missing_ok=True)
    segment_files(model, inputs, seg_csv, progress=False)
    rows, figures, files = [], [], ["segmentation/segmentation.csv"]
    for path in images:
        gray = load_gray8(path)
        pts = predict_landmarks(model, [gray])[0]
        masks = organ_masks(pts, *gray.shape)
        m = measure_masks(masks["right_lung"], masks["left_lung"], masks["heart"])
        canvas = render_overlay(masks, pts, gray)
        name = f"{path.stem}_segmentation.png"
        save_png(out / name, cv2.resize(canvas, (512, 512), interpolation=cv2.INTER_AREA))
        files.append(f"segmentation/{name}")
        rows.append(f"<tr><td>{html.escape(path.name)}</td><td>{m.ctr:.3f}</td><td>{m.heart_width_px}</td>"
                    f"<td>{m.thorax_width_px}</td><td>{m.area_right_lung_px}</td><td>{m.area_left_lung_px}</td>"
                    f"<td>{m.area_heart_px}</td></tr>")
        figures.append(f'<figure><img src="segmentation/{name}" alt="{html.escape(path.name)}">'
                       f"<figcaption>{html.escape(path.name)}: CTR {m.ctr:.3f}</figcaption></figure>")
    metrics = model.card.provenance.metrics_dict  # measured figures live in the card, not in this page
    dice = " / ".join(f"{metrics[f'jsrt_test_dice_{s}']:.3f}" for s in ("right_lung", "left_lung", "heart"))
    body = (
        f"<p>The HybridGNet-style model shipped in the package (trained on JSRT; test Dice {dice} "
        "for right lung / left lung / heart, from its model card) predicts 120 contour landmarks per image; the masks are the filled "
        "contours, so each structure is one closed region. Output in CheXmask's CSV layout: "
        '<a href="segmentation/segmentation.csv">segmentation.csv</a> (readable by <code>cxrkit chexmask</code>). '
        "CTR = maximal heart width / maximal thoracic width (pixels of the original image).</p>"
        "<table><tr><th>image</th><th>CTR</th><th>heart width</th><th>thorax width</th><th>right lung px</th>"
        "<th>left lung px</th><th>heart px</th></tr>" + "".join(rows) + "</table>"
        f'<div class="grid">{"".join(figures)}</div>'
    )
    return Section(title="Lungs and heart: landmarks, masks, cardiothoracic ratio", html=body, files=files)

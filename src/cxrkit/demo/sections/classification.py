"""Demo section: classification + weakly-supervised localization with the shipped lesion-insertion model.

Synthetic findings (Effusion, Mass, Nodule) are inserted into the bundled real NIH images with a fixed
seed (so their boxes are known exactly); the model shipped in the package (trained by ``cxrkit bench
lesions``, see README) predicts them, its class activation maps give boxes, and the overlays follow the
ChestX-ray8 paper's colours: ground truth blue, hits green, false positives red.
"""

from __future__ import annotations

import html

import numpy as np

from cxrkit.classification.lesion_data import fit_lung_template
from cxrkit.classification.lesions import LESION_FINDINGS, insert_findings
from cxrkit.classification.predict import overlay, predict_images
from cxrkit.demo.section import DemoContext, Section
from cxrkit.io.images import load_gray8
from cxrkit.metrics.localization import iobb
from cxrkit.models import create_model
from cxrkit.viz import save_png

MODEL = "resnet_lite_lesions"
SEED = 7


def build(ctx: DemoContext) -> Section:
    import cv2


    model = create_model(MODEL, pretrained=True)
    out = ctx.out / "classification"
    out.mkdir(parents=True, exist_ok=True)
    images = sorted((ctx.sample_dir / "nih" / "images").glob("*.png"))
    rows, figures, files = [], [], []
    for k, path in enumerate(images):
        gray = load_gray8(path)
        right, left, _ = fit_lung_template(gray)
        rng = np.random.default_rng([SEED, k])
        present = {f: bool(rng.uniform() < 0.6) for f in LESION_FINDINGS}
        img, boxes = insert_findings(gray.astype(np.float32) / 255, right, left, present, rng)
        img8 = (img * 255).round().astype(np.uint8)
        pred = predict_images(model, [img8], [path.name], box_policy="positive", max_boxes=1)[0]
        finding = next(iter(boxes), max(pred.probabilities, key=pred.probabilities.get))
        canvas = overlay(img8, pred, finding, truth=list(boxes.items()))
        name = f"{path.stem}_lesions.png"
        save_png(out / name, cv2.resize(canvas, (512, 512), interpolation=cv2.INTER_AREA))
        files.append(f"classification/{name}")
        hits = []
        for f, gt in boxes.items():
            pb = [b for b in pred.boxes if b["finding"] == f]
            hits.append(f"{f}: {'hit' if pb and iobb(gt, (pb[0]['x'], pb[0]['y'], pb[0]['w'], pb[0]['h'])) >= 0.5 else 'miss'}")
        truth = ", ".join(sorted(boxes)) or "none"
        probs = " ".join(f"{f[:3]} {pred.probabilities[f]:.2f}" for f in LESION_FINDINGS)
        rows.append(f"<tr><td>{html.escape(path.name)}</td><td>{html.escape(truth)}</td><td>{probs}</td>"
                    f"<td>{html.escape('; '.join(hits))}</td></tr>")
        figures.append(f'<figure><img src="classification/{name}" alt="{html.escape(path.name)}">'
                       f"<figcaption>{html.escape(path.name)}: inserted {html.escape(truth)}; heatmap of "
                       f"{html.escape(finding)}</figcaption></figure>")
    card = model.card
    body = (
        f"<p>Model <code>{MODEL}</code> ({html.escape(card.description)}), {card.input_size}px input, weights "
        f"sha256 <code>{str(card.weights_sha256)[:16]}...</code>, shipped in the package. Findings were inserted "
        "into the bundled real NIH images (fixed seed), so the true boxes are exact. Blue: inserted (truth); "
        "green: predicted box with IoBB &ge; 0.5; red: false positive. Of these six images, one was a training "
        "image of the benchmark (with other insertions), one a test image, four were left out of it because their "
        "NIH labels carry a real Effusion, Mass or Nodule (which this model was never taught about). Benchmark "
        "figures: README, <code>cxrkit bench lesions</code>.</p>"
        "<table><tr><th>image</th><th>inserted</th><th>probabilities</th><th>localization</th></tr>"
        + "".join(rows) + "</table>"
        f'<div class="grid">{"".join(figures)}</div>'
    )
    return Section(title="Classification and localization (lesion-insertion model)", html=body, files=files)

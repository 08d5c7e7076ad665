"""Demo section: ChestX-ray14 statistics on the full bundled metadata, and images with expert boxes."""

from __future__ import annotations

import html

from cxrkit.data.nih import read_boxes, read_metadata
from cxrkit.data.splits import official_split, patient_split
from cxrkit.demo.section import DemoContext, Section
from cxrkit.io.geometry import resize_area, scale_boxes
from cxrkit.io.images import load_gray8
from cxrkit.stats.summary import summarize, write_summary
from cxrkit.viz import BLUE, draw_boxes, save_png, to_bgr


def build(ctx: DemoContext) -> Section:
    src = ctx.sample_dir / "nih"
    out = ctx.out / "nih"
    df = read_metadata(src / "Data_Entry_2017_v2020.csv.gz")
    official = official_split(src)
    tv = patient_split(official["train_val"], 0.1, seed=0)
    splits = {"train": tv["train"], "val": tv["val"], "test": official["test"]}
    write_summary(df, out / "stats", splits)
    summary = summarize(df, splits)

    rows = "".join(
        f"<tr><td>{n}</td><td>{s['images']:,}</td><td>{s['patients']:,}</td>"
        f"<td>{s['age']['mean']:.1f}</td><td>{next((r['fraction'] for r in s['sex'] if r['Patient Gender'] == 'F'), 0):.1%}</td></tr>"
        for n, s in summary.items()
    )
    stats_html = (
        "<p>Full NIH metadata (Data_Entry_2017_v2020, 112,120 images) with the official test split and a "
        "seeded patient-wise train/val split of train_val (no patient crosses splits).</p>"
        f"<table><tr><th>split</th><th>images</th><th>patients</th><th>mean age</th><th>female</th></tr>{rows}</table>"
        '<p><img src="nih/stats/prevalence.png" alt="prevalence"></p>'
        '<p><img src="nih/stats/cooccurrence_all.png" alt="co-occurrence" style="max-width:700px"></p>'
        '<p><img src="nih/stats/demographics_all.png" alt="demographics"></p>'
        '<p>Tables: <a href="nih/stats/summary.json">summary.json</a>, '
        '<a href="nih/stats/cooccurrence_all.csv">cooccurrence_all.csv</a>, '
        '<a href="nih/stats/prevalence_all.csv">prevalence_all.csv</a></p>'
    )

    boxes = read_boxes(src / "BBox_List_2017.csv.gz")
    meta = df.set_index("Image Index")
    figures = []
    for path in sorted((src / "images").glob("*.png")):
        name = path.name
        gray = load_gray8(path)
        small = resize_area(gray, 512)
        b = boxes[boxes["Image Index"] == name]
        canvas = draw_boxes(to_bgr(small), scale_boxes(b[["x", "y", "w", "h"]].to_numpy(), gray.shape, (512, 512)),
                            list(b["Finding"]), BLUE)
        rel = f"nih/boxes/{path.stem}.png"
        save_png(ctx.out / rel, canvas)
        r = meta.loc[name]
        caption = (f"{name}: {html.escape(r['Finding Labels'])}; {r['Patient Gender']}, "
                   f"{r['Patient Age']:.0f} y, {r['View Position']}")
        figures.append(f'<figure><img src="{rel}" alt="{name}"><figcaption>{caption}</figcaption></figure>')
    images_html = ("<h3>Bundled images with expert boxes (blue)</h3>"
                   f'<div class="grid">{"".join(figures)}</div>')
    return Section("ChestX-ray14 statistics and expert boxes", stats_html + images_html)

"""Print the lesion benchmark's multi-seed summaries side by side, as Markdown (figures read from the files).

    .venv/bin/python bench/lesion_seeds_table.py NAME=DIR [NAME=DIR ...] [--per-finding] [--validation] [--thresholds]

Each DIR is a ``cxrkit bench lesions --seeds ... --out DIR`` folder: its ``summary.json`` (mean and sd over the
seeds) and ``seed-K/metrics.json`` (every run). One row per DIR: mean +- sd and the value of every seed, for the
mean AUROC, accuracy at T(IoBB)=0.5 and T(IoU)=0.3 and the mean IoU on the test images (``--per-finding``: also
one row per finding). ``--validation`` adds the validation figures at the chosen box rules (the figures that
chose them), so a configuration can be picked without looking at the test columns. ``--thresholds``: per DIR,
accuracy at T = 0.1 ... 0.7 for IoBB and IoU, overall and per finding (mean +- sd). ``--geometry``: per DIR and
finding, from the seeds' ``test_predictions.csv`` (positives with a box, all seeds pooled): the median predicted
box width and height over the inserted box's, and the median offset of the box centre from the lesion's
(original pixels).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

TEST = ("mean_auroc", "acc_iobb@0.5", "acc_iou@0.3", "mean_iou")
THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
FINDING = ("auroc",) + TEST[1:]
VALIDATION = ("mean_iou", "acc_iou@0.3", "acc_iobb@0.5")


def _cell(values: list[float]) -> str:
    v = np.array(values, float)
    sd = float(v.std(ddof=1)) if len(v) > 1 else 0.0
    return f"{v.mean():.3f} ± {sd:.3f} ({' / '.join(f'{x:.3f}' for x in v)})"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("runs", nargs="+", metavar="NAME=DIR")
    p.add_argument("--per-finding", action="store_true")
    p.add_argument("--validation", action="store_true")
    p.add_argument("--thresholds", action="store_true")
    p.add_argument("--geometry", action="store_true")
    args = p.parse_args(argv)
    rows = []
    for item in args.runs:
        name, _, folder = item.partition("=")
        if not folder:
            p.error(f"{item!r}: expected NAME=DIR")
        summary = json.loads((Path(folder) / "summary.json").read_text())
        seeds = summary["seeds"]
        runs = [json.loads((Path(folder) / f"seed-{s}" / "metrics.json").read_text()) for s in seeds]
        row = {"name": name, "seeds": seeds, "test": {m: summary["overall"][m]["runs"] for m in TEST},
               "summary": summary}
        row["findings"] = {f: {m: d[m]["runs"] for m in FINDING} for f, d in summary["per_finding"].items()}
        row["val"] = {m: [r["box_method"]["validation_chosen"][m] for r in runs] for m in VALIDATION}
        row["folder"], row["seed_list"] = Path(folder), seeds
        rows.append(row)
    seeds = "/".join(str(s) for s in rows[0]["seeds"])
    where = "validation columns: validation images at the chosen box rules; the others: test images" if args.validation \
        else "test images"
    out = [f"Mean ± sd over seeds (seeds {seeds} in brackets); {where}:", ""]
    cols = (["validation " + m for m in VALIDATION] if args.validation else []) + list(TEST)
    out.append("| run | " + " | ".join(cols) + " |")
    out.append("|---|" + "---|" * len(cols))
    for r in rows:
        cells = ([_cell(r["val"][m]) for m in VALIDATION] if args.validation else []) + [_cell(r["test"][m]) for m in TEST]
        out.append(f"| {r['name']} | " + " | ".join(cells) + " |")
        if args.per_finding:
            for f, d in r["findings"].items():
                extra = ["" for _ in VALIDATION] if args.validation else []
                out.append(f"| {r['name']}: {f} | " + " | ".join(extra + [_cell(d[m]) for m in FINDING]) + " |")
    if args.thresholds:
        for r in rows:
            parts = [("all", r["summary"]["overall"]), *r["summary"]["per_finding"].items()]
            out += ["", f"{r['name']}: accuracy on the test images at T, mean ± sd over seeds {seeds}", "",
                    "| T | " + " | ".join(f"{n} IoBB > T | {n} IoU > T" for n, _ in parts) + " |",
                    "|---|" + "---|---|" * len(parts)]
            for t in THRESHOLDS:
                cells = []
                for _, d in parts:
                    for kind in ("iobb", "iou"):
                        st = d[f"acc_{kind}@{t}"]
                        cells.append(f"{st['mean']:.3f} ± {st['sd']:.3f}")
                out.append(f"| {t} | " + " | ".join(cells) + " |")
    if args.geometry:
        import csv

        out += ["", "Test boxes against the inserted boxes (positives with a box, seeds pooled; medians):", "",
                "| run | finding | boxes | width ratio | height ratio | centre dx, dy (px) | truth w x h (px) |",
                "|---|---|---|---|---|---|---|"]
        for r in rows:
            pairs: dict[str, list[tuple[float, ...]]] = {}
            for s in r["seed_list"]:
                with open(r["folder"] / f"seed-{s}" / "test_predictions.csv", newline="") as fh:
                    for x in csv.DictReader(fh):
                        if x["label"] == "1" and x["pred_x"] != "":
                            g = [float(x[f"gt_{k}"]) for k in "xywh"]
                            b = [float(x[f"pred_{k}"]) for k in "xywh"]
                            pairs.setdefault(x["finding"], []).append(
                                (b[2] / g[2], b[3] / g[3], b[0] + b[2] / 2 - g[0] - g[2] / 2,
                                 b[1] + b[3] / 2 - g[1] - g[3] / 2, g[2], g[3]))
            for f, v in pairs.items():
                m = np.median(np.array(v), axis=0)
                out.append(f"| {r['name']} | {f} | {len(v)} | {m[0]:.2f} | {m[1]:.2f} | {m[2]:+.0f}, {m[3]:+.0f} | "
                           f"{m[4]:.0f} x {m[5]:.0f} |")
    sys.stdout.write("\n".join(out) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""RCA time per image: the learned registration (rca_regnet, the default) vs classical iterative
registration (the baseline), same images, same reference set, same run; plus their agreement with the
true Dice from a `cxrkit bench rca` summary when one is given (with a paired bootstrap CI of the difference
in Pearson r when its per_case.csv lies beside it).

Usage: python bench/bench_rca.py [--images N] [--summary runs/rca_test/summary.csv] [--threads T]
       [--reference-set jsrt|shipped]
Images: the first N JSRT test images (../shared/data/segmentation/jsrt) with their expert masks as the
segmentation being scored (time does not depend on the masks). Time per image covers preprocessing,
registration to all references and the Dice there (not image decoding).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    from cxrkit.data.jsrt import read_jsrt
    from cxrkit.io.images import load_gray8
    from cxrkit.qc.rca import RcaEstimator
    from cxrkit.qc.reference import load_reference

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jsrt", default=str(REPO.parent / "shared" / "data" / "segmentation" / "jsrt"))
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--summary", help="summary.csv of `cxrkit bench rca` to print r / MAE beside the times")
    ap.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    ap.add_argument("--reference-set", default="jsrt", choices=("jsrt", "shipped"),
                    help="the reference set timed, and whose rows of the summary are shown (default: jsrt)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.reference_set == "shipped":
        from cxrkit.qc.reference import shipped_reference

        reference = shipped_reference()
    else:
        reference = load_reference(args.jsrt)
    cases = read_jsrt(args.jsrt, split="test")[: args.images]
    data = [(load_gray8(c.image), c.load_masks()) for c in cases]
    times = {}
    for method in ("iterative", "learned"):
        est = RcaEstimator(reference, method)
        est.estimate(*data[0])  # warm-up
        t = time.perf_counter()
        for image, masks in data:
            est.estimate(image, masks)
        times[method] = (time.perf_counter() - t) / len(data)
    print(f"RCA against {len(reference)} references, {len(data)} JSRT test images, {torch.get_num_threads()} threads:")
    print(f"  iterative registration (baseline)  {1000 * times['iterative']:9.1f} ms/image")
    print(f"  learned registration (rca_regnet)  {1000 * times['learned']:9.1f} ms/image   "
          f"{times['iterative'] / times['learned']:6.1f}x faster")
    if args.summary:
        import numpy as np
        import pandas as pd

        s = pd.read_csv(args.summary)
        if "reference_set" in s.columns:  # one set's rows (a summary may hold several)
            s = s[s["reference_set"] == args.reference_set]
        s = s[s["estimate"].isin(["max", "calibrated"])]
        print(f"agreement with the true Dice ({args.summary}):")
        print(s.pivot_table(index=["structure", "estimate"], columns="method", values=["pearson_r", "mae"])
              .round(4).to_string())
        per_case = Path(args.summary).with_name("per_case.csv")
        if per_case.is_file():  # paired bootstrap over images of r(learned) - r(iterative), RCA max
            d = pd.read_csv(per_case)
            if "reference_set" in d.columns:
                d = d[d["reference_set"] == args.reference_set]
            rng = np.random.default_rng(0)
            print("r(learned) - r(iterative), RCA max, 95% bootstrap CI over images (1,000 resamples):")
            for structure, g in d.groupby("structure", sort=False):
                groups = [x for _, x in g.groupby("image")]
                def diff(parts):
                    x = pd.concat(parts)
                    return (np.corrcoef(x["true_dice"], x["learned_max"])[0, 1]
                            - np.corrcoef(x["true_dice"], x["iterative_max"])[0, 1])
                boots = [diff([groups[i] for i in rng.integers(0, len(groups), len(groups))]) for _ in range(1000)]
                lo, hi = np.percentile(boots, [2.5, 97.5])
                print(f"  {structure:<10} {diff(groups):+.4f}  [{lo:+.4f}, {hi:+.4f}]")


if __name__ == "__main__":
    main()

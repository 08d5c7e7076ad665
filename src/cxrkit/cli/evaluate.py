"""``cxrkit evaluate``: per-class AUROC with bootstrap CIs, ROC plots, and the published numbers beside them."""

from __future__ import annotations

import argparse
import sys

from cxrkit.cli.options import nonneg_int


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="AUROC per finding (+95%% bootstrap CI) of a predictions CSV vs NIH labels",
                       description="Per-finding AUROC with 95% percentile-bootstrap CIs (image-level resamples), "
                       "ROC plots, and a table beside published results. Writes OUT/auroc.csv "
                       "(finding,auroc,ci_low,ci_high,n_pos,n_neg; 14 rows then 'mean'), OUT/comparison.csv/.md, "
                       "OUT/roc_curves.png and OUT/roc_overlay.png, and prints the table.")
    p.add_argument("--predictions", required=True,
                   help="CSV: 'Image Index' + one FINDING or prob_FINDING column per finding")
    p.add_argument("--metadata", required=True,
                   help="NIH metadata with the labels (2017, v2020 or Kaggle; plain or gzip)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--n-boot", type=nonneg_int, default=1000, help="bootstrap resamples (default 1000; 0: no CIs)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.add_argument("--no-plots", action="store_true", help="skip the ROC plots")
    p.set_defaults(func=_evaluate)


def _evaluate(args: argparse.Namespace) -> int:
    from cxrkit.classification.evaluate import evaluate_predictions

    table = evaluate_predictions(args.predictions, args.metadata, args.out, n_boot=args.n_boot, seed=args.seed,
                                 plots=not args.no_plots)
    sys.stdout.write(table.to_string(index=False, float_format=lambda v: f"{v:.4f}") + "\n")
    return 0

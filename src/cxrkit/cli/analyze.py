"""``cxrkit analyze``: probabilities, boxes, landmarks, masks, QC and CTR per image (JSON + HTML)."""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("analyze", help="every model on each image: one JSON (documented schema) and one HTML report")
    p.add_argument("images", nargs="+", help="PNG, JPEG or DICOM files or folders (DICOM pixel spacing gives mm)")
    p.add_argument("--out", required=True, help="output folder: <stem>.json, <stem>.html and <stem>.preview.png "
                                                 "per image (`cxrkit serve --results DIR` browses it)")
    p.add_argument("--model", help="classifier checkpoint (default: the shipped resnet_lite_lesions, a benchmark "
                                   "model for 3 synthetic findings; use one trained with `cxrkit train`)")
    p.add_argument("--segmentation-model", help="landmark checkpoint (default: the shipped hybridgnet)")
    p.add_argument("--no-qc", action="store_true", help="skip RCA quality control")
    from cxrkit.cli.qc import add_rca_options

    add_rca_options(p)
    p.add_argument("--heatmaps", action="store_true",
                   help="put each finding's heatmap into the JSON (low-resolution 8-bit PNG; schema 1.1 `heatmaps`)")
    p.add_argument("--no-preview", action="store_true",
                   help="do not write <stem>.preview.png (the downscaled 8-bit image browse mode shows)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_analyze)


def _analyze(args: argparse.Namespace) -> int:
    from cxrkit.analysis.analyze import Analyzer, analyze_files
    from cxrkit.cli.qc import rca_kwargs
    from cxrkit.io.images import expand_image_paths
    from cxrkit.models.checkpoint import load_checkpoint
    from cxrkit.qc.rca import optional_estimator

    qc, note = None, "quality control skipped (--no-qc)"
    if not args.no_qc:
        qc, note = optional_estimator(**rca_kwargs(args))
        if qc is None:
            sys.stderr.write(note.splitlines()[0][:200] + "\n")
    analyzer = Analyzer(load_checkpoint(args.model) if args.model else None,
                        load_checkpoint(args.segmentation_model) if args.segmentation_model else None, qc, note)
    paths = expand_image_paths(args.images)
    failures = analyze_files(analyzer, paths, args.out, progress=not args.quiet, heatmaps=args.heatmaps,
                             preview=not args.no_preview)
    sys.stdout.write(f"{args.out}: {len(paths) - len(failures)} analyzed, {len(failures)} failed\n")
    for p, e in failures:
        sys.stdout.write(f"failed {p}: {e}\n")
    return 1 if failures else 0

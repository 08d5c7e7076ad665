"""``cxrkit analyze``: landmarks, masks, QC, CTR (and, with a named classifier, findings) per image: JSON + HTML."""

from __future__ import annotations

import argparse
import sys

from cxrkit.cli.options import (
    add_device_options,
    add_model_option,
    add_precision_option,
    model_device,
    positive_int,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("analyze", help="every model on each image: one JSON (documented schema) and one HTML report",
                       description="Outputs mirror the input tree: OUT/<relative folder>/<stem>.json (see README: "
                                   "image identity). No classifier runs unless --model names one.")
    p.add_argument("images", nargs="+", help="PNG, JPEG or DICOM files or folders (DICOM pixel spacing gives mm)")
    p.add_argument("--out", required=True, help="output folder: <stem>.json, <stem>.html and <stem>.preview.png "
                                                 "per image (`cxrkit serve --results DIR` browses it)")
    add_model_option(p, "classifier (none runs unless named: cxrkit ships no classifier trained on real labels; "
                        "resnet_lite_lesions is a synthetic-lesion benchmark model)", None)
    add_model_option(p, "landmark model", "hybridgnet (shipped)", flag="--segmentation-model")
    p.add_argument("--no-qc", action="store_true", help="skip RCA quality control")
    from cxrkit.cli.qc import add_rca_options

    add_rca_options(p)
    p.add_argument("--heatmaps", action="store_true",
                   help="put each finding's heatmap into the JSON (low-resolution 8-bit PNG; schema `heatmaps`)")
    p.add_argument("--no-preview", action="store_true",
                   help="do not write <stem>.preview.png (the downscaled 8-bit image browse mode shows)")
    p.add_argument("--batch-size", type=positive_int, default=8, help="images per forward pass (default 8)")
    add_device_options(p)
    add_precision_option(p, "each")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_analyze)


def _analyze(args: argparse.Namespace) -> int:
    from cxrkit.analysis.analyze import Analyzer, analyze_files
    from cxrkit.cli.qc import rca_kwargs
    from cxrkit.io.inputs import collect_images
    from cxrkit.io.outputs import output_dir
    from cxrkit.models import load_model
    from cxrkit.qc.rca import optional_estimator

    _root, inputs = collect_images(args.images)
    classifier = (load_model(args.model, task="classification", needs="logits", device=args.device)
                  if args.model else None)
    segmenter = load_model(args.segmentation_model, default="hybridgnet", task="segmentation", needs="landmarks",
                           device=args.device)
    with output_dir(args.out) as out:
        qc, note = None, "quality control skipped (--no-qc)"
        if not args.no_qc:
            qc, note = optional_estimator(**rca_kwargs(args), device=model_device(segmenter))
            if qc is None:
                sys.stderr.write(note.splitlines()[0][:200] + "\n")
        analyzer = Analyzer(classifier, segmenter, qc, note)
        failures = analyze_files(analyzer, inputs, out, progress=not args.quiet, heatmaps=args.heatmaps,
                                 preview=not args.no_preview, workers=args.workers, batch_size=args.batch_size,
                                 precision=args.precision)
    sys.stdout.write(f"{args.out}: {len(inputs) - len(failures)} analyzed, {len(failures)} failed\n")
    return 1 if failures else 0

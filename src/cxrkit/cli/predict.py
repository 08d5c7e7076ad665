"""``cxrkit predict`` (single images -> JSON + overlay) and ``cxrkit localize`` (scored against boxes)."""

from __future__ import annotations

import argparse
import logging
import sys

from cxrkit.cli.options import add_device_options, add_precision_option, positive_int

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="the model's finding probabilities, heatmaps and boxes per image (JSON + overlay PNG)",
                       description="One probability per label of the model's card (14 for a model trained with "
                                   "`cxrkit train`). Outputs mirror the input tree: OUT/<relative folder>/<stem>.json.")
    p.add_argument("images", nargs="+", help="PNG, JPEG or DICOM files or folders")
    p.add_argument("--model", required=True, metavar="NAME|CKPT",
                   help="classifier: a checkpoint (from `cxrkit train`, `cxrkit bench lesions`, `cxrkit models import`) "
                        "or a registry name with shipped weights (`cxrkit models list`)")
    p.add_argument("--out", required=True, help="output folder: <stem>.json, <stem>_overlay.png")
    p.add_argument("--heatmap", choices=("cam", "gradcam"), default="cam")
    p.add_argument("--box-method", choices=("card", "paper", "adaptive"), default="card",
                   help="heatmap -> boxes: 'card' (default): the box rules the model's card carries (for the shipped "
                        "resnet_lite_lesions, per finding, chosen on the lesion benchmark's validation images; "
                        "'paper' for a card without rules), or the ChestX-ray8 paper's or the adaptive method")
    p.add_argument("--all-boxes", action="store_true", help="boxes for every finding, not only those above threshold")
    p.add_argument("--save-heatmaps", action="store_true", help="also write <stem>_heatmaps.npz (float16, original size)")
    p.add_argument("--batch-size", type=positive_int, default=8, help="images per forward pass (default 8)")
    add_device_options(p)
    add_precision_option(p, "classification")
    p.set_defaults(func=_predict)

    ps = sub.add_parser("predict-split", help="probabilities for every image of the official test list as a CSV "
                        "that `cxrkit evaluate` reads")
    ps.add_argument("--model", required=True, help="cxrkit checkpoint")
    ps.add_argument("--images", required=True, help="NIH image folder")
    ps.add_argument("--metadata", required=True, help="NIH metadata CSV")
    ps.add_argument("--split-dir", required=True, help="folder with train_val_list.txt and test_list.txt")
    ps.add_argument("--out", required=True, help="output CSV: Image Index, prob_<finding>...")
    ps.add_argument("--batch-size", type=positive_int, default=16)
    add_device_options(ps)
    ps.set_defaults(func=_predict_split)

    loc = sub.add_parser("localize", help="heatmap boxes on images with expert boxes: IoU/IoBB tables beside the paper's")
    loc.add_argument("--model", required=True, help="cxrkit checkpoint")
    loc.add_argument("--images", required=True, help="image folder")
    loc.add_argument("--boxes", required=True, help="BBox_List_2017.csv (plain or gzip)")
    loc.add_argument("--out", required=True, help="output folder")
    loc.add_argument("--heatmap", choices=("cam", "gradcam"), default="cam")
    loc.add_argument("--methods", help="comma-separated box methods to score: card (the model card's box rules), "
                     "paper, adaptive (default: card,paper,adaptive when the card has box rules, else paper,adaptive)")
    loc.add_argument("--no-overlays", action="store_true")
    add_device_options(loc)
    loc.set_defaults(func=_localize)


def _predict(args: argparse.Namespace) -> int:
    from cxrkit.classification.job import PredictItem, PredictJob
    from cxrkit.engine import Failure, run_pipeline, workers_for
    from cxrkit.io.inputs import collect_images, output_stems
    from cxrkit.io.outputs import output_dir
    from cxrkit.models import load_model

    _root, inputs = collect_images(args.images)
    model = load_model(args.model, task="classification", needs="logits", device=args.device)
    stems = output_stems([i.id for i in inputs])
    items = [PredictItem(i.path, i.id, stems[i.id]) for i in inputs]
    failures: list[str] = []
    with output_dir(args.out) as out:
        job = PredictJob(model, heatmap_method=args.heatmap, box_method=args.box_method,
                         box_policy="all" if args.all_boxes else "positive", out_dir=out,
                         save_heatmaps=args.save_heatmaps, precision=args.precision)

        def emit(item, result) -> None:
            if isinstance(result, Failure):
                failures.append(result.message)
                log.error("%s", result.message)
                return
            top = sorted(result["probabilities"].items(), key=lambda kv: -kv[1])[:3]
            sys.stdout.write(f"{item.image_id}: " + ", ".join(f"{k} {v:.3f}" for k, v in top)
                             + f"; {len(result['boxes'])} boxes\n")

        run_pipeline(job, items, emit, workers=workers_for(args.workers, len(items)), batch_size=args.batch_size)
    if failures:
        sys.stdout.write(f"{args.out}: {len(inputs) - len(failures)} predicted, {len(failures)} failed\n")
        return 1
    return 0


def _predict_split(args: argparse.Namespace) -> int:
    from cxrkit.classification.nih_training import predict_nih_test
    from cxrkit.io.outputs import check_out_file

    check_out_file(args.out)
    path = predict_nih_test(args.model, args.metadata, args.images, args.split_dir, args.out, args.batch_size,
                            device=args.device)
    sys.stdout.write(f"wrote {path}\n")
    return 0


def _localize(args: argparse.Namespace) -> int:
    from cxrkit.classification.localize import localize_folder

    methods = None if args.methods is None else tuple(m.strip() for m in args.methods.split(",") if m.strip())
    from cxrkit.io.outputs import output_dir

    with output_dir(args.out):
        tables = localize_folder(args.model, args.images, args.boxes, args.out, heatmap_method=args.heatmap,
                                 box_methods=methods, overlays=not args.no_overlays, device=args.device)
    for method, table in tables.items():
        sys.stdout.write(f"# box method: {method}\n{table.to_string()}\n")
    return 0

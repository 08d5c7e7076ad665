"""``cxrkit nih``: metadata checks and the patient-wise split."""

from __future__ import annotations

import argparse
from pathlib import Path

from cxrkit.cli.options import open_fraction
from cxrkit.data.nih import read_boxes, read_metadata
from cxrkit.data.splits import check_patient_disjoint, official_split, patient_split
from cxrkit.io.atomic import write_text


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("nih", help="NIH ChestX-ray14 metadata, boxes and splits")
    s = p.add_subparsers(dest="nih_command", metavar="NIH_COMMAND")
    s.required = True

    i = s.add_parser("info", help="parse metadata (and boxes) and print a short description")
    i.add_argument("--metadata", required=True)
    i.add_argument("--boxes", help="BBox_List_2017.csv(.gz)")
    i.set_defaults(func=_info)

    sp = s.add_parser("split", help="official test + seeded patient-wise train/val of train_val")
    sp.add_argument("--split-dir", required=True, help="folder with train_val_list.txt and test_list.txt")
    sp.add_argument("--val-fraction", type=open_fraction, default=0.1)
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--out", required=True, help="folder for train.txt, val.txt, test.txt")
    sp.set_defaults(func=_split)

    c = s.add_parser("check-split", help="fail if any patient appears in more than one list")
    c.add_argument("lists", nargs="+", help="image list files (one name per line)")
    c.set_defaults(func=_check)


def _info(args: argparse.Namespace) -> int:
    df = read_metadata(args.metadata)
    print(f"{args.metadata}: format {df.attrs['format']}, {len(df)} images, {df['Patient ID'].nunique()} patients")
    if args.boxes:
        b = read_boxes(args.boxes)
        print(f"{args.boxes}: {len(b)} boxes on {b['Image Index'].nunique()} images, "
              f"classes: {', '.join(sorted(b['Finding'].unique()))}")
    return 0


def _split(args: argparse.Namespace) -> int:
    official = official_split(args.split_dir)
    tv = patient_split(official["train_val"], args.val_fraction, args.seed)
    splits = {"train": tv["train"], "val": tv["val"], "test": official["test"]}
    check_patient_disjoint(splits)
    out = Path(args.out)
    for name, images in splits.items():
        write_text(out / f"{name}.txt", "".join(f"{x}\n" for x in images))
        print(f"{name}: {len(images)} images")
    return 0


def _check(args: argparse.Namespace) -> int:
    from cxrkit.data.splits import read_image_list

    check_patient_disjoint({p: read_image_list(p) for p in args.lists})
    print("no patient crosses the lists")
    return 0

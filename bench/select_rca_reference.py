"""How the shipped RCA reference set (src/cxrkit/qc/data/reference_nih.npz) was selected; prints every step.

1. Screen: segment every NIH image with the shipped hybridgnet (the masks `cxrkit segment` writes); keep PA
   views of adults without the NIH labels that change the outline of the lungs or heart, not the demo
   sample images, with plausible masks (one component, no hole per structure) and an RCA estimate against
   the JSRT expert set (learned registration, shipped calibration) of at least 0.94 / 0.93 / 0.90 (right
   lung / left lung / heart).
2. Leave out the images a person rejected on the overlays (``--exclude``; default: the ones the shipped
   card lists under selection.excluded_after_viewing, with the reason for each).
3. Choose K greedily: each step adds the candidate that maximizes min over structures (and overall) of
   r(set) - r(JSRT set), the Pearson r of the RCA max with the true Dice over the `cxrkit bench rca`
   candidates (hybridgnet outputs clean and low-contrast, damaged expert masks) on JSRT *training* images
   that are not JSRT references (every 4th of the 158; --selection-stride). The validation and test
   splits take no part (``--check-val`` reports the chosen set on the validation split afterwards).

Usage: python bench/select_rca_reference.py [--k 20] [--threads 1] [--check-val] [--tiny]
Takes about 15 minutes on one CPU thread (the RCA of 40 x 31 candidates against ~50 references).
The chosen ids are then built into the file with
`cxrkit qc-reference build ../shared/data/nih/images --ids ... --out reference_nih.npz` (or `--like CARD`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
FINDINGS_OUT = {"Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Effusion", "Hernia", "Mass", "Pneumonia",
                "Pneumothorax"}
MIN_RCA = {"right_lung": 0.94, "left_lung": 0.93, "heart": 0.90}


def screen(images: Path, metadata: Path, jsrt_estimator, seg_model, max_images: int | None = None):
    """The candidates passing the automatic screen, as a reference set (ids = file stems, sorted)."""
    import pandas as pd

    from cxrkit.io.images import load_gray8
    from cxrkit.metrics.segmentation import plausibility
    from cxrkit.qc.reference import STRUCTURES, ReferenceSet, to_square
    from cxrkit.segmentation.infer import predict_landmarks
    from cxrkit.segmentation.rows import snap_landmarks

    meta = pd.read_csv(metadata).set_index("Image Index")
    demo = {p.name for p in (REPO / "src" / "cxrkit" / "demo" / "sample" / "nih" / "images").glob("*.png")}
    paths = sorted(images.glob("*.png"))[:max_images]
    counts = {"images": len(paths), "PA adult": 0, "labels": 0, "not demo": 0, "plausible": 0, "RCA vs JSRT": 0}
    ids, imgs, masks = [], [], []
    for p in paths:
        row = meta.loc[p.name]
        if row["View Position"] != "PA" or int(row["Patient Age"]) < 18:
            continue
        counts["PA adult"] += 1
        if set(str(row["Finding Labels"]).split("|")) & FINDINGS_OUT:
            continue
        counts["labels"] += 1
        if p.name in demo:
            continue
        counts["not demo"] += 1
        img = load_gray8(p)
        _, m = snap_landmarks(predict_landmarks(seg_model, [img])[0], *img.shape)
        if not all(plausibility(m[s])["plausible"] for s in STRUCTURES):
            continue
        counts["plausible"] += 1
        est = jsrt_estimator.estimate(img, m).calibrated
        if all(est[s] >= v for s, v in MIN_RCA.items()):
            counts["RCA vs JSRT"] += 1
            ids.append(p.stem)
            imgs.append(to_square(img, 128).astype(np.float32) / 255.0)
            masks.append(np.stack([to_square(m[s], 256, mask=True) for s in STRUCTURES]))
    print("screen:", ", ".join(f"{k} {v}" for k, v in counts.items()))
    return ReferenceSet(tuple(ids), torch.from_numpy(np.stack(imgs))[:, None], torch.from_numpy(np.stack(masks)),
                        "candidates")


def per_reference_dice(jsrt: Path, split: str, cases_filter, estimators: dict, seg_model, seed: int = 0):
    """For every bench candidate on the split: true Dice (N, 3) and per-reference Dice (N, K, 3) per set,
    with the candidates and random draws of cxrkit.qc.validation.build_and_score."""
    from cxrkit.data.jsrt import read_jsrt
    from cxrkit.io.images import load_gray8
    from cxrkit.metrics.segmentation import dice
    from cxrkit.qc.reference import STRUCTURES, query_image, query_masks
    from cxrkit.qc.validation import degradations, model_masks
    from cxrkit.segmentation.evaluate import perturb

    rng = np.random.default_rng(seed)
    true, per = [], {k: [] for k in estimators}
    for case in cases_filter(read_jsrt(jsrt, split=split)):
        image, truth = load_gray8(case.image), case.load_masks()
        low, _ = perturb(image, "low_contrast", rng)
        groups = [(image, {"model": model_masks(seg_model, image)}), (low, {"model@low": model_masks(seg_model, low)})]
        groups[0][1].update(degradations(truth, image.shape[0] / 1024, rng))
        for img, cands in groups:
            transforms = {k: e.register(query_image(img)) for k, e in estimators.items()}
            for m in cands.values():
                true.append([dice(m[s], truth[s]) for s in STRUCTURES])
                q = query_masks(m, img.shape)
                for k, e in estimators.items():
                    per[k].append(e.score(transforms[k], q))
    return np.array(true), {k: np.stack(v) for k, v in per.items()}


def agreement_r(true: np.ndarray, per: np.ndarray) -> dict[str, float]:
    """Pearson r of the RCA max with the true Dice, per structure and overall (mean of the three)."""
    from cxrkit.qc.reference import STRUCTURES

    r = {s: float(np.corrcoef(true[:, j], per[:, :, j].max(1))[0, 1]) for j, s in enumerate(STRUCTURES)}
    r["all"] = float(np.corrcoef(true.mean(1), per.mean(2).max(1))[0, 1])
    return r


def greedy(true, pool, base, ids, k):
    rb = agreement_r(true, base)
    chosen: list[int] = []
    while len(chosen) < k:
        def score(i):
            r = agreement_r(true, pool[:, chosen + [i]])
            return min(r[s] - rb[s] for s in r), float(np.mean(list(r.values())))
        best = max((i for i in range(len(ids)) if i not in chosen), key=score)
        chosen.append(best)
        r = agreement_r(true, pool[:, chosen])
        print(f"  {len(chosen):2d}. {ids[best]}  r - r(JSRT): " + " ".join(f"{s} {r[s] - rb[s]:+.4f}" for s in r))
    return [ids[i] for i in chosen]


def main() -> None:
    from cxrkit.data.jsrt import read_jsrt
    from cxrkit.models import create_model
    from cxrkit.qc.rca import RcaEstimator
    from cxrkit.qc.reference import (
        DEFAULT_JSRT_IDS,
        load_reference,
        read_card,
        shipped_reference_path,
    )

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", default=str(SHARED / "nih" / "images"))
    ap.add_argument("--metadata", default=str(SHARED / "nih" / "Data_Entry_2017_v2020.csv.gz"))
    ap.add_argument("--jsrt", default=str(SHARED / "segmentation" / "jsrt"))
    ap.add_argument("--exclude", nargs="*", help="ids rejected on their overlays (default: the shipped card's)")
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--selection-stride", type=int, default=4)
    ap.add_argument("--check-val", action="store_true", help="also report the chosen set on the validation split")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--tiny", action="store_true",
                    help="a smoke run (the test suite's): 40 images screened, 2 JSRT selection images, K = 2")
    args = ap.parse_args()
    if args.tiny:
        args.k, args.selection_stride, args.check_val = 2, 60, False
    torch.set_num_threads(args.threads)
    seg = create_model("hybridgnet", pretrained=True).eval()
    jsrt_ref = load_reference(args.jsrt)
    candidates = screen(Path(args.images), Path(args.metadata), RcaEstimator(jsrt_ref, "learned"), seg,
                        max_images=40 if args.tiny else None)
    exclude = args.exclude
    if exclude is None:
        exclude = list(read_card(shipped_reference_path())["selection"]["excluded_after_viewing"])
    pool_ids = [i for i in candidates.ids if i not in set(exclude)]
    print(f"after the overlays: {len(pool_ids)} candidates ({len(candidates) - len(pool_ids)} left out)")
    pool = candidates.subset(pool_ids)
    estimators = {"pool": RcaEstimator(pool, "learned", calibration=None),
                  "jsrt": RcaEstimator(jsrt_ref, "learned", calibration=None)}
    stride = args.selection_stride
    selection = lambda cases: [c for c in cases if c.id not in DEFAULT_JSRT_IDS][1::stride]  # noqa: E731
    true, per = per_reference_dice(Path(args.jsrt), "train", selection, estimators, seg)
    print(f"selection: JSRT training images {', '.join(c.id for c in selection(read_jsrt(args.jsrt, split='train')))}; "
          f"{true.shape[0]} candidates; r(JSRT set) " +
          " ".join(f"{s} {v:.4f}" for s, v in agreement_r(true, per['jsrt']).items()))
    chosen = greedy(true, per["pool"], per["jsrt"], pool_ids, args.k)
    print("chosen:", " ".join(chosen))
    if args.check_val:
        sel = [pool_ids.index(i) for i in chosen]
        tv, pv = per_reference_dice(Path(args.jsrt), "val", lambda cases: cases, estimators, seg)
        rv, rj = agreement_r(tv, pv["pool"][:, sel]), agreement_r(tv, pv["jsrt"])
        print("validation split, r(chosen) - r(JSRT): " + " ".join(f"{s} {rv[s] - rj[s]:+.4f}" for s in rv))
    print(json.dumps({"ids": chosen}))


if __name__ == "__main__":
    main()

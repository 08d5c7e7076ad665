"""Is bf16 inference safe? fp32 and bf16 outputs of each shipped model family on real data, in one run.

* hybridgnet (landmark segmentation): Dice per structure of the filled contours vs the SCR expert masks on the
  JSRT test split (51 images), fp32 and bf16, and the largest landmark difference between the two;
* rca_regnet (RCA registration): the Dice RCA estimate (learned, calibrated, the shipped reference set) of the
  same images' segmentations, fp32 vs bf16 (mean |difference| and Pearson r between the two);
* resnet_lite_lesions (classifier): AUROC per finding on the lesion benchmark's test set, fp32 vs bf16.

The rule (issue: "mixed precision only where measured safe"): bf16 is a family's default (``--precision auto``,
the card's ``inference_precision``) only if every Dice (or AUROC) is within 0.001 of fp32. The script prints
both values, the largest difference and the verdict per family; timing is not its job (see bench_segment.py).

Usage: python bench/bench_precision.py [--jsrt DIR] [--nih-images DIR] [--metadata CSV|none] [--device cpu]
           [--max-images N] [--tiny]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
TOL = 0.001


def _predict_points(model, images, precision: str) -> list[np.ndarray]:
    from cxrkit.segmentation.infer import predict_landmarks

    dev = next(model.parameters()).device
    with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
        return predict_landmarks(model, images)


def segmentation(jsrt: Path, max_images: int | None, device: str) -> dict:
    from cxrkit.data.jsrt import read_jsrt
    from cxrkit.io.images import load_gray8
    from cxrkit.io.landmarks import organ_masks
    from cxrkit.metrics.segmentation import dice
    from cxrkit.models import load_model

    model = load_model("hybridgnet", device=device)
    cases = read_jsrt(jsrt, split="test")[:max_images]
    images = [load_gray8(c.image) for c in cases]
    truth = [c.load_masks() for c in cases]
    out = {}
    points = {}
    for prec in ("fp32", "bf16"):
        pts = [p for k in range(0, len(images), 16) for p in _predict_points(model, images[k:k + 16], prec)]
        points[prec] = pts
        scores = {s: [] for s in ("right_lung", "left_lung", "heart")}
        for p, img, t in zip(pts, images, truth):
            m = organ_masks(p, *img.shape)
            for s in scores:
                scores[s].append(dice(m[s], t[s]))
        out[prec] = {s: float(np.mean(v)) for s, v in scores.items()}
    shift = max(float(np.abs(a - b).max()) for a, b in zip(points["fp32"], points["bf16"]))
    diff = max(abs(out["fp32"][s] - out["bf16"][s]) for s in out["fp32"])
    print(f"hybridgnet on JSRT test ({len(images)} images), Dice right lung / left lung / heart:")
    for prec in ("fp32", "bf16"):
        print(f"  {prec}: " + " / ".join(f"{out[prec][s]:.4f}" for s in out[prec]))
    print(f"  largest Dice difference {diff:.4f} (tolerance {TOL}); largest landmark shift {shift:.2f} px at 1024; "
          f"bf16 safe: {'yes' if diff <= TOL else 'no'}")
    return {"dice": out, "max_diff": diff, "safe": diff <= TOL, "images": images, "points": points["fp32"]}


def registration(seg: dict, device: str) -> dict:
    from cxrkit.io.landmarks import organ_masks
    from cxrkit.metrics.stats import pearson
    from cxrkit.qc.rca import make_estimator
    from cxrkit.qc.reference import STRUCTURES, query_image

    est = make_estimator(device=device)
    qi = np.stack([(query_image(im, est.image_size)[0, 0].numpy() * 255).round().astype(np.uint8)
                   for im in seg["images"]])
    qm = []
    for im, p in zip(seg["images"], seg["points"]):
        from cxrkit.io.geometry import SquareResize

        g = SquareResize(im.shape[0], im.shape[1], est.mask_size)
        sq = g.points_to_square(p)
        m = organ_masks(sq, est.mask_size, est.mask_size)
        qm.append(np.stack([m[s] for s in STRUCTURES]))
    qm = np.stack(qm)
    values = {}
    for prec in ("fp32", "bf16"):
        dev = est.device
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=prec == "bf16"):
            values[prec] = np.array([est.summarize(t).mean for t in est.score_batch(qi, qm)])
    diff = float(np.abs(values["fp32"] - values["bf16"]).max())
    r = pearson(values["fp32"], values["bf16"])
    print(f"rca_regnet, Dice RCA (Mean) of the same {len(qi)} segmentations ({len(est.reference)} references): "
          f"fp32 mean {values['fp32'].mean():.4f}, bf16 mean {values['bf16'].mean():.4f}, largest |difference| "
          f"{diff:.4f}, r(fp32, bf16) {r:.4f}; bf16 safe: {'yes' if diff <= TOL else 'no'}")
    return {"max_diff": diff, "r": r, "safe": diff <= TOL}


def classifier(device: str, tiny: bool, images_dir: Path, metadata: Path | None) -> dict | None:
    """AUROC per finding of the shipped lesion model on the lesion benchmark's test set (the benchmark's own
    images: real NIH anatomy with inserted findings, the same patient split and seed as the run that trained
    it), fp32 vs bf16; probabilities as the benchmark computes them (class maps averaged over the views)."""
    from cxrkit.classification.cam import original_maps
    from cxrkit.classification.lesion_bench import LesionBenchConfig, prepare_data
    from cxrkit.classification.lesions import LESION_FINDINGS
    from cxrkit.metrics.auroc import auroc
    from cxrkit.models import load_model

    if not images_dir.is_dir():
        print(f"resnet_lite_lesions: {images_dir} is not a folder of NIH images; skipped")
        return None
    model = load_model("resnet_lite_lesions", device=device)
    data = prepare_data(images_dir, LesionBenchConfig(max_images=20 if tiny else None), metadata, progress=False)
    ds = data.test
    n = 8 if tiny else len(ds)
    images, labels = [], []
    for i in range(n):
        img, boxes, _ = ds.render(i)
        images.append(img)
        labels.append([f in boxes for f in LESION_FINDINGS])
    y = np.array(labels, dtype=float)
    out = {}
    for prec in ("fp32", "bf16"):
        probs = np.concatenate([original_maps(model, images[k:k + 8], bf16=prec == "bf16")[0]
                                for k in range(0, n, 8)])
        out[prec] = [auroc(y[:, j], probs[:, j]) if 0 < y[:, j].sum() < n else float("nan")
                     for j in range(len(LESION_FINDINGS))]
    diff = max(abs(a - b) for a, b in zip(out["fp32"], out["bf16"]))
    print(f"resnet_lite_lesions on the lesion benchmark's test set ({n} images), AUROC "
          + " / ".join(LESION_FINDINGS) + ":")
    for prec in ("fp32", "bf16"):
        print(f"  {prec}: " + " / ".join(f"{v:.4f}" for v in out[prec]))
    print(f"  largest AUROC difference {diff:.4f} (tolerance {TOL}); bf16 safe: {'yes' if diff <= TOL else 'no'}")
    return {"auroc": out, "max_diff": diff, "safe": diff <= TOL}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jsrt", default=str(REPO.parent / "shared" / "data" / "segmentation" / "jsrt"))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--nih-images", default=str(REPO.parent / "shared" / "data" / "nih" / "images"),
                    help="the lesion benchmark's images (default: the shared 200 NIH PNGs)")
    ap.add_argument("--metadata", default=str(REPO.parent / "shared" / "data" / "nih" / "Data_Entry_2017_v2020.csv.gz"),
                    help="NIH metadata to leave out images with real findings, as `cxrkit bench lesions` ('none': keep all)")
    ap.add_argument("--max-images", type=int)
    ap.add_argument("--threads", type=int)
    ap.add_argument("--tiny", action="store_true", help="4 images: a smoke run (no verdict should be read)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    n = 4 if args.tiny else args.max_images
    seg = segmentation(Path(args.jsrt), n, args.device)
    registration(seg, args.device)
    metadata = None if args.metadata == "none" else Path(args.metadata)
    classifier(args.device, args.tiny, Path(args.nih_images),
               metadata if metadata is None or metadata.is_file() else None)


if __name__ == "__main__":
    main()

"""RCA time per image and agreement with the true Dice: cxrkit's learned registration (rca_regnet, the
default), cxrkit's iterative registration, and a standard toolkit, SimpleITK (affine then B-spline), with
the same reference set, the same query images and candidate segmentations, in the same run.

Usage: python bench/bench_rca.py [--images 10] [--time-images 4] [--repeat 3] [--threads 1]
       [--reference-set shipped|jsrt] [--summary runs/rca_test/summary.csv] [--tiny]

Queries: the first ``--images`` JSRT test images (../shared/data/segmentation/jsrt), each with candidate
segmentations of known quality: the SCR expert masks and the damaged copies ``cxrkit bench rca`` uses
(:func:`cxrkit.qc.validation.degradations`: erosion / dilation, shifts, rotations, cut-off parts,
swapped lungs, heart = left lung; 24 candidates per image). True Dice: each candidate against the expert
masks. RCA estimate: the maximum over references of the per-structure Dice (CheXmask's ``Dice RCA
(Max)``), the same statistic for every method; Pearson r with the true Dice, per structure, over all
candidates of all images.

Time per image: preprocessing into RCA's square space, registration to every reference, warping the
masks (one candidate, the expert one) and the Dice there; not image decoding. Each image is registered
once per method for the agreement figures (the other candidates reuse the registration, untimed); the
timing runs ``--repeat`` interleaved passes (learned, iterative, SimpleITK per image) over the first
``--time-images`` images and reports, per method, the mean over those images of the best pass. Torch
and ITK both use ``--threads`` threads; the learned registration runs in fp32 (float32 weights and
inputs, no autocast: what ``cxrkit qc`` and ``cxrkit analyze`` run on CPU).

SimpleITK parameters (:data:`SITK_PARAMS`; images are the 128 px square query/reference images, spacing
2 so that one unit = one pixel of the 256 px mask grid):
  * affine: ``CenteredTransformInitializer`` (geometry), Mattes mutual information (32 bins, 10 % random
    samples, seed 0), regular-step gradient descent (learning rate 1, min step 1e-4, relaxation 0.5, at
    most 200 iterations per level, scales from physical shift), linear interpolation, pyramid shrink
    4 / 2 / 1 with Gaussian smoothing 2 / 1 / 0 pixels;
  * B-spline: cubic, 8 x 8 mesh over the image, on top of the affine (moving initial transform), Mattes
    mutual information (32 bins, 10 % random samples, seed 0), L-BFGS-B (gradient tolerance 1e-5, at
    most 100 iterations, 5 corrections, 1,000 evaluations), pyramid shrink 2 / 1, smoothing 1 / 0 pixels;
  * a stage that stops with an ITK error (all samples outside the moving image) is skipped, keeping the
    transform before it; the count is printed;
  * the composite transform (fixed = reference -> moving = query) is turned into a dense 256 x 256
    sampling grid; the query masks are warped with it bilinearly and thresholded at 0.5, as cxrkit does.
SimpleITK is optional (``pip install SimpleITK``); without it the script says so and compares the two
cxrkit methods only.

``--summary``: the summary.csv of a full ``cxrkit bench rca`` run, printed beside (r / MAE on its larger
candidate set, with a paired bootstrap CI of r(learned) - r(iterative) when its per_case.csv lies beside it).
``--tiny``: one image, 2 references, 3 candidates, short iterative and SimpleITK schedules, one pass (a smoke run for the
test suite; no figure is asserted).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
STRUCTURES = ("right_lung", "left_lung", "heart")
SITK_PARAMS = {
    "bins": 32, "sampling": 0.10, "seed": 0,
    "affine_iterations": 200, "affine_learning_rate": 1.0, "affine_min_step": 1e-4, "affine_relaxation": 0.5,
    "affine_shrink": [4, 2, 1], "affine_sigmas": [2, 1, 0],
    "bspline_mesh": 8, "bspline_iterations": 100, "bspline_corrections": 5, "bspline_evaluations": 1000,
    "bspline_tolerance": 1e-5, "bspline_shrink": [2, 1], "bspline_sigmas": [1, 0],
}
TINY_SITK = {**SITK_PARAMS, "affine_iterations": 20, "bspline_iterations": 10, "bspline_evaluations": 50}


class SitkRca:
    """RCA with SimpleITK registration: Dice tables (K references x 3 structures) like RcaEstimator's."""

    def __init__(self, reference, params: dict, threads: int) -> None:
        import SimpleITK as sitk

        self.sitk = sitk
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
        self.reference = reference
        self.p = params
        self.failures = {"affine": 0, "bspline": 0, "pairs": 0}  # ITK exceptions (the stage is then skipped)
        self.scale = reference.masks.shape[-1] / reference.images.shape[-1]  # mask px per image px
        self.fixed = [self._image(reference.images[k, 0].numpy()) for k in range(len(reference))]
        m = reference.masks.shape[-1]
        yy, xx = np.mgrid[0:m, 0:m].astype(np.float64)
        self._xy = (xx, yy)

    def _image(self, a: np.ndarray):
        """A 128 px image on the physical grid of the 256 px masks (spacing 2, pixel centres at 2i + 0.5)."""
        im = self.sitk.GetImageFromArray(np.ascontiguousarray(a, dtype=np.float32))
        im.SetSpacing((self.scale, self.scale))
        im.SetOrigin(((self.scale - 1) / 2, (self.scale - 1) / 2))
        return im

    def _method(self, shrink, sigmas):
        sitk, p = self.sitk, self.p
        r = sitk.ImageRegistrationMethod()
        r.SetMetricAsMattesMutualInformation(p["bins"])
        r.SetMetricSamplingStrategy(r.RANDOM)
        r.SetMetricSamplingPercentage(p["sampling"], p["seed"])
        r.SetInterpolator(sitk.sitkLinear)
        r.SetShrinkFactorsPerLevel(shrink)
        r.SetSmoothingSigmasPerLevel(sigmas)
        r.SmoothingSigmasAreSpecifiedInPhysicalUnitsOff()
        return r

    def register_pair(self, fixed, moving):
        sitk, p = self.sitk, self.p
        r = self._method(p["affine_shrink"], p["affine_sigmas"])
        r.SetOptimizerAsRegularStepGradientDescent(learningRate=p["affine_learning_rate"], minStep=p["affine_min_step"],
                                                   numberOfIterations=p["affine_iterations"],
                                                   relaxationFactor=p["affine_relaxation"])
        r.SetOptimizerScalesFromPhysicalShift()
        init = sitk.CenteredTransformInitializer(fixed, moving, sitk.AffineTransform(2),
                                                 sitk.CenteredTransformInitializerFilter.GEOMETRY)
        r.SetInitialTransform(init, inPlace=False)
        try:
            affine = r.Execute(fixed, moving)
        except RuntimeError:  # ITK gives up when the samples leave the moving image: keep the initial transform
            self.failures["affine"] += 1
            affine = init
        bspline = sitk.BSplineTransformInitializer(fixed, [p["bspline_mesh"]] * 2, order=3)
        r = self._method(p["bspline_shrink"], p["bspline_sigmas"])
        r.SetOptimizerAsLBFGSB(gradientConvergenceTolerance=p["bspline_tolerance"],
                               numberOfIterations=p["bspline_iterations"],
                               maximumNumberOfCorrections=p["bspline_corrections"],
                               maximumNumberOfFunctionEvaluations=p["bspline_evaluations"])
        r.SetMovingInitialTransform(affine)
        r.SetInitialTransform(bspline, inPlace=True)
        try:
            r.Execute(fixed, moving)
        except RuntimeError:  # as above: the affine alone
            self.failures["bspline"] += 1
            return affine
        t = sitk.CompositeTransform(2)
        t.AddTransform(affine)
        t.AddTransform(bspline)  # applied first: moving point = affine(bspline(fixed point))
        return t

    def register(self, x: torch.Tensor) -> torch.Tensor:
        """(K, M, M, 2) grid_sample grids (fixed reference mask pixels -> query mask pixels) for one query
        image (1, 1, S, S) in [0, 1]."""
        sitk = self.sitk
        moving = self._image(x[0, 0].numpy())
        m = self.reference.masks.shape[-1]
        xx, yy = self._xy
        grids = []
        for fixed in self.fixed:
            self.failures["pairs"] += 1
            t = self.register_pair(fixed, moving)
            d = sitk.GetArrayFromImage(sitk.TransformToDisplacementField(
                t, sitk.sitkVectorFloat64, [m, m], (0.0, 0.0), (1.0, 1.0)))  # (M, M, 2): x, y displacement
            grids.append(np.stack([(2 * (xx + d[..., 0]) + 1) / m - 1, (2 * (yy + d[..., 1]) + 1) / m - 1], -1))
        return torch.from_numpy(np.stack(grids)).float()

    def score(self, grids: torch.Tensor, masks: torch.Tensor) -> np.ndarray:
        """(K, 3) Dice of the query masks (1, 3, M, M) carried into each reference vs its expert masks."""
        from cxrkit.qc.rca import dice_batch

        k = grids.shape[0]
        warped = F.grid_sample(masks.float().expand(k, -1, -1, -1), grids, mode="bilinear", padding_mode="zeros",
                               align_corners=False) > 0.5
        return dice_batch(warped, self.reference.masks).numpy()


def main() -> None:
    from cxrkit.data.jsrt import read_jsrt
    from cxrkit.io.images import load_gray8
    from cxrkit.metrics.segmentation import dice
    from cxrkit.qc.rca import RcaEstimator, summarize
    from cxrkit.qc.reference import (
        load_reference,
        query_image,
        query_masks,
        shipped_reference,
    )
    from cxrkit.qc.register import IterativeConfig
    from cxrkit.qc.validation import degradations

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jsrt", default=str(Path(os.environ.get("CXRKIT_SHARED_DATA", REPO.parent / "shared" / "data")) / "segmentation" / "jsrt"))
    ap.add_argument("--images", type=int, default=10, help="JSRT test images for the agreement (default 10)")
    ap.add_argument("--time-images", type=int, default=4, help="of those, images timed --repeat times (default 4)")
    ap.add_argument("--repeat", type=int, default=3, help="interleaved timing passes (best per image)")
    ap.add_argument("--threads", type=int, default=1, help="torch and ITK threads (default 1)")
    ap.add_argument("--reference-set", default="shipped", choices=("shipped", "jsrt"),
                    help="the reference set (default: shipped, the one cxrkit uses out of the box)")
    ap.add_argument("--summary", help="summary.csv of `cxrkit bench rca` to print r / MAE beside")
    ap.add_argument("--tiny", action="store_true", help="1 image, 2 references, 3 candidates, 1 pass: a smoke run")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    params = SITK_PARAMS
    reference = shipped_reference() if args.reference_set == "shipped" else load_reference(args.jsrt)
    if args.tiny:
        args.images, args.time_images, args.repeat, params = 1, 1, 1, TINY_SITK
        reference = reference.subset(reference.ids[:2])
    cases = read_jsrt(args.jsrt, split="test")[: args.images]
    rng = np.random.default_rng(0)

    iterative = IterativeConfig(affine_iters=(4, 2), deform_iters=4) if args.tiny else IterativeConfig()
    estimators = {"learned": RcaEstimator(reference, "learned"),
                  "iterative": RcaEstimator(reference, "iterative", iterative=iterative)}
    try:
        estimators["simpleitk"] = SitkRca(reference, params, args.threads)
        import SimpleITK

        sitk_note = f"SimpleITK {SimpleITK.Version.VersionString()}"
    except ImportError:
        sitk_note = "SimpleITK not installed (pip install SimpleITK): compared the two cxrkit methods only"
    methods = list(estimators)
    labels = {"learned": "cxrkit learned registration (rca_regnet, default; fp32)",
              "iterative": "cxrkit iterative registration (reference method)",
              "simpleitk": "SimpleITK affine + B-spline (parameters in the docstring)"}
    size_img, size_mask = reference.images.shape[-1], reference.masks.shape[-1]

    def one(method: str, image: np.ndarray, truth: dict) -> tuple[object, np.ndarray]:
        """Register ``image`` and score the expert masks: the timed unit. Returns (registration, (K, 3) Dice)."""
        est = estimators[method]
        x, m = query_image(image, size_img), query_masks(truth, image.shape, size_mask)
        t = est.register(x)
        d = est.score(t, m)
        summarize(d)
        return t, d

    times: dict[str, dict[int, list[float]]] = {m: {} for m in methods}
    rows = []
    data = []
    for i, case in enumerate(cases):
        image = load_gray8(case.image)
        truth = case.load_masks()
        cands = {"expert": truth, **degradations(truth, image.shape[0] / 1024, rng)}
        if args.tiny:
            cands = dict(list(cands.items())[:3])
        data.append((image, truth))
        true = {n: {s: dice(c[s], truth[s]) for s in STRUCTURES} for n, c in cands.items()}
        est_max: dict[str, dict[str, dict[str, float]]] = {}
        for method in methods:
            t0 = time.perf_counter()
            reg, _ = one(method, image, truth)
            times[method].setdefault(i, []).append(time.perf_counter() - t0)
            est_max[method] = {n: summarize(estimators[method].score(reg, query_masks(c, image.shape, size_mask)))
                               .per_structure_max for n, c in cands.items()}
        for n in cands:
            for s in STRUCTURES:
                rows.append({"image": case.id, "candidate": n, "structure": s, "true": true[n][s],
                             **{m: est_max[m][n][s] for m in methods}})
        print(f"  image {i + 1}/{len(cases)} {case.id}: " + ", ".join(
            f"{m} {1000 * times[m][i][0]:.0f} ms" for m in methods), flush=True)
    for _ in range(args.repeat - 1):  # more timing passes, interleaved per image
        for i, (image, truth) in enumerate(data[: args.time_images]):
            for method in methods:
                t0 = time.perf_counter()
                one(method, image, truth)
                times[method][i].append(time.perf_counter() - t0)

    timed = range(min(args.time_images, len(data)))
    per_image = {m: float(np.mean([min(times[m][i]) for i in timed])) for m in methods}
    print(f"\nRCA against {len(reference)} references ({args.reference_set} set), {len(cases)} JSRT test images x "
          f"{len(rows) // (3 * len(cases))} candidates; torch {torch.__version__}, {torch.get_num_threads()} "
          f"thread(s); {sitk_note}")
    print(f"time per image: mean over {len(timed)} images of the best of {args.repeat} interleaved passes")
    if "simpleitk" in estimators:
        f = estimators["simpleitk"].failures
        print(f"SimpleITK: of {f['pairs']} registrations, {f['affine']} affine and {f['bspline']} B-spline stages "
              f"stopped with an ITK error (samples outside the moving image); the previous transform was kept")
    base = per_image["learned"]
    for m in methods:
        print(f"  {labels[m]:60s} {1000 * per_image[m]:9.1f} ms/image   {per_image[m] / base:7.1f}x the learned time")
    import pandas as pd

    df = pd.DataFrame(rows)
    df_all = df.groupby(["image", "candidate"], sort=False).mean(numeric_only=True).reset_index()
    df_all["structure"] = "all (mean of 3)"
    print(f"Pearson r (and MAE) of the RCA estimate (max over references) vs the true Dice, "
          f"{len(df) // 3} candidates:")
    print(f"  {'structure':18s}" + "".join(f"{m:>22s}" for m in methods))
    for s, g in pd.concat([df, df_all]).groupby("structure", sort=False):
        cells = []
        for m in methods:
            r = float(np.corrcoef(g["true"], g[m])[0, 1]) if g["true"].std() > 0 and g[m].std() > 0 else float("nan")
            cells.append(f"{r:.3f} ({np.abs(g['true'] - g[m]).mean():.3f})")
        print(f"  {s:18s}" + "".join(f"{c:>22s}" for c in cells))
    if args.summary:
        _print_summary(args.summary, args.reference_set)


def _print_summary(path: str, reference_set: str) -> None:
    import pandas as pd

    s = pd.read_csv(path)
    if "reference_set" in s.columns:  # one set's rows (a summary may hold several)
        s = s[s["reference_set"] == reference_set]
    s = s[s["estimate"].isin(["max", "calibrated"])]
    print(f"agreement with the true Dice ({path}):")
    print(s.pivot_table(index=["structure", "estimate"], columns="method", values=["pearson_r", "mae"])
          .round(4).to_string())
    per_case = Path(path).with_name("per_case.csv")
    if per_case.is_file():  # paired bootstrap over images of r(learned) - r(iterative), RCA max
        d = pd.read_csv(per_case)
        if "reference_set" in d.columns:
            d = d[d["reference_set"] == reference_set]
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

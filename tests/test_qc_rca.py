"""RCA quality control: registration recovers known motion, the estimate ranks segmentations by quality,
`cxrkit qc` and `cxrkit segment --qc` on a tiny synthetic reference set, errors per row, learned
registration smoke training, and the real JSRT path (the shipped reference set: test_qc_reference.py)."""

from __future__ import annotations

import csv

import cv2
import numpy as np
import pytest
import torch

from cxrkit.cli.main import main
from cxrkit.errors import CxrkitError
from cxrkit.models.warp import Transform, standardize
from cxrkit.qc.rca import QC_COLUMNS, RcaEstimator, dice_batch
from cxrkit.qc.reference import STRUCTURES, load_reference
from cxrkit.qc.register import IterativeConfig, register_iterative

FAST = IterativeConfig(affine_iters=(40, 20), deform_iters=20)


def _ellipse_mask(shape, cx, cy, rx, ry):
    m = np.zeros(shape, np.uint8)
    cv2.ellipse(m, (int(cx), int(cy)), (int(rx), int(ry)), 0, 0, 360, 1, -1)
    return m > 0


def synthetic_case(dx=0, dy=0, size=256, scale=1.0):
    """A chest-like phantom: two dark lungs and a brighter heart on a grey body; returns image and masks."""
    c = size / 2
    masks = {"right_lung": _ellipse_mask((size, size), c - 0.2 * size * scale + dx, c + dy, 0.12 * size * scale, 0.3 * size * scale),
             "left_lung": _ellipse_mask((size, size), c + 0.2 * size * scale + dx, c + dy, 0.12 * size * scale, 0.3 * size * scale),
             "heart": _ellipse_mask((size, size), c + 0.05 * size + dx, c + 0.15 * size + dy, 0.12 * size, 0.09 * size)}
    img = np.full((size, size), 30, np.uint8)
    body = _ellipse_mask((size, size), c + dx, c + dy, 0.42 * size, 0.47 * size)
    img[body] = 170
    img[masks["right_lung"] | masks["left_lung"]] = 70
    img[masks["heart"]] = 200
    img = cv2.GaussianBlur(img, (0, 0), 2)
    return img, masks


def make_reference(root, n=3):
    (root / "images").mkdir(parents=True)
    for s in STRUCTURES:
        (root / "masks" / s).mkdir(parents=True)
    for i in range(n):
        img, masks = synthetic_case(dx=6 * i - 6, dy=4 * i, scale=1 + 0.04 * i)
        cv2.imwrite(str(root / "images" / f"R{i}.png"), img)
        for s in STRUCTURES:
            cv2.imwrite(str(root / "masks" / s / f"R{i}.png"), masks[s].astype(np.uint8) * 255)
    return root


def test_transform_identity_and_dice_batch():
    x = torch.rand(2, 1, 32, 32)
    t = Transform(torch.eye(2, 3).repeat(2, 1, 1), torch.zeros(2, 2, 8, 8))
    assert torch.allclose(t.warp(x), x, atol=1e-5)
    a = torch.zeros(1, 2, 4, 4, dtype=torch.bool)
    a[0, 0, :2] = True
    b = a.clone()
    b[0, 0, 1] = False
    d = dice_batch(a, b)
    assert d[0, 0].item() == pytest.approx(2 * 4 / (8 + 4)) and d[0, 1].item() == 1.0  # both empty -> 1


def test_iterative_registration_recovers_a_shift():
    img, _ = synthetic_case()
    moved, _ = synthetic_case(dx=20, dy=-12)
    f = standardize(torch.from_numpy(img.astype(np.float32) / 255)[None, None])
    m = standardize(torch.from_numpy(moved.astype(np.float32) / 255)[None, None])
    t = register_iterative(m, f, IterativeConfig(affine_sizes=(64, 128), affine_iters=(100, 50), deform_iters=0))
    # fixed -> moving: the translation is the shift in normalized units (2 px / size per px)
    tx, ty = t.theta[0, 0, 2].item(), t.theta[0, 1, 2].item()
    assert tx == pytest.approx(20 * 2 / 256, abs=0.03) and ty == pytest.approx(-12 * 2 / 256, abs=0.03)


@pytest.mark.parametrize("method", ["iterative", "learned"])
def test_rca_ranks_segmentations_by_quality(tmp_path, method):
    from cxrkit.models import create_model

    ref = load_reference(make_reference(tmp_path / "ref"))
    model = create_model("rca_regnet") if method == "learned" else None  # untrained: near-identity, still ranks
    est = RcaEstimator(ref, method, model=model, iterative=FAST)
    img, truth = synthetic_case(dx=3, dy=-2)
    eroded = {s: cv2.erode(m.astype(np.uint8), np.ones((25, 25), np.uint8)) > 0 for s, m in truth.items()}
    swapped = {"right_lung": truth["left_lung"], "left_lung": truth["right_lung"], "heart": truth["heart"]}
    good, worse, bad = est.estimate_many(img, [truth, eroded, swapped])
    assert good.mean > worse.mean > bad.mean and good.max >= good.mean
    assert good.per_structure_max["right_lung"] > 0.85 and bad.per_structure_max["right_lung"] < 0.2
    assert good.per_reference.shape == (3, 3)
    cols = good.columns()
    assert list(cols) == list(QC_COLUMNS) and 0 <= cols["Dice RCA (Mean) Heart"] <= 1


def test_reference_errors_name_the_problem(tmp_path):
    with pytest.raises(CxrkitError, match="not a reference set"):
        load_reference(tmp_path)
    root = make_reference(tmp_path / "ref", n=1)
    (root / "masks" / "heart" / "R0.png").unlink()
    with pytest.raises(CxrkitError, match="heart/R0.png is missing"):
        load_reference(root)


def _seg_csv(path, rows):
    from cxrkit.io.rle import encode

    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["ImageID", "Dice RCA (Mean)", "Dice RCA (Max)", "Landmarks", "Left Lung", "Right Lung", "Heart",
                    "Height", "Width"])
        for name, masks in rows:
            h, wd = masks["heart"].shape
            w.writerow([name, "", "", ",".join(["1"] * 240), encode(masks["left_lung"]), encode(masks["right_lung"]),
                        encode(masks["heart"]), h, wd])


def test_qc_cli_per_row_errors_and_square_space(tmp_path, capsys):
    ref = make_reference(tmp_path / "ref")
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    img, truth = synthetic_case(dx=2)
    cv2.imwrite(str(imgs / "good.png"), img)
    wide = cv2.copyMakeBorder(img, 0, 0, 40, 40, cv2.BORDER_CONSTANT, value=0)  # 256 x 336, masks stored square
    cv2.imwrite(str(imgs / "wide.png"), wide)
    cv2.imwrite(str(imgs / "nomask.png"), img)
    from cxrkit.io.geometry import SquareResize

    g = SquareResize(256, 336, 336)
    square_truth = {s: g.image_to_square(np.pad(m, ((0, 0), (40, 40))).astype(np.uint8), cv2.INTER_NEAREST) > 0
                    for s, m in truth.items()}
    broken = {**truth, "heart": truth["left_lung"]}
    _seg_csv(tmp_path / "seg.csv", [("good.png", truth), ("wide.png", square_truth), ("nomask_other.png", broken)])
    out = tmp_path / "qc.csv"
    rc = main(["qc", str(imgs), "--masks-from", str(tmp_path / "seg.csv"), "--out", str(out), "--reference", str(ref),
               "--rca-method", "iterative", "--annotated", str(tmp_path / "annotated.csv"), "--quiet"])
    assert rc == 1  # nomask.png has no row: reported, the others are done
    with open(out, newline="") as f:
        rows = {r["ImageID"]: r for r in csv.DictReader(f)}
    assert list(next(iter(rows.values())))[:3] == ["ImageID", "Dice RCA (Mean)", "Dice RCA (Max)"]
    assert "no row with ImageID 'nomask.png'" in rows["nomask.png"]["error"] and rows["nomask.png"]["Dice RCA (Mean)"] == ""
    assert rows["good.png"]["error"] == "" and float(rows["good.png"]["Dice RCA (Max)"]) > 0.8
    assert rows["wide.png"]["error"] == "" and float(rows["wide.png"]["Dice RCA (Max)"]) > 0.8
    assert "3 images, 1 with an error" in capsys.readouterr().out
    # The annotated CheXmask-format rows feed the per-structure filter.
    keep = tmp_path / "kept.csv"
    assert main(["chexmask", "filter", str(tmp_path / "annotated.csv"), "--out", str(keep), "--threshold", "0.5",
                 "--structure-threshold", "heart=0.5"]) == 0
    with open(keep, newline="") as f:
        kept = [r["ImageID"] for r in csv.DictReader(f)]
    assert kept == ["good.png", "wide.png"]
    assert main(["chexmask", "filter", str(tmp_path / "annotated.csv"), "--out", str(keep), "--threshold", "0.5",
                 "--structure-threshold", "heart=0.999"]) == 0
    with open(keep, newline="") as f:
        assert list(csv.DictReader(f)) == []


def test_segment_qc_fills_dice_columns(tmp_path):
    from cxrkit.models import create_model
    from cxrkit.models.checkpoint import save_checkpoint

    ref = make_reference(tmp_path / "ref")
    save_checkpoint(tmp_path / "m.pt", create_model("hybridgnet", input_size=64))
    img, _ = synthetic_case()
    cv2.imwrite(str(tmp_path / "a.png"), img)
    out = tmp_path / "seg.csv"
    rc = main(["segment", str(tmp_path / "a.png"), "--model", str(tmp_path / "m.pt"), "--out", str(out), "--qc",
               "--reference", str(ref), "--rca-method", "iterative", "--quiet"])
    assert rc == 0
    with open(out, newline="") as f:
        row = next(csv.DictReader(f))
    lo, hi = float(row["Dice RCA (Mean)"]), float(row["Dice RCA (Max)"])
    assert 0 <= lo <= hi <= 1


def test_registration_train_smoke_and_resume(tmp_path, capsys):
    from cxrkit.models import create_model

    ref = make_reference(tmp_path / "jsrt")
    (ref / "split.csv").write_text("id,split\nR0,train\nR1,train\nR2,val\n")
    args = ["registration", "train", "--jsrt", str(ref), "--images", str(ref / "images"), "--out",
            str(tmp_path / "run"), "--steps", "3", "--batch-size", "2", "--quiet"]
    assert main(args) == 0
    assert (tmp_path / "run" / "metrics.csv").read_text().startswith("step,train_loss,val_local_ncc")
    m = create_model("rca_regnet", checkpoint=tmp_path / "run" / "best.pt")
    assert m.card.task == "registration"
    args[args.index("--steps") + 1] = "4"
    assert main(args) == 2 and "another configuration" in capsys.readouterr().err
    # purely unsupervised (the default adds the soft-Dice loss on labelled pairs of the fixed pool)
    args[args.index("--out") + 1] = str(tmp_path / "run_images_only")
    assert main([*args, "--mask-weight", "0"]) == 0
    assert create_model("rca_regnet", checkpoint=tmp_path / "run_images_only" / "best.pt").card.task == "registration"


@pytest.mark.realdata
def test_rca_on_real_jsrt_separates_good_from_broken(shared):
    from cxrkit.data.jsrt import read_jsrt
    from cxrkit.io.images import load_gray8

    jsrt = shared("segmentation", "jsrt")
    ref = load_reference(jsrt)
    assert len(ref) == 16 and ref.ids[0] == "JPCLN002"
    case = read_jsrt(jsrt, split="test")[0]
    truth = case.load_masks()
    broken = {**truth, "heart": np.roll(truth["heart"], 150, axis=0)}
    for method in ("learned", "iterative"):
        good, bad = RcaEstimator(ref, method).estimate_many(load_gray8(case.image), [truth, broken])
        assert good.max > 0.85 and good.per_structure_max["heart"] > bad.per_structure_max["heart"] + 0.2, method


def test_calibration_fit_apply_round_trip_and_mismatch(tmp_path):
    from cxrkit.qc.rca import Calibration, fit_calibration

    x = np.linspace(0.2, 0.95, 20)
    keys = ("right_lung", "left_lung", "heart", "all")
    cal = fit_calibration({k: 1.1 * x - 0.05 for k in keys}, {k: x for k in keys}, "iterative", ("R0", "R1", "R2"),
                          None, "synthetic")
    assert cal.coefficients["heart"] == pytest.approx((1.1, -0.05))
    out = cal.apply({"right_lung": 0.5, "left_lung": 0.99, "heart": 0.0}, 0.5)
    assert out["right_lung"] == pytest.approx(0.5) and out["left_lung"] == 1.0 and out["heart"] == 0.0  # clipped
    (tmp_path / "cal.json").write_text(cal.to_json())
    assert Calibration.load(tmp_path / "cal.json") == cal
    ref = load_reference(make_reference(tmp_path / "ref"))
    est = RcaEstimator(ref, "iterative", iterative=FAST, calibration=cal)
    img, truth = synthetic_case()
    e = est.estimate(img, truth)
    assert e.calibrated["heart"] == pytest.approx(min(1.0, 1.1 * e.per_structure_max["heart"] - 0.05))
    assert e.columns()["Dice RCA (Calibrated) Heart"] == e.calibrated["heart"]
    with pytest.raises(CxrkitError, match="fitted for another"):
        RcaEstimator(ref, "learned", calibration=cal)
    other = Calibration("iterative", cal.coefficients, ("X",), None)
    with pytest.raises(CxrkitError, match="fitted for another"):
        RcaEstimator(ref, "iterative", calibration=other)
    assert RcaEstimator(ref, "iterative").calibration is None  # the shipped ones are for the shipped and JSRT sets
    from cxrkit.qc.rca import make_estimator

    assert make_estimator(ref, "iterative", calibration=str(tmp_path / "cal.json")).calibration == cal  # by path
    with pytest.raises(CxrkitError, match="cannot read the RCA calibration"):
        make_estimator(ref, "iterative", calibration=str(tmp_path / "missing.json"))
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(CxrkitError, match="not an RCA calibration"):
        Calibration.load(tmp_path / "bad.json")


@pytest.mark.realdata
def test_shipped_calibration_applies_to_the_jsrt_expert_set(shared):
    from cxrkit.qc.reference import shipped_reference

    ref = load_reference(shared("segmentation", "jsrt"))
    for method in ("learned", "iterative"):
        est = RcaEstimator(ref, method)
        assert est.calibration is not None and est.calibration.reference_ids == ref.ids
        # each reference set gets its own calibration, never the other's
        other = RcaEstimator(shipped_reference(), method).calibration
        assert other is not None and other.reference_ids != ref.ids and other.coefficients != est.calibration.coefficients


def test_bad_training_flags_are_clear_errors(tmp_path, capsys):
    ref = make_reference(tmp_path / "jsrt")
    (ref / "split.csv").write_text("id,split\nR0,train\nR1,train\nR2,val\n")
    assert main(["registration", "train", "--jsrt", str(ref), "--images", str(ref / "images"), "--out",
                 str(tmp_path / "run"), "--mask-weight", "-1", "--quiet"]) == 2
    assert "--mask-weight: expected a number >= 0, got -1" in capsys.readouterr().err  # the flag, not the Python name
    assert main(["bench", "lesions", "--out", str(tmp_path / "lb"), "--lse-r", "0"]) == 2
    assert "--lse-r must be a positive number" in capsys.readouterr().err

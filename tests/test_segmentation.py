"""Landmark segmentation: augmentation geometry, smoke training on a tiny JSRT-like layout, `cxrkit segment`
output in CheXmask's layout (round trip through `cxrkit chexmask decode`), resume and per-image errors."""

from __future__ import annotations

import csv

import cv2
import numpy as np
import pytest
import torch

from cxrkit.cli.main import main
from cxrkit.models import create_model
from cxrkit.models.checkpoint import save_checkpoint
from cxrkit.segmentation.rows import COLUMNS
from cxrkit.transforms import LandmarkAugment, augment_landmarks


def _ellipse(cx, cy, rx, ry, n):
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], 1)


def make_tiny_jsrt(root, n=4):
    (root / "jsrt" / "images").mkdir(parents=True)
    for s in ("right_lung", "left_lung", "heart"):
        (root / "jsrt" / "masks" / s).mkdir(parents=True)
    for d in ("RL", "LL", "H"):
        (root / "lm" / d).mkdir(parents=True)
    rows = ["id,split"]
    for i in range(n):
        cid = f"JPCLN{i:03d}"
        shapes = {"right_lung": (_ellipse(330 + 5 * i, 480, 130, 300, 44), "RL"),
                  "left_lung": (_ellipse(700, 480, 130, 300, 50), "LL"),
                  "heart": (_ellipse(560, 650, 150, 120, 26), "H")}
        img = np.full((1024, 1024), 200, np.uint8)
        for s, (pts, d) in shapes.items():
            m = np.zeros((1024, 1024), np.uint8)
            cv2.fillPoly(m, [pts.astype(np.int32)], 255)
            cv2.imwrite(str(root / "jsrt" / "masks" / s / f"{cid}.png"), m)
            img[m > 0] = 60 if s != "heart" else 150
            np.save(root / "lm" / d / f"{cid}.npy", pts)
        cv2.imwrite(str(root / "jsrt" / "images" / f"{cid}.png"), img)
        rows.append(f"{cid},{'val' if i == n - 1 else 'train'}")
    (root / "jsrt" / "split.csv").write_text("\n".join(rows) + "\n")
    return root / "jsrt", root / "lm"


def test_augment_moves_landmarks_with_the_image():
    img = torch.zeros(1, 1, 64, 64)
    img[0, 0, 20:24, 40:44] = 1.0  # a bright square centred at (41.5, 21.5)
    pts = torch.tensor([[[41.5 / 64 + 0.5 / 64, 21.5 / 64 + 0.5 / 64]]])
    x, p = augment_landmarks(img, pts, torch.Generator().manual_seed(3), LandmarkAugment(contrast=0, gamma=0, noise_std=0))
    ys, xs = np.nonzero(x[0, 0].numpy() > 0.3)
    centre = np.array([xs.mean() + 0.5, ys.mean() + 0.5]) / 64
    assert np.abs(centre - p[0, 0].numpy()).max() < 1.5 / 64


def test_segmentation_train_smoke_and_resume(tmp_path, capsys):
    jsrt, lm = make_tiny_jsrt(tmp_path)
    args = ["segmentation", "train", "--jsrt", str(jsrt), "--landmarks", str(lm), "--out", str(tmp_path / "run"),
            "--input-size", "64", "--steps", "4", "--eval-every", "2", "--batch-size", "2", "--quiet"]
    assert main(args) == 0
    lines = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    assert lines[0].startswith("step,train_loss,val_dice_right_lung") and len(lines) == 3
    args[args.index("--steps") + 1] = "6"
    assert main(args) == 2  # another configuration: refused
    assert "another configuration" in capsys.readouterr().err


def test_segment_cli_chexmask_layout_round_trip_resume_and_errors(tmp_path, capsys):
    model = create_model("hybridgnet", input_size=64)
    save_checkpoint(tmp_path / "m.pt", model)
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    cv2.imwrite(str(imgs / "a.png"), np.random.default_rng(0).uniform(0, 255, (300, 200)).astype(np.uint8))
    (imgs / "bad.png").write_text("not an image")
    out = tmp_path / "seg.csv"
    rc = main(["segment", str(imgs), "--model", str(tmp_path / "m.pt"), "--out", str(out), "--masks", str(tmp_path / "masks"), "--quiet"])
    assert rc == 1  # one image failed, the run went on
    assert "bad.png" in (tmp_path / "seg.errors.csv").read_text()
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == COLUMNS and len(rows) == 1
    r = rows[0]
    assert r["ImageID"] == "a.png" and (r["Height"], r["Width"]) == ("300", "200") and r["Dice RCA (Mean)"] == ""
    pts = np.array(r["Landmarks"].split(","), int).reshape(-1, 2)
    assert pts.shape == (120, 2) and pts[:, 0].max() < 200 and pts[:, 1].max() < 300
    assert main(["chexmask", "decode", str(out), "--id", "a.png", "--out", str(tmp_path / "dec")]) == 0
    decoded = cv2.imread(str(tmp_path / "dec" / "a.png_heart.png"), cv2.IMREAD_GRAYSCALE)
    written = cv2.imread(str(tmp_path / "masks" / "a.png_heart.png"), cv2.IMREAD_GRAYSCALE)
    assert decoded.shape == (300, 200) and np.array_equal(decoded, written)
    # Resume: a.png is skipped; a torn last line would be cut off first.
    with open(out, "a") as f:
        f.write("torn,row")
    capsys.readouterr()
    main(["segment", str(imgs / "a.png"), "--model", str(tmp_path / "m.pt"), "--out", str(out), "--quiet"])
    assert "0 segmented, 1 already there" in capsys.readouterr().out
    assert not out.read_text().endswith("torn,row")


def test_segmentation_evaluate_on_tiny_layout(tmp_path, capsys):
    import pandas as pd

    jsrt, lm = make_tiny_jsrt(tmp_path)
    model = create_model("hybridgnet", input_size=64)
    save_checkpoint(tmp_path / "m.pt", model)
    rc = main(["segmentation", "evaluate", "--model", str(tmp_path / "m.pt"), "--jsrt", str(jsrt), "--landmarks",
               str(lm), "--split", "val", "--out", str(tmp_path / "ev"), "--quiet"])
    assert rc == 0
    s = pd.read_csv(tmp_path / "ev" / "summary.csv")
    assert len(s) == 6 * 3 and set(s.structure) == {"right_lung", "left_lung", "heart"}
    assert s.implausible.between(0, s.n).all()  # an untrained model can draw self-crossing contours
    assert (tmp_path / "ev" / "dice_boxplot.png").is_file()
    worst = sorted(p.name for p in (tmp_path / "ev").glob("worst_*.png"))
    assert len(worst) == 6 and worst[0].startswith("worst_low_contrast_")  # 1 clean image (val) + 5 perturbations
    # compare two evaluations of the same images: paired drops with a CI and a verdict per row
    model2 = create_model("unet", input_size=64)
    save_checkpoint(tmp_path / "u.pt", model2)
    assert main(["segmentation", "evaluate", "--model", str(tmp_path / "u.pt"), "--jsrt", str(jsrt), "--landmarks",
                 str(lm), "--split", "val", "--out", str(tmp_path / "ev2"), "--worst", "0", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["segmentation", "compare", str(tmp_path / "ev"), str(tmp_path / "ev2"), "--names", "hg", "un",
                 "--out", str(tmp_path / "cmp.csv")]) == 0
    c = pd.read_csv(tmp_path / "cmp.csv")
    assert len(c) == 5 * 3 and {"drop_hg", "drop_un", "ci_low", "ci_high", "verdict"} <= set(c.columns)
    assert np.allclose(c["difference"], c["drop_hg"] - c["drop_un"], atol=1e-4)
    assert (c["ci_low"] <= c["difference"] + 1e-9).all() and (c["difference"] <= c["ci_high"] + 1e-9).all()


def test_perturbations_keep_ground_truth_aligned():
    from cxrkit.segmentation.evaluate import perturb

    img = np.zeros((100, 100), np.uint8)
    img[10:20, 60:70] = 255
    out, m = perturb(img, "rotate+15", np.random.default_rng(0))
    ys, xs = np.nonzero(out > 127)
    centre = np.array([64.5, 14.5]) @ m[:, :2].T + m[:, 2]
    assert abs(xs.mean() - centre[0]) < 1.5 and abs(ys.mean() - centre[1]) < 1.5
    with pytest.raises(ValueError, match="unknown perturbation"):
        perturb(img, "blur", np.random.default_rng(0))


def test_unet_baseline_trains_and_evaluates(tmp_path, capsys):
    import pandas as pd

    jsrt, lm = make_tiny_jsrt(tmp_path)
    assert main(["segmentation", "train", "--model", "unet", "--jsrt", str(jsrt), "--landmarks", str(lm), "--out",
                 str(tmp_path / "u"), "--input-size", "64", "--steps", "2", "--eval-every", "2", "--batch-size", "2",
                 "--quiet"]) == 0
    assert main(["segmentation", "evaluate", "--model", str(tmp_path / "u" / "best.pt"), "--jsrt", str(jsrt),
                 "--landmarks", str(lm), "--split", "val", "--perturbations", "none", "--out", str(tmp_path / "ev"),
                 "--quiet"]) == 0
    s = pd.read_csv(tmp_path / "ev" / "summary.csv")
    assert len(s) == 3 and s.contour_error.isna().all()  # a pixel model has no landmarks
    capsys.readouterr()
    cv2.imwrite(str(tmp_path / "x.png"), np.zeros((64, 64), np.uint8))
    assert main(["segment", str(tmp_path / "x.png"), "--model", str(tmp_path / "u" / "best.pt"), "--out",
                 str(tmp_path / "s.csv")]) == 1  # a ModelError: the model cannot do what the command needs
    assert "gives masks, not landmarks" in capsys.readouterr().err


def test_segment_batches_give_the_same_rows_as_one_by_one(tmp_path):
    from cxrkit.io.inputs import collect_images
    from cxrkit.segmentation.infer import segment_files

    model = create_model("hybridgnet", input_size=64).eval()
    rng = np.random.default_rng(1)
    paths = []
    for i, shape in enumerate([(120, 100), (90, 90), (100, 130)]):
        paths.append(tmp_path / f"im{i}.png")
        cv2.imwrite(str(paths[-1]), rng.uniform(0, 255, shape).astype(np.uint8))
    inputs = collect_images(paths)[1]
    segment_files(model, inputs, tmp_path / "one.csv", progress=False, batch_size=1)
    segment_files(model, inputs, tmp_path / "two.csv", progress=False, batch_size=2)
    assert (tmp_path / "one.csv").read_text() == (tmp_path / "two.csv").read_text()
    assert len((tmp_path / "one.csv").read_text().splitlines()) == 4


def test_unet_and_hybridgnet_get_the_same_augmentation_stream():
    """Training draws (images, landmarks) identically for both models: passing masks adds no random draw."""
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.random((3, 1, 32, 32), dtype=np.float32))
    pts = torch.from_numpy(rng.random((3, 120, 2), dtype=np.float32))
    masks = torch.from_numpy((rng.random((3, 3, 32, 32)) > 0.5).astype(np.float32))
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    xa, pa = augment_landmarks(x, pts, g1)
    xb, pb, mb = augment_landmarks(x, pts, g2, masks=masks)
    assert torch.equal(xa, xb) and torch.equal(pa, pb) and mb.shape == masks.shape
    assert torch.equal(g1.get_state(), g2.get_state())  # the next step's draws match too


def test_save_every_keeps_weight_snapshots(tmp_path):
    from cxrkit.models import load_checkpoint, read_checkpoint

    jsrt, lm = make_tiny_jsrt(tmp_path)
    run = tmp_path / "run"
    args = ["segmentation", "train", "--jsrt", str(jsrt), "--landmarks", str(lm), "--out", str(run),
            "--input-size", "64", "--steps", "4", "--eval-every", "4", "--batch-size", "2", "--save-every", "2",
            "--quiet"]
    assert main(args) == 0
    snaps = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert snaps == ["step-00002.pt", "step-00004.pt"]
    final = read_checkpoint(run / "checkpoints" / "step-00004.pt")
    assert "training" not in final  # weights only
    assert final["card"].weights_sha256 == read_checkpoint(run / "last.pt")["card"].weights_sha256
    assert read_checkpoint(run / "checkpoints" / "step-00002.pt")["card"].weights_sha256 != final["card"].weights_sha256
    load_checkpoint(run / "checkpoints" / "step-00002.pt")
    # the snapshot cadence does not change training: a run resumes with another --save-every
    args[args.index("--steps") + 1] = "4"
    args[args.index("--save-every") + 1] = "3"
    assert main(args) == 0
    assert main(args[:-3] + ["--save-every", "-1", "--quiet"]) == 2


def test_evaluate_clean_up_counts_implausible_before_and_after(tmp_path, capsys):
    import pandas as pd

    jsrt, lm = make_tiny_jsrt(tmp_path)
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "u.pt", create_model("unet", input_size=64))  # untrained: ragged masks
    base = ["segmentation", "evaluate", "--model", str(tmp_path / "u.pt"), "--jsrt", str(jsrt), "--landmarks",
            str(lm), "--split", "train", "--perturbations", "none", "occlusion", "--worst", "0", "--quiet"]
    assert main(base + ["--out", str(tmp_path / "raw")]) == 0
    assert main(base + ["--out", str(tmp_path / "clean"), "--clean-up"]) == 0
    out = capsys.readouterr().out
    raw, clean = (pd.read_csv(tmp_path / d / "per_image.csv") for d in ("raw", "clean"))
    assert not raw["clean_up"].any() and clean["clean_up"].all()
    assert (raw["plausible"] == raw["plausible_raw"]).all()
    assert (clean["plausible_raw"] == raw["plausible"]).all()  # the same predictions before the clean-up
    s = pd.read_csv(tmp_path / "clean" / "summary.csv")
    assert s["implausible_raw"].sum() > 0  # an untrained unet's masks are fragmented...
    assert (s["implausible"] <= s["implausible_raw"]).all()
    assert (clean.loc[~clean["plausible"], "dice"] == 0).all()  # ...after the clean-up only empty masks can be
    assert f"implausible masks: {int(s['implausible_raw'].sum())} of {len(clean)} as predicted, " \
           f"{int(s['implausible'].sum())} after the clean-up" in out

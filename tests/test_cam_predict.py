"""CAM / Grad-CAM heatmaps and `cxrkit predict` on a checkpoint."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from cxrkit.classification.cam import cam, grad_cam
from cxrkit.classification.predict import predict_images
from cxrkit.errors import CxrkitError
from cxrkit.findings import FINDINGS
from cxrkit.models import create_model
from cxrkit.models.checkpoint import save_checkpoint


def _bright_spot_model():
    """A resnet_lite whose 'Mass' score is driven by brightness (so CAM must peak on the bright spot)."""
    torch.manual_seed(0)
    model = create_model("resnet_lite", input_size=64, labels=("Mass", "Nodule")).eval()
    return model


def test_cam_equals_gradcam_direction_for_linear_head():
    model = _bright_spot_model()
    x = torch.randn(2, 1, 64, 64)
    p1, maps_cam = cam(model, x)
    p2, maps_grad = grad_cam(model, x)
    assert maps_cam.shape == maps_grad.shape == (2, 2, 8, 8)
    assert torch.allclose(p1, p2, atol=1e-5)
    assert (maps_cam >= 0).all() and (maps_grad >= 0).all()


def test_cam_localizes_what_drives_the_logit():
    # Hand-built head: class 0 = channel-sum of features; CAM must peak where the features are large.
    model = _bright_spot_model()
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.weight[0] = 1.0
    img = np.zeros((64, 64), np.float32)
    x = torch.from_numpy(img)[None, None]
    feats = model.features(x)
    _, maps = cam(model, x)
    k = int(maps[0, 0].flatten().argmax())
    assert k == int(feats[0].sum(0).flatten().argmax())


def test_predict_images_maps_to_original_size_and_boxes_in_bounds():
    model = _bright_spot_model()
    img = (np.random.default_rng(0).uniform(0, 255, (80, 50))).astype(np.uint8)
    pred = predict_images(model, [img], ["a.png"], box_policy="all")[0]
    assert pred.heatmaps.shape == (2, 80, 50)
    assert set(pred.probabilities) == {"Mass", "Nodule"}
    for b in pred.boxes:
        assert 0 <= b["x"] and b["x"] + b["w"] <= 50 + 1e-6 and 0 <= b["y"] and b["y"] + b["h"] <= 80 + 1e-6
    js = pred.to_json()
    assert set(js) == {"image", "width", "height", "model", "probabilities", "boxes"}
    assert (js["width"], js["height"]) == (50, 80)
    with pytest.raises(CxrkitError, match="box policy 'some' is not one of"):
        predict_images(model, [img], box_policy="some")
    with pytest.raises(CxrkitError, match="unknown heatmap method 'x'"):
        predict_images(model, [img], heatmap_method="x")


def test_cli_predict_writes_contract_json_and_overlay(tmp_path, capsys):
    from cxrkit.cli.main import main

    model = create_model("resnet_lite", input_size=64)
    save_checkpoint(tmp_path / "m.pt", model)
    img = (np.random.default_rng(1).uniform(0, 255, (96, 128))).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "x1.png"), img)
    rc = main(["predict", str(tmp_path / "x1.png"), "--model", str(tmp_path / "m.pt"), "--out", str(tmp_path / "o"),
               "--all-boxes", "--heatmap", "gradcam"])
    assert rc == 0
    js = json.loads((tmp_path / "o" / "x1.json").read_text())
    assert js["image"] == "x1.png" and js["width"] == 128 and js["height"] == 96 and js["model"] == "resnet_lite"
    assert list(js["probabilities"]) == list(FINDINGS)
    assert all(0 <= v <= 1 for v in js["probabilities"].values())
    for b in js["boxes"]:
        assert set(b) == {"finding", "x", "y", "w", "h", "score"} and b["finding"] in FINDINGS
    overlay = cv2.imread(str(tmp_path / "o" / "x1_overlay.png"))
    assert overlay.shape == (96, 128, 3)
    # A file that is not an image: one-line error naming it, non-zero exit.
    (tmp_path / "bad.png").write_text("not a png")
    capsys.readouterr()
    assert main(["predict", str(tmp_path / "bad.png"), "--model", str(tmp_path / "m.pt"), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert "bad.png" in err[-1] and err[-1].startswith("cxrkit predict: error:")


def test_cli_localize_scores_boxes_and_writes_overlays(tmp_path, capsys):
    import pandas as pd

    from cxrkit.cli.main import main

    model = create_model("resnet_lite", input_size=64)
    save_checkpoint(tmp_path / "m.pt", model)
    (tmp_path / "img").mkdir()
    rng = np.random.default_rng(0)
    for name in ("00000001_000.png", "00000002_000.png"):
        cv2.imwrite(str(tmp_path / "img" / name), rng.uniform(0, 255, (128, 128)).astype(np.uint8))
    (tmp_path / "boxes.csv").write_text(
        "Image Index,Finding Label,Bbox [x,y,w,h],,,\n"
        "00000001_000.png,Mass,10,10,40,40\n00000002_000.png,Infiltrate,60,60,50,50\n00000009_000.png,Mass,1,1,5,5\n")
    rc = main(["localize", "--model", str(tmp_path / "m.pt"), "--images", str(tmp_path / "img"), "--boxes",
               str(tmp_path / "boxes.csv"), "--out", str(tmp_path / "loc")])
    assert rc == 0
    for method in ("paper", "adaptive"):
        t = pd.read_csv(tmp_path / "loc" / f"localization_{method}.csv", index_col=0)
        assert set(t.index) == {"Mass", "Infiltration", "all"} and t.loc["all", "n_boxes"] == 2
        assert (tmp_path / "loc" / "overlays" / f"00000001_000_{method}.png").is_file()
    pred = pd.read_csv(tmp_path / "loc" / "pred_boxes.csv")
    assert set(pred["method"]) == {"paper", "adaptive"} and (pred["x"] >= 0).all()

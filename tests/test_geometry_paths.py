"""One geometry for training and inference: every path pads a non-square film to a centred square.

A 2,320 x 2,828 (width x height) radiograph goes through the preprocessing cache and the training dataset,
``predict``, ``segment`` and ``analyze``. The same film padded to a 2,828 x 2,828 square by hand must give
the same model input, and boxes, landmarks and masks that land on the same original pixels (shifted by the
padding). A path that stretched the film instead of padding it would fail every comparison.
"""

from __future__ import annotations

import csv
import json
from importlib import resources
from pathlib import Path

import cv2
import numpy as np
import pytest

from cxrkit.cli.main import main

W, H = 2320, 2828
PAD = (H - W) // 2  # columns of padding on the left of the square version
SAMPLE = Path(str(resources.files("cxrkit.demo") / "sample" / "nih" / "images" / "00013911_000.png"))


@pytest.fixture(scope="module")
def films(tmp_path_factory):
    from cxrkit.classification.lesion_data import fit_lung_template
    from cxrkit.classification.lesions import LESION_FINDINGS, insert_findings

    root = tmp_path_factory.mktemp("films")
    gray = cv2.imread(str(SAMPLE), cv2.IMREAD_GRAYSCALE)
    right, left, _ = fit_lung_template(gray)  # inserted lesions: the shipped benchmark model sees them
    lesions, _ = insert_findings(gray.astype(np.float32) / 255, right, left, {f: True for f in LESION_FINDINGS},
                                 np.random.default_rng(3))
    img = cv2.resize((lesions * 255).round().astype(np.uint8), (W, H), interpolation=cv2.INTER_LINEAR)
    square = np.zeros((H, H), np.uint8)
    square[:, PAD:PAD + W] = img
    (root / "images").mkdir()
    cv2.imwrite(str(root / "images" / "00000001_000.png"), img)
    cv2.imwrite(str(root / "images" / "00000002_000.png"), square)
    return root


def test_cache_and_dataset_pad_like_inference(films):
    import pandas as pd

    from cxrkit.data.cache import build_cache
    from cxrkit.data.nih import read_boxes, read_metadata
    from cxrkit.data.torch_datasets import NIHDataset
    from cxrkit.models import create_model

    header = ("Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
              "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]")
    (films / "meta.csv").write_text(header + f"\n00000001_000.png,Mass,0,1,50,M,PA,{W},{H},0.143,0.143\n"
                                    f"00000002_000.png,Mass,0,2,50,M,PA,{H},{H},0.143,0.143\n")
    box = (800.0, 1200.0, 400.0, 300.0)
    (films / "boxes.csv").write_text("Image Index,Finding Label,Bbox [x,y,w,h],,,\n"
                                     f"00000001_000.png,Mass,{box[0]},{box[1]},{box[2]},{box[3]}\n"
                                     f"00000002_000.png,Mass,{box[0] + PAD},{box[1]},{box[2]},{box[3]}\n")
    meta = read_metadata(films / "meta.csv")
    ds = NIHDataset(meta, films / "images", size=224, boxes=read_boxes(films / "boxes.csv"))
    a, b = ds[0], ds[1]
    assert np.array_equal(a["image"].numpy(), b["image"].numpy())  # padded, not stretched
    assert np.allclose(a["boxes"].numpy(), b["boxes"].numpy(), atol=1e-4) and a["orig_size"] == (H, W)
    assert a["scale"] == (224 / H, 224 / H)
    cache = build_cache(list(meta["Image Index"]), films / "images", films / "cache", size=224, workers=1,
                        progress=False)
    cached = NIHDataset(meta, cache, size=224, boxes=read_boxes(films / "boxes.csv"))
    assert np.array_equal(cached[0]["image"].numpy(), a["image"].numpy())
    assert np.allclose(cached[0]["boxes"].numpy(), a["boxes"].numpy())
    # the training input is exactly the inference input (model.preprocess), normalization included
    from cxrkit.models.preprocess import normalize

    model = create_model("resnet_lite", input_size=224)
    x, geoms = model.preprocess([cv2.imread(str(films / "images" / "00000001_000.png"), cv2.IMREAD_GRAYSCALE)])
    assert np.allclose(x[0].numpy(), normalize(a["image"][None], model.card.normalization)[0].numpy(), atol=1e-6)
    assert (geoms[0].pad_left, geoms[0].pad_top) == (PAD, 0)
    del pd


def test_predict_boxes_land_on_the_same_pixels(films, tmp_path):
    out = tmp_path / "p"
    assert main(["predict", str(films / "images"), "--model", "resnet_lite_lesions", "--all-boxes", "--out", str(out),
                 "--device", "cpu"]) == 0
    a = json.loads((out / "00000001_000.json").read_text())
    b = json.loads((out / "00000002_000.json").read_text())
    assert (a["width"], a["height"]) == (W, H) and (b["width"], b["height"]) == (H, H)
    assert a["probabilities"] == pytest.approx(b["probabilities"], abs=1e-6)
    assert len(a["boxes"]) == len(b["boxes"]) > 0
    for ba, bb in zip(a["boxes"], b["boxes"]):
        assert ba["finding"] == bb["finding"]
        assert ba["x"] + PAD == pytest.approx(bb["x"], abs=1.5) and ba["y"] == pytest.approx(bb["y"], abs=1.5)
        assert (ba["w"], ba["h"]) == pytest.approx((bb["w"], bb["h"]), abs=1.5)
        assert 0 <= ba["x"] and ba["x"] + ba["w"] <= W + 1


def test_segment_and_analyze_landmarks_and_masks_land_on_the_same_pixels(films, tmp_path):
    """hybridgnet standardizes each image over its own pixels (not the padding), so the hand-padded square is a
    different input for it; instead: the landmarks ``segment`` writes are the model's outputs on the padded
    square mapped back by the padding and scale, the masks are those landmarks filled at the original size,
    and ``analyze`` gives the same."""
    import torch

    from cxrkit.io.landmarks import organ_masks
    from cxrkit.io.rle import decode
    from cxrkit.models import load_model

    film = films / "images" / "00000001_000.png"
    seg = tmp_path / "seg.csv"
    assert main(["segment", str(film), "--out", str(seg), "--quiet", "--device", "cpu"]) == 0
    with open(seg, newline="") as f:
        (a,) = list(csv.DictReader(f))
    assert (int(a["Height"]), int(a["Width"])) == (H, W)
    pa = np.array(a["Landmarks"].split(","), int).reshape(-1, 2)
    model = load_model("hybridgnet", device="cpu")
    img = cv2.imread(str(film), cv2.IMREAD_GRAYSCALE)
    x, (geom,) = model.preprocess([img])
    s = model.card.input_size
    assert (geom.pad_left, geom.pad_top, geom.side) == (PAD, 0, H)
    cols = int(PAD * s / H)  # the padding columns of the model input hold the normalized zero, both sides
    assert torch.allclose(x[0, 0, :, :cols], x[0, 0, 0, 0]) and torch.allclose(x[0, 0, :, -cols:], x[0, 0, 0, 0])
    # the model's own outputs in the computation `segment` runs (its inference copy, in --precision auto)
    from cxrkit.models.device import resolve_precision
    from cxrkit.segmentation.job import autocast

    dev = torch.device("cpu")
    with autocast(dev, resolve_precision("auto", model.card, dev)):
        raw = model.infer(x)["landmarks"][0].float().numpy() * s  # (x, y) in model-input pixels
    expected = np.round(raw * H / s - (PAD, 0))
    assert np.abs(pa - expected).max() <= 1
    assert pa[:, 0].min() > 0 and pa[:, 0].max() < W  # inside the film, not the padding
    filled = organ_masks(pa.astype(np.float64), H, W)
    for organ, key in (("Right Lung", "right_lung"), ("Left Lung", "left_lung"), ("Heart", "heart")):
        assert np.array_equal(decode(a[organ], H, W), filled[key]), organ
    out = tmp_path / "an"
    assert main(["analyze", str(film), "--out", str(out), "--no-qc", "--quiet", "--no-preview", "--device", "cpu"]) == 0
    doc = json.loads((out / "00000001_000.json").read_text())
    assert np.array_equal(np.array(doc["segmentation"]["landmarks"]), pa)
    assert doc["segmentation"]["masks"]["heart"] == a["Heart"]

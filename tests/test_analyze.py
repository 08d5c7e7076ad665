"""`cxrkit analyze`: the documented JSON (schema 1.2; optional heatmaps) and a self-contained HTML report per
image plus a browse-mode preview; DICOM spacing gives mm; a bad file fails alone; QC is filled when a
reference set exists."""

from __future__ import annotations

import json
import shutil
from importlib import resources
from pathlib import Path

import cv2
import numpy as np
import pytest

from cxrkit.cli.main import main

SAMPLE = Path(str(resources.files("cxrkit.demo") / "sample" / "nih" / "images"))


def _run(tmp_path, *extra):
    imgs = tmp_path / "in"
    imgs.mkdir()
    shutil.copy(SAMPLE / "00009745_000.png", imgs / "a.png")
    (imgs / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    img = cv2.imread(str(SAMPLE / "00015649_000.png"), cv2.IMREAD_GRAYSCALE)
    from test_images import _dicom

    _dicom(imgs / "c.dcm", (img.astype(np.uint16) * 16)[::2, ::2])
    return main(["analyze", str(imgs), "--out", str(tmp_path / "out"), "--quiet", *extra])


def _check_common(doc, width, height):
    from cxrkit.io.rle import decode

    assert doc["schema_version"] == "1.2" and (doc["width"], doc["height"]) == (width, height)
    if doc["classifier"] is None:
        assert doc["probabilities"] == {} and doc["boxes"] == []
    else:
        assert set(doc["probabilities"]) == set(doc["classifier"]["labels"])
    assert all({"finding", "x", "y", "w", "h", "score"} <= set(b) for b in doc["boxes"])
    pts = np.array(doc["segmentation"]["landmarks"])
    assert pts.shape == (120, 2) and pts[:, 0].max() < width and pts[:, 1].max() < height
    masks = {k: decode(v, height, width) for k, v in doc["segmentation"]["masks"].items()}
    assert set(masks) == {"right_lung", "left_lung", "heart"}
    m = doc["measurements"]
    assert m["area_heart_px"] == int(np.count_nonzero(masks["heart"])) and 0.3 < m["ctr"] < 0.8


def test_analyze_json_html_dicom_and_errors(tmp_path, capsys):
    assert _run(tmp_path, "--no-qc", "--heatmaps", "--model", "resnet_lite_lesions") == 1  # broken.png fails alone
    out = tmp_path / "out"
    assert "1 failed" in capsys.readouterr().out and not (out / "broken.json").exists()
    assert not (out / "broken.preview.png").exists()
    doc = json.loads((out / "a.json").read_text())
    _check_common(doc, 1024, 1024)
    assert doc["qc"] is None and "--no-qc" in doc["qc_note"] and doc["pixel_spacing_mm"] is None
    hm = doc["heatmaps"]
    assert set(hm["maps"]) == set(doc["classifier"]["labels"]) and (hm["width"], hm["height"]) == (128, 128)
    prev = cv2.imread(str(out / "a.preview.png"), cv2.IMREAD_UNCHANGED)
    assert prev.shape == (1024, 1024) and prev.dtype == np.uint8
    assert cv2.imread(str(out / "c.preview.png"), cv2.IMREAD_UNCHANGED).shape == (512, 512)  # 16-bit DICOM -> 8-bit
    page = (out / "a.html").read_text()
    assert page.count("data:image/png;base64,") == 2 and "CTR 0." in page and "a.png" in page
    assert doc["classifier"]["provenance"]["synthetic"] is True and "synthetic" in page.lower()
    dcm = json.loads((out / "c.json").read_text())
    _check_common(dcm, 512, 512)
    assert dcm["pixel_spacing_mm"] == [0.2, 0.25]
    m = dcm["measurements"]
    assert m["heart_width_mm"] == pytest.approx(m["heart_width_px"] * 0.25)
    assert m["area_heart_mm2"] == pytest.approx(m["area_heart_px"] * 0.05)


@pytest.mark.realdata
def test_analyze_fills_qc_with_a_reference_set(tmp_path, shared, monkeypatch):
    monkeypatch.setenv("CXRKIT_RCA_REFERENCE", str(shared("segmentation", "jsrt")))
    _run(tmp_path)
    doc = json.loads((tmp_path / "out" / "a.json").read_text())
    q = doc["qc"]
    assert 0.7 < q["dice_rca_mean"] <= q["dice_rca_max"] <= 1 and 0 < q["dice_rca_calibrated"] <= 1
    assert set(q["per_structure"]) == {"right_lung", "left_lung", "heart"}


def test_heatmap_encoding_round_trip_and_options(tmp_path):
    from cxrkit.analysis.document import decode_heatmap, encode_heatmaps, preview_png
    from cxrkit.errors import CxrkitError

    yy, xx = np.mgrid[0:300, 0:200]
    blob = np.exp(-((yy - 100.0) ** 2 + (xx - 150.0) ** 2) / (2 * 20.0 ** 2)).astype(np.float32) * 3.0
    hm = encode_heatmaps(np.stack([blob, np.zeros_like(blob)]), ["A", "B"])
    assert (hm["width"], hm["height"]) == (85, 128)  # longer side 128, aspect kept
    a = decode_heatmap(hm["maps"]["A"])
    assert a.shape == (128, 85) and a.max() == pytest.approx(hm["maps"]["A"]["max"], rel=0.01)
    assert 2.8 < hm["maps"]["A"]["max"] <= 3.0
    y, x = np.unravel_index(np.argmax(a), a.shape)
    assert abs(y * 300 / 128 - 100) < 6 and abs(x * 200 / 85 - 150) < 6  # the peak stays where it was
    assert hm["maps"]["B"]["max"] == 0 and not decode_heatmap(hm["maps"]["B"]).any()
    with pytest.raises(CxrkitError, match="3 labels"):
        encode_heatmaps(np.stack([blob, blob]), ["A", "B", "C"])
    with pytest.raises(CxrkitError, match="not a PNG data URI"):
        decode_heatmap({"png": "http://example.com/x.png", "max": 1})
    small = cv2.imdecode(np.frombuffer(preview_png(np.zeros((2000, 500), np.uint16)), np.uint8), cv2.IMREAD_UNCHANGED)
    assert small.shape == (1024, 256) and small.dtype == np.uint8


def test_analyze_without_preview_or_heatmaps(tmp_path):
    out = tmp_path / "out"
    assert main(["analyze", str(SAMPLE / "00009745_000.png"), "--out", str(out), "--no-qc", "--quiet",
                 "--no-preview"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["00009745_000.html", "00009745_000.json"]
    doc = json.loads((out / "00009745_000.json").read_text())
    assert "heatmaps" not in doc
    # no classifier unless one is named: cxrkit ships none trained on real labels
    assert doc["classifier"] is None and doc["probabilities"] == {} and doc["boxes"] == []
    assert doc["segmentation"]["provenance"]["training_data"]
    _check_common(doc, 1024, 1024)
    assert "No classifier was run" in (out / "00009745_000.html").read_text()


def test_analyze_with_a_14_finding_classifier_reports_all_14(tmp_path):
    """The shipped classifier knows 3 inserted findings; any NIH checkpoint (e.g. from `cxrkit train`) given with
    --model yields the 14 probabilities, in NIH order, with heatmaps for each."""
    import torch

    from cxrkit.findings import FINDINGS
    from cxrkit.models import create_model
    from cxrkit.models.checkpoint import save_checkpoint

    torch.manual_seed(0)
    ckpt = tmp_path / "nih14.pt"
    save_checkpoint(ckpt, create_model("resnet_lite", input_size=64))
    img = tmp_path / "x.png"
    shutil.copy(SAMPLE / "00009745_000.png", img)
    assert main(["analyze", str(img), "--out", str(tmp_path / "out"), "--model", str(ckpt), "--no-qc", "--heatmaps",
                 "--quiet"]) == 0
    doc = json.loads((tmp_path / "out" / "x.json").read_text())
    assert list(doc["probabilities"]) == list(FINDINGS) and len(FINDINGS) == 14
    assert all(0.0 <= p <= 1.0 for p in doc["probabilities"].values())
    assert list(doc["heatmaps"]["maps"]) == list(FINDINGS)
    _check_common(doc, 1024, 1024)

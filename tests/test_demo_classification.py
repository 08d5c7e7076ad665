"""The shipped lesion-insertion model and the demo's classification section."""

from __future__ import annotations

import re

import torch

from cxrkit.cli.main import main
from cxrkit.models import create_model, default_card, shipped_weights
from cxrkit.models.checkpoint import file_sha256, read_checkpoint


def test_shipped_lesion_model_is_verified_and_loads_offline():
    path = shipped_weights("resnet_lite_lesions")
    assert path is not None and path.stat().st_size < 8_000_000
    card = default_card("resnet_lite_lesions")
    payload = read_checkpoint(path)  # recomputes the state-dict sha256
    assert payload["card"].weights_sha256 == card.weights_sha256
    assert card.labels == ("Effusion", "Mass", "Nodule") and card.input_size == 256
    model = create_model("resnet_lite_lesions", pretrained=True)
    with torch.inference_mode():
        assert model(torch.zeros(1, 1, 256, 256)).shape == (1, 3)
    assert len(file_sha256(path)) == 64


def test_demo_classification_section(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--sections", "classification"]) == 0
    index = (out / "index.html").read_text()
    assert "resnet_lite_lesions" in index and "failed" not in index
    pngs = re.findall(r'src="(classification/[^"]+\.png)"', index)
    assert len(pngs) == 6 and all((out / p).is_file() for p in pngs)
    assert re.search(r"Eff \d\.\d\d Mas \d\.\d\d Nod \d\.\d\d", index)


def test_demo_segmentation_section(tmp_path):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--sections", "segmentation"]) == 0
    index = (out / "index.html").read_text()
    assert "failed" not in index and index.count("CTR 0.") == 6
    pngs = re.findall(r'src="(segmentation/[^"]+\.png)"', index)
    assert len(pngs) == 6 and all((out / p).is_file() for p in pngs)
    from cxrkit.data.chexmask import iter_records

    assert len(list(iter_records(out / "segmentation" / "segmentation.csv"))) == 6

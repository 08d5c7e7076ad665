"""`cxrkit models list|show`, registry names wherever a checkpoint is taken, and the one model loader."""

from __future__ import annotations

import json

import pytest

from cxrkit.cli.main import main
from cxrkit.errors import ModelError, UnknownModelError


def test_models_list_names_task_size_and_shipped_weights(capsys):
    assert main(["models", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = {ln.split()[0]: ln for ln in lines[1:]}
    assert {"hybridgnet", "rca_regnet", "resnet_lite_lesions", "densenet121", "unet", "chexnet"} <= set(rows)
    assert "segmentation" in rows["hybridgnet"] and " 256 " in rows["hybridgnet"] and "shipped" in rows["hybridgnet"]
    assert "shipped" not in rows["densenet121"] and "synthetic" in rows["resnet_lite_lesions"]
    assert main(["models", "list", "--task", "segmentation", "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert {r["name"] for r in doc} == {"hybridgnet", "unet"} and all(r["task"] == "segmentation" for r in doc)


def test_models_show_card_with_provenance(capsys, tmp_path):
    assert main(["models", "show", "hybridgnet"]) == 0
    card = json.loads(capsys.readouterr().out)
    p = card["provenance"]
    assert card["labels"] == ["right_lung", "left_lung", "heart"] and card["outputs"] == ["landmarks"]
    assert "JSRT" in p["training_data"] and p["license"] and p["intended_use"] and p["metrics"]
    assert card["preprocessing"]["geometry"].startswith("pad to a centred square")
    assert main(["models", "show", "nope"]) == 2
    assert "unknown model 'nope'" in capsys.readouterr().err
    # a checkpoint path works the same way
    from cxrkit.models import create_model, save_checkpoint

    save_checkpoint(tmp_path / "m.pt", create_model("resnet_lite", input_size=64))
    assert main(["models", "show", str(tmp_path / "m.pt")]) == 0
    assert json.loads(capsys.readouterr().out)["source"] == {"checkpoint": str(tmp_path / "m.pt")}


def test_registry_names_work_wherever_a_checkpoint_is_taken(tmp_path, capsys):
    from importlib import resources

    img = resources.files("cxrkit.demo") / "sample" / "nih" / "images" / "00013911_000.png"
    assert main(["predict", str(img), "--model", "resnet_lite_lesions", "--out", str(tmp_path / "p"),
                 "--device", "cpu"]) == 0
    doc = json.loads((tmp_path / "p" / "00013911_000.json").read_text())
    assert set(doc["probabilities"]) == {"Effusion", "Mass", "Nodule"} and doc["model"] == "resnet_lite_lesions"
    # a model of the wrong task, or one without weights, is refused with the reason
    assert main(["predict", str(img), "--model", "hybridgnet", "--out", str(tmp_path / "q")]) == 1
    assert "segmentation model" in capsys.readouterr().err and not (tmp_path / "q").exists()
    assert main(["predict", str(img), "--model", "densenet121", "--out", str(tmp_path / "q")]) == 2
    assert "no weights shipped" in capsys.readouterr().err


def test_load_model_checks_task_outputs_and_device():
    from cxrkit.models import load_model

    m = load_model(None, default="hybridgnet", task="segmentation", needs="landmarks", device="cpu")
    assert m.card.gives("landmarks") and not m.training and m.card.provenance.training_data
    with pytest.raises(ModelError, match="classification model"):
        load_model("resnet_lite_lesions", task="segmentation")
    with pytest.raises(ModelError, match="not landmarks"):
        load_model("resnet_lite_lesions", needs="landmarks")
    with pytest.raises(UnknownModelError, match="unknown model"):
        load_model("hybridgnett")
    with pytest.raises(ModelError, match="no model given"):
        load_model(None)
    from cxrkit.errors import UsageError

    with pytest.raises(UsageError, match="CUDA device"):
        load_model("hybridgnet", device="cuda:7")
    with pytest.raises(UsageError, match="expected auto, cpu"):
        load_model("hybridgnet", device="tpu")

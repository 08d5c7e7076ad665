"""Box rules carried by a model card: the shipped resnet_lite_lesions draws its boxes with the per-finding rules its
lesion-benchmark run chose on validation images, in `cxrkit predict`, `localize`, `analyze` and the Python API."""

from __future__ import annotations

import json
import shutil
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import torch

import cxrkit
from cxrkit.classification.boxes import METHODS, heatmap_to_boxes
from cxrkit.classification.cam import original_maps
from cxrkit.cli.main import main
from cxrkit.errors import ModelError
from cxrkit.io.images import read_image
from cxrkit.models import create_model, default_card, shipped_weights
from cxrkit.models.cards import BOX_RULE_METHODS, ModelCard
from cxrkit.models.checkpoint import read_checkpoint, state_dict_sha256
from cxrkit.models.device import resolve_precision

NAME = "resnet_lite_lesions"
# A sample image on which the shipped model calls Mass (p ~0.78) and the card's Mass rule (threshold 0.5, union)
# gives a different box from the paper's method.
IMAGE = Path(str(resources.files("cxrkit.demo") / "sample" / "nih" / "images" / "00013911_000.png"))


def _card_boxes(finding: str) -> list[tuple[float, float, float, float]]:
    """The card rule's boxes computed independently of predict: the raw class map at the original resolution (the
    lesion benchmark's map, in the precision ``--precision auto`` gives on this CPU) through the rule's box
    method."""
    torch.set_num_threads(1)
    model = create_model(NAME, pretrained=True)
    bf16 = resolve_precision("auto", model.card, "cpu") == "bf16"
    _, maps = original_maps(model, [read_image(IMAGE).pixels], bf16=bf16, clip=False)
    method, options = model.card.box_rule(finding)
    return [b.as_tuple() for b in heatmap_to_boxes(maps[0][model.card.labels.index(finding)], method=method, **options)]


def _first(boxes: list[dict], finding: str) -> tuple[float, float, float, float] | None:
    found = [b for b in boxes if b["finding"] == finding]
    return (found[0]["x"], found[0]["y"], found[0]["w"], found[0]["h"]) if found else None


@pytest.fixture(scope="module")
def expected():
    card_box = _card_boxes("Mass")[0]
    model = create_model(NAME, pretrained=True)
    (paper,) = cxrkit.predict(IMAGE, NAME, device="cpu", box_method="paper")
    paper_box = _first(paper.boxes, "Mass")
    # the test is only meaningful if the two methods disagree on this image
    assert paper_box is not None and not np.allclose(card_box, paper_box, atol=2)
    assert model.card.box_rule("Mass") == ("threshold", {"component": "union", "threshold": 0.5})
    return card_box, paper_box


def test_shipped_card_matches_its_weights_file():
    path = shipped_weights(NAME)
    payload = read_checkpoint(path)  # recomputes the digest of the stored weights
    card = default_card(NAME)
    assert state_dict_sha256(payload["state_dict"]) == card.weights_sha256 == payload["card"].weights_sha256
    assert payload["card"] == card  # the file carries the registry card: rules, provenance, metrics
    a = card.arch_kwargs
    assert a["cam_flips"] == "hv" and a["cam_flips_train"] is True and a["cam_view_shift"] == ((0, 0),) * 3
    assert create_model(NAME, pretrained=True).flip_averaging
    assert {label for label, _, _ in card.box_rules} == set(card.labels)
    metrics = card.provenance.metrics_dict
    assert set(metrics) == {"lesion_bench_test_auroc_mean", "lesion_bench_test_acc_iobb_0.5",
                            "lesion_bench_test_acc_iou_0.3", "lesion_bench_test_mean_iou"}
    assert 0.765 not in metrics.values() and card.provenance.metrics_command


def test_card_box_rules_round_trip_and_are_validated():
    assert BOX_RULE_METHODS == METHODS
    card = default_card(NAME)
    assert ModelCard.from_dict(card.to_dict()) == card
    assert ModelCard.from_dict(json.loads(card.to_json())).box_rules == card.box_rules
    assert json.loads(card.to_json())["box_rules"]["Mass"] == {"method": "threshold", "component": "union",
                                                               "threshold": 0.5}
    with pytest.raises(ModelError, match="Hernia"):
        card.replace(box_rules=(("Hernia", "paper", ()),))
    with pytest.raises(ModelError, match="'blob'"):
        card.replace(box_rules={"Mass": {"method": "blob"}})
    assert default_card("resnet_lite").box_rules == () and default_card("resnet_lite").box_rule("Mass") is None


def test_predict_cli_uses_the_card_rules_by_default(tmp_path, expected):
    card_box, paper_box = expected
    got = {}
    for extra in ((), ("--box-method", "card"), ("--box-method", "paper")):
        out = tmp_path / ("default" if not extra else extra[1])
        assert main(["predict", str(IMAGE), "--model", NAME, "--out", str(out), "--device", "cpu", "--workers", "0",
                     *extra]) == 0
        got[out.name] = _first(json.loads((out / "00013911_000.json").read_text())["boxes"], "Mass")
    assert np.allclose(got["default"], card_box, atol=1) and np.allclose(got["card"], card_box, atol=1)
    assert np.allclose(got["paper"], paper_box, atol=1)  # the explicit option still gives the paper's boxes


def test_python_api_uses_the_card_rules_by_default(expected):
    card_box, _ = expected
    (p,) = cxrkit.predict(IMAGE, NAME, device="cpu")
    assert np.allclose(_first(p.boxes, "Mass"), card_box, atol=1)
    # every box of every finding is the card rule's (box_policy all)
    (a,) = cxrkit.predict(IMAGE, NAME, device="cpu", box_policy="all")
    for finding in ("Effusion", "Nodule"):
        assert np.allclose(_first(a.boxes, finding), _card_boxes(finding)[0], atol=1)


def test_analyze_uses_the_card_rules_by_default(tmp_path, expected):
    card_box, _ = expected
    assert main(["analyze", str(IMAGE), "--model", NAME, "--no-qc", "--out", str(tmp_path / "a"), "--device", "cpu",
                 "--workers", "0", "--quiet"]) == 0
    doc = json.loads((tmp_path / "a" / "00013911_000.json").read_text())
    assert np.allclose(_first(doc["boxes"], "Mass"), card_box, atol=1)


def test_localize_scores_the_card_rules_by_default(tmp_path, expected):
    import pandas as pd

    card_box, paper_box = expected
    (tmp_path / "img").mkdir()
    shutil.copy(IMAGE, tmp_path / "img" / IMAGE.name)
    (tmp_path / "boxes.csv").write_text("Image Index,Finding Label,Bbox [x,y,w,h],,,\n"
                                        f"{IMAGE.name},Mass,200,620,90,110\n")
    assert main(["localize", "--model", NAME, "--images", str(tmp_path / "img"), "--boxes",
                 str(tmp_path / "boxes.csv"), "--out", str(tmp_path / "loc"), "--device", "cpu", "--no-overlays"]) == 0
    pred = pd.read_csv(tmp_path / "loc" / "pred_boxes.csv")
    assert set(pred["method"]) == {"card", "paper", "adaptive"}
    top = {m: tuple(g.sort_values("score", ascending=False, kind="stable").iloc[0][["x", "y", "w", "h"]])
           for m, g in pred[pred["Finding"] == "Mass"].groupby("method")}
    assert np.allclose(top["card"], card_box, atol=1) and np.allclose(top["paper"], paper_box, atol=1)
    assert (tmp_path / "loc" / "localization_card.csv").is_file()
    # an explicit method list is honoured
    assert main(["localize", "--model", NAME, "--images", str(tmp_path / "img"), "--boxes",
                 str(tmp_path / "boxes.csv"), "--out", str(tmp_path / "loc2"), "--device", "cpu", "--no-overlays",
                 "--methods", "paper"]) == 0
    assert set(pd.read_csv(tmp_path / "loc2" / "pred_boxes.csv")["method"]) == {"paper"}

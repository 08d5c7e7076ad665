"""Model registry, cards and verified checkpoints."""

from __future__ import annotations

import pytest
import torch

from cxrkit.errors import CxrkitError
from cxrkit.findings import FINDINGS
from cxrkit.models import (
    ModelCard,
    create_model,
    default_card,
    list_models,
    load_checkpoint,
    read_checkpoint,
    save_checkpoint,
)
from cxrkit.models.checkpoint import state_dict_sha256


def test_registry_lists_classifiers_with_cards():
    names = list_models("classification")
    assert {"densenet121", "resnet50", "resnet_lite"} <= set(names)
    card = default_card("densenet121")
    assert card.labels == FINDINGS and card.in_channels == 1 and card.input_size == 224
    with pytest.raises(Exception):
        card.input_size = 10  # frozen


def test_unknown_model_names_choices():
    with pytest.raises(CxrkitError, match="unknown model .densenet.; registered: .*densenet121"):
        create_model("densenet")


@pytest.mark.parametrize("name", ["densenet121", "resnet50", "resnet_lite"])
def test_models_take_one_channel_and_give_cams(name):
    model = create_model(name, input_size=64, labels=("Mass", "Nodule")).eval()
    x = torch.randn(2, 1, 64, 64)
    with torch.inference_mode():
        logits = model(x)
        logits2, cams = model.forward_with_cams(x)
    assert logits.shape == (2, 2) and cams.shape[:2] == (2, 2)
    assert torch.allclose(logits, logits2, atol=1e-4)


def test_preprocess_pads_to_square_and_normalizes():
    model = create_model("resnet_lite", input_size=32)
    import numpy as np

    img = np.full((40, 20), 255, np.uint8)
    x, geoms = model.preprocess([img])
    assert x.shape == (1, 1, 32, 32)
    n = model.card.normalization
    assert float(x.max()) == pytest.approx((1 - n.mean) / n.std)
    assert geoms[0].height == 40 and geoms[0].width == 20


def test_checkpoint_roundtrip_and_sha(tmp_path):
    model = create_model("resnet_lite", input_size=32, labels=("Mass",))
    card = save_checkpoint(tmp_path / "m.pt", model)
    assert card.weights_sha256 == state_dict_sha256(model.state_dict())
    loaded = load_checkpoint(tmp_path / "m.pt", expect_name="resnet_lite", expect_labels=("Mass",), expect_input_size=32)
    x = torch.randn(1, 1, 32, 32)
    assert torch.allclose(model.eval()(x), loaded(x))
    assert loaded.card == card


def test_checkpoint_mismatch_and_corruption_are_clear_errors(tmp_path):
    model = create_model("resnet_lite", input_size=32, labels=("Mass",))
    save_checkpoint(tmp_path / "m.pt", model)
    with pytest.raises(CxrkitError, match="labels is \\('Mass',\\), expected"):
        load_checkpoint(tmp_path / "m.pt", expect_labels=("Nodule",))
    with pytest.raises(CxrkitError, match="input size is 32, expected 64"):
        load_checkpoint(tmp_path / "m.pt", expect_input_size=64)
    with pytest.raises(CxrkitError, match="its input_size is 32"):
        create_model("resnet_lite", checkpoint=tmp_path / "m.pt", input_size=64)
    # Edit one weight: the stored sha256 no longer matches.
    payload = torch.load(tmp_path / "m.pt", weights_only=True)
    key = next(k for k, v in payload["state_dict"].items() if v.is_floating_point())
    payload["state_dict"][key] = payload["state_dict"][key] + 1
    torch.save(payload, tmp_path / "bad.pt")
    with pytest.raises(CxrkitError, match="does not match the card"):
        read_checkpoint(tmp_path / "bad.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CxrkitError, match="junk.pt: not a readable cxrkit checkpoint"):
        read_checkpoint(tmp_path / "junk.pt")


def test_card_json_roundtrip():
    card = default_card("resnet_lite").replace(thresholds=tuple(0.3 for _ in FINDINGS), weights_sha256="ab")
    assert ModelCard.from_dict(card.to_dict()) == card
    with pytest.raises(CxrkitError, match="thresholds for 14 labels"):
        card.replace(thresholds=(0.5,))


def test_per_label_lse_sharpness_pools_each_class_with_its_own_r():
    import torch

    labels = ("Effusion", "Mass", "Nodule")
    torch.manual_seed(0)
    mixed = create_model("resnet_lite", input_size=32, labels=labels, architecture={"pool": "lse", "lse_r": [4, 10, 2]})
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        got = mixed(x)
        for k, r in enumerate((4.0, 10.0, 2.0)):
            single = create_model("resnet_lite", input_size=32, labels=labels, architecture={"pool": "lse", "lse_r": r})
            single.load_state_dict(mixed.state_dict())
            assert torch.allclose(got[:, k], single(x)[:, k], atol=1e-5), (k, r)
    with pytest.raises(ValueError, match="3 labels"):
        create_model("resnet_lite", input_size=32, labels=labels, architecture={"pool": "lse", "lse_r": [4, 10]})
    with pytest.raises(ValueError, match="positive"):
        create_model("resnet_lite", input_size=32, labels=labels, architecture={"pool": "lse", "lse_r": [4, 0, 1]})


def test_finding_ensemble_takes_each_finding_from_its_member_and_round_trips(tmp_path):
    import torch

    from cxrkit.models.families.ensemble import FindingEnsemble, make_ensemble

    labels = ("Effusion", "Mass", "Nodule")
    torch.manual_seed(0)
    a = create_model("resnet_lite", input_size=32, labels=labels)
    b = create_model("resnet_lite", input_size=32, labels=labels, architecture={"lse_r": 4.0})
    unused = create_model("resnet_lite", input_size=32, labels=labels)
    a.eval(), b.eval()  # a loaded checkpoint is in eval mode (batch norm running statistics)
    ens = make_ensemble([a, unused, b], [2, 0, 0])
    assert len(ens.members) == 2 and ens.card.arch_kwargs["select"] == (1, 0, 0)  # unused member dropped
    save_checkpoint(tmp_path / "e.pt", ens)
    loaded = load_checkpoint(tmp_path / "e.pt", expect_name="finding_ensemble", expect_labels=labels)
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        logits, maps = loaded.forward_with_cams(x)
        la, ma = a.forward_with_cams(x)
        lb, mb = b.forward_with_cams(x)
        assert torch.allclose(logits[:, 0], lb[:, 0], atol=1e-5) and torch.allclose(maps[:, 0], mb[:, 0], atol=1e-5)
        assert torch.allclose(logits[:, 1:], la[:, 1:], atol=1e-5) and torch.allclose(maps[:, 1:], ma[:, 1:], atol=1e-5)
        assert torch.allclose(loaded(x), logits, atol=1e-5)
    with pytest.raises(ValueError, match="member"):
        FindingEnsemble(ens.card, list(ens.members), [0, 5, 0])
    with pytest.raises(ValueError, match="differ"):
        make_ensemble([a, create_model("resnet_lite", input_size=64, labels=labels)], [0, 1, 1])

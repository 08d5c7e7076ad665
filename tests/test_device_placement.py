"""Every model family runs with its tensors on a non-default device (the ``meta`` device: shapes only), so a
tensor created on the CPU inside a forward pass (the ``torch.eye(2, 3)`` bug that kept rca_regnet off CUDA) is
caught without a GPU."""

from __future__ import annotations

import pytest
import torch

from cxrkit.models import create_model, list_models


def _meta(model):
    return model.to_empty(device="meta").eval()


@pytest.mark.parametrize("name", [n for n in list_models() if n not in ("rca_regnet",)])
def test_forward_on_the_meta_device(name):
    model = _meta(create_model(name))
    card = model.card
    x = torch.empty(2, card.in_channels, card.input_size, card.input_size, device="meta")
    with torch.inference_mode():
        out = model(x)
        if card.gives("cams"):
            logits, cams = model.forward_with_cams(x)
            assert logits.device.type == cams.device.type == "meta"
    tensors = out.values() if isinstance(out, dict) else [out]
    assert all(t.device.type == "meta" for t in tensors)


def test_registration_and_rca_scoring_on_the_meta_device():
    from cxrkit.models.warp import Transform

    model = _meta(create_model("rca_regnet"))
    s = model.card.input_size
    moving = torch.empty(3, 1, s, s, device="meta")
    fixed = torch.empty(3, 1, s, s, device="meta")
    with torch.inference_mode():
        t = model(moving, fixed)
        assert isinstance(t, Transform) and t.theta.device.type == "meta" and t.disp.device.type == "meta"
        warped = t.warp(torch.empty(3, 3, 256, 256, device="meta"))
    assert warped.device.type == "meta" and warped.shape == (3, 3, 256, 256)


def test_a_cpu_tensor_inside_forward_is_caught():
    """The check itself: the old ``torch.eye(2, 3)`` without a device fails on the meta device."""
    h = torch.empty(2, 6, device="meta")
    with pytest.raises((RuntimeError, NotImplementedError)):
        torch.eye(2, 3) + h.view(-1, 2, 3)

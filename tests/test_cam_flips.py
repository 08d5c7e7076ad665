"""Classifier options for finer, lesion-pinned class maps: flip-averaged CAMs (cam_flips), stride 4, dilation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cxrkit.classification.cam import grad_cam, heatmaps, original_maps
from cxrkit.errors import CxrkitError
from cxrkit.models import create_model

LABELS = ("Effusion", "Mass", "Nodule")


def _model(**arch):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return create_model("resnet_lite", input_size=64, labels=LABELS, architecture=arch).eval()


@pytest.mark.parametrize("flips, mirrors", [("h", ((3,),)), ("hv", ((3,), (2,), (2, 3)))])
def test_flip_averaged_maps_are_mirror_equivariant(flips, mirrors):
    model = _model(cam_flips=flips)
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        logits, maps = model.forward_with_cams(x)
        assert maps.shape == (2, 3, 64, 64)  # at input resolution (averaged on the pixel grid)
        assert torch.allclose(model(x), logits)
        for dims in mirrors:
            lf, mf = model.forward_with_cams(x.flip(dims))
            assert torch.allclose(mf.flip(dims), maps, atol=1e-5)
            assert torch.allclose(lf, logits, atol=1e-5)
    # The averaged map is the mean of the single views' maps, each upsampled with cells centred on k * stride.
    from cxrkit.classification.cam import upsample

    plain = _model()
    plain.load_state_dict(model.state_dict())
    with torch.no_grad():
        views = [upsample(plain.forward_with_cams(x.flip(d) if d else x)[1], 64) for d in ((),) + mirrors]
    want = torch.stack([v.flip(d) if d else v for v, d in zip(views, ((),) + mirrors)]).mean(0)
    assert torch.allclose(maps, want, atol=1e-5)


def test_flips_only_at_evaluation_when_asked():
    model = _model(cam_flips="hv", cam_flips_train=False)
    plain = _model()
    plain.load_state_dict(model.state_dict())
    x = torch.randn(2, 1, 64, 64)
    model.train(), plain.train()
    assert not model.flip_averaging
    with torch.no_grad():
        assert torch.allclose(model(x), plain(x))
    model.eval()
    assert model.flip_averaging
    with pytest.raises(CxrkitError, match="cam_flips"):
        grad_cam(model, x)
    with pytest.raises(ValueError, match="cam_flips 'x'"):
        _model(cam_flips="x")


def test_stride_and_dilation_options():
    x = torch.randn(1, 1, 64, 64)
    with torch.no_grad():
        assert _model().forward_with_cams(x)[1].shape[-1] == 8  # stride 8
        assert _model(layer3_stride=1).forward_with_cams(x)[1].shape[-1] == 16  # stride 4
        dilated = _model(layer3_stride=1, dilate=True)
        assert dilated.forward_with_cams(x)[1].shape[-1] == 16
    rates = {n: m.dilation[0] for n, m in dilated.backbone.named_modules()
             if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)}
    # layer3 (index 5) lost its stride: its first conv keeps rate 1, the rest 2; layer4 (6): 2 then 4.
    assert rates["5.0.conv1"] == 1 and rates["5.0.conv2"] == 2 and rates["5.1.conv1"] == 2
    assert rates["6.0.conv1"] == 2 and rates["6.0.conv2"] == 4 and rates["6.1.conv2"] == 4
    assert rates["4.1.conv2"] == 1  # layer2 untouched
    # The default layout is unchanged; the shipped weights are the mirror-averaged (hv) model.
    plain = create_model("resnet_lite", input_size=64)
    assert "cam_flips" not in plain.card.arch_kwargs and not plain.flip_averaging
    shipped = create_model("resnet_lite_lesions", pretrained=True)
    assert shipped.card.arch_kwargs["cam_flips"] == "hv" and shipped.flip_averaging


def test_original_maps_are_at_each_image_resolution():
    model = _model(cam_flips="h")
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (90, 70), dtype=np.uint8), rng.integers(0, 255, (64, 64), dtype=np.uint8)]
    probs, maps = original_maps(model, images)
    assert probs.shape == (2, 3) and [m.shape for m in maps] == [(3, 90, 70), (3, 64, 64)]
    assert all((m >= 0).all() for m in maps)
    _, exact = original_maps(model, images[1:], bf16=False)
    x, _ = model.preprocess(images[1:])
    _, cams = heatmaps(model, x)
    assert np.allclose(exact[0], cams[0].numpy(), atol=1e-5)  # model-input size: the maps themselves


class _Displaced:
    """A stand-in flip-averaging classifier whose every view responds at ``d`` (mirrored per view) from a
    bright square that each image carries at its own place."""

    cam_flips = "hv"

    def __init__(self, d, size=64):
        from cxrkit.models.cards import ModelCard

        self.d, self.size = d, size
        self.card = ModelCard(name="stub", task="classification", labels=LABELS, input_size=size)

    def preprocess(self, images):
        return torch.from_numpy(np.stack(images)[:, None].astype(np.float32)), None

    def view_maps(self, x):
        from cxrkit.models.families.classifiers import CAM_FLIPS, view_sign

        yy, xx = torch.meshgrid(torch.arange(self.size), torch.arange(self.size), indexing="ij")
        img = x[0, 0]
        cy, cx = [float(v.float().mean()) for v in torch.nonzero(img > 0.5, as_tuple=True)]
        views = []
        for dims in CAM_FLIPS["hv"]:
            sx, sy = view_sign(dims)
            px, py = cx + sx * self.d[0], cy + sy * self.d[1]
            blob = torch.exp(-((xx - px) ** 2 + (yy - py) ** 2) / 8.0)
            views.append(torch.stack([blob, blob * 0.5, -blob])[None])  # label 3 never fires: p < 0.5
        return torch.stack(views)

    def forward_with_cams(self, x):
        return torch.tensor([[3.0, 3.0, -3.0]]), None


def test_estimate_view_shift_recovers_the_displacement_without_boxes():
    from cxrkit.classification.cam import estimate_view_shift

    rng = np.random.default_rng(1)
    images = []
    for _ in range(5):
        img = np.zeros((64, 64), np.float32)
        y, x = rng.integers(15, 45, 2)
        img[y - 2 : y + 3, x - 2 : x + 3] = 1.0
        images.append(img)
    found = estimate_view_shift(_Displaced((6, -4)), images)
    shift = found["shift"]
    assert shift[0] == pytest.approx((6, -4), abs=0.51) and shift[1] == pytest.approx((6, -4), abs=0.51)
    assert shift[2] == (0.0, 0.0) and found["images"] == (5, 5, 0)  # no image has p >= 0.5 for the third label
    without, with_shift = found["mean_peak"][0]
    assert with_shift > without  # aligned views coincide: a higher peak of the averaged map
    # A response that is not one rigid displacement: the unflipped view alone peaks 12 px right of the lesion,
    # the mirrored ones on it. The median estimate (3, 0) would pull the three agreeing views apart: not applied.
    odd = _Displaced((0, 0))
    agreeing = odd.view_maps

    def one_view_off(x):
        views = agreeing(x)
        views[0] = torch.roll(views[0], shifts=12, dims=-1)
        return views

    odd.view_maps = one_view_off
    found = estimate_view_shift(odd, images)
    assert found["estimate"][0] == pytest.approx((3, 0), abs=0.51)
    assert found["shift"][0] == (0.0, 0.0) and found["mean_peak"][0][1] < found["mean_peak"][0][0]
    with pytest.raises(CxrkitError, match="cam_flips"):
        estimate_view_shift(_model(), images)


def test_cam_view_shift_moves_each_mirrored_view_back_onto_the_lesion():
    from cxrkit.models.families.classifiers import (
        CAM_FLIPS,
        align_mirrored_views,
        view_sign,
    )

    size, c, d = 32, (14, 17), (3, -2)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    views = []
    for dims in CAM_FLIPS["hv"]:
        sx, sy = view_sign(dims)
        blob = torch.exp(-((xx - c[0] - sx * d[0]) ** 2 + (yy - c[1] - sy * d[1]) ** 2) / 4.0)
        views.append(torch.stack([blob, blob])[None])
    views = torch.stack(views)  # (V, N=1, K=2, S, S)
    aligned = align_mirrored_views(views, CAM_FLIPS["hv"], (d, (0.0, 0.0)))
    for v in aligned[:, 0, 0]:
        assert np.unravel_index(int(v.argmax()), v.shape) == (c[1], c[0])  # every view on the lesion
    assert torch.equal(aligned[:, :, 1], views[:, :, 1])  # a zero shift leaves the label alone
    # In the model: the averaged map of a classifier with cam_view_shift is the mean of its aligned views.
    model = _model(cam_flips="hv", cam_view_shift=((2.0, 1.0), (0.0, 0.0), (-3.0, 0.0)))
    x = torch.randn(1, 1, 64, 64)
    with torch.no_grad():
        _, maps = model.forward_with_cams(x)
        want = align_mirrored_views(model.view_maps(x), CAM_FLIPS["hv"], model.cam_view_shift).mean(0)
    assert torch.allclose(maps, want, atol=1e-6)
    with pytest.raises(ValueError, match="3 labels"):
        _model(cam_flips="hv", cam_view_shift=((1.0, 1.0),))

"""HybridGNet-style model: graph operators and forward shapes (training comes later)."""

from __future__ import annotations

import pytest
import torch

from cxrkit.models import create_model, list_models
from cxrkit.models.families.hybridgnet import (
    RINGS,
    ChebConv,
    ring_adjacency,
    scaled_laplacian,
    unpool_matrix,
)


def test_ring_graph_is_three_closed_rings():
    a = ring_adjacency(RINGS)
    assert a.shape == (120, 120) and torch.equal(a, a.T)
    assert (a.sum(1) == 2).all()  # every node has exactly two neighbours
    assert a[0, 43] == 1 and a[43, 44] == 0 and a[44, 93] == 1 and a[94, 119] == 1
    lap = scaled_laplacian(a)
    eig = torch.linalg.eigvalsh(lap)
    assert eig.min() >= -1 - 1e-5 and eig.max() <= 1 + 1e-5  # spectrum scaled into [-1, 1]


def test_unpool_interpolates_along_each_ring():
    m = unpool_matrix(RINGS)
    assert m.shape == (120, 60) and torch.allclose(m.sum(1), torch.ones(120))
    # A coarse ring of points on a circle unpools to midpoints between neighbours.
    coarse = torch.arange(60, dtype=torch.float32)[:, None]
    fine = m @ coarse
    assert fine[0, 0] == 0 and fine[1, 0] == 0.5 and fine[2, 0] == 1
    assert fine[43, 0] == (21 + 0) / 2  # last odd node of the right lung closes the ring to its first node


def test_chebconv_order_one_is_a_linear_layer():
    lap = scaled_laplacian(ring_adjacency((5,)))
    conv = ChebConv(3, 4, lap, k=1)
    x = torch.randn(2, 5, 3)
    assert torch.allclose(conv(x), x @ conv.weight[0] + conv.bias)


def test_hybridgnet_forward_shapes_and_registry():
    assert "hybridgnet" in list_models("segmentation")
    model = create_model("hybridgnet", input_size=128).eval()
    out = model(torch.randn(2, 1, 128, 128))
    assert out["landmarks"].shape == (2, 120, 2) and out["coarse"].shape == (2, 60, 2)
    assert out["landmarks"].min() >= 0 and out["landmarks"].max() <= 1
    assert out["mu"].shape == out["logvar"].shape == (2, 64)
    loss = out["landmarks"].mean()
    loss.backward()
    assert model.encoder.stages[0][0].weight.grad is not None  # gradients reach the encoder through IGSC


def test_shipped_weights_verified():
    from cxrkit.models import default_card, shipped_weights
    from cxrkit.models.checkpoint import read_checkpoint

    path = shipped_weights("hybridgnet")
    assert path is not None and path.stat().st_size < 10_000_000
    assert read_checkpoint(path)["card"].weights_sha256 == default_card("hybridgnet").weights_sha256
    model = create_model("hybridgnet", pretrained=True)
    assert model.card.input_size == 256


@pytest.mark.realdata
def test_shipped_model_segments_jsrt_test_images():
    import numpy as np
    from conftest import shared_path

    from cxrkit.data.jsrt import read_jsrt
    from cxrkit.io.images import load_gray8
    from cxrkit.io.landmarks import organ_masks
    from cxrkit.metrics.segmentation import dice, plausibility
    from cxrkit.segmentation.infer import predict_landmarks

    cases = [c for c in read_jsrt(shared_path("segmentation", "jsrt"), shared_path("landmarks", "landmarks"), split="test")
             if c.landmark_files is not None][:6]
    model = create_model("hybridgnet", pretrained=True)
    scores = {"right_lung": [], "left_lung": [], "heart": []}
    for c in cases:
        pts = predict_landmarks(model, [load_gray8(c.image)])[0]
        pred, truth = organ_masks(pts, 1024, 1024), c.load_masks()
        for s in scores:
            scores[s].append(dice(pred[s], truth[s]))
            assert plausibility(pred[s])["plausible"]
    assert np.mean(scores["right_lung"]) > 0.94 and np.mean(scores["left_lung"]) > 0.94
    assert np.mean(scores["heart"]) > 0.88


@pytest.mark.realdata
def test_ctr_from_predicted_masks_matches_scr_on_jsrt_test():
    import numpy as np
    from conftest import shared_path

    from cxrkit.anatomy.measure import measure_masks
    from cxrkit.data.jsrt import read_jsrt
    from cxrkit.io.images import load_gray8
    from cxrkit.io.landmarks import organ_masks
    from cxrkit.segmentation.infer import predict_landmarks

    model = create_model("hybridgnet", pretrained=True)
    cases = [c for c in read_jsrt(shared_path("segmentation", "jsrt"), shared_path("landmarks", "landmarks"), split="test")
             if c.landmark_files is not None]
    errors = []
    for c in cases:
        t = c.load_masks()
        p = organ_masks(predict_landmarks(model, [load_gray8(c.image)])[0], 1024, 1024)
        errors.append(abs(measure_masks(t["right_lung"], t["left_lung"], t["heart"]).ctr
                          - measure_masks(p["right_lung"], p["left_lung"], p["heart"]).ctr))
    assert len(errors) == 51 and np.mean(errors) <= 0.02  # measured: 0.0116 (cxrkit segmentation evaluate: ctr_mae)

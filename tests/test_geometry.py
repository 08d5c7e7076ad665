import numpy as np
import pytest

from cxrkit.errors import CxrkitError
from cxrkit.io.geometry import SquareResize, scale_boxes


@pytest.mark.parametrize("h,w", [(2749, 2682), (2048, 2500), (1024, 1024), (101, 300), (301, 100)])
def test_points_and_boxes_round_trip(h, w):
    t = SquareResize(h, w, 1024)
    rng = np.random.default_rng(0)
    pts = rng.uniform(0, [w, h], size=(50, 2))
    assert np.allclose(t.points_to_original(t.points_to_square(pts)), pts)
    boxes = np.c_[pts, rng.uniform(1, 50, size=(50, 2))]
    assert np.allclose(t.boxes_to_original(t.boxes_to_square(boxes)), boxes)


def test_matches_hybridgnet_remove_preprocess():
    # HybridGNet: pad (w - h) rows, pad//2 on top; output (normalised) * side - pad//2
    h, w = 2048, 2500
    t = SquareResize(h, w, 1024)
    norm = np.array([[0.5, 0.5], [0.1, 0.9]])
    expected = norm * 2500 - np.array([0, (2500 - 2048) // 2])
    assert np.allclose(t.points_to_original(norm * 1024), expected)


def test_image_and_mask_to_square_and_back():
    h, w = 300, 200
    t = SquareResize(h, w, 150)
    img = np.zeros((h, w), np.uint8)
    img[100:200, 50:150] = 255
    sq = t.image_to_square(img)
    assert sq.shape == (150, 150)
    # the object's centre moves by the left padding then the scale
    ys, xs = np.nonzero(sq > 127)
    assert np.isclose(xs.mean(), (100 + 50 - 0.5) * 0.5, atol=1) and np.isclose(ys.mean(), 149.5 * 0.5, atol=1)
    back = t.mask_to_original(sq > 127)
    assert back.shape == (h, w)
    inter = (back & (img > 0)).sum() / (img > 0).sum()
    assert inter > 0.97
    with pytest.raises(CxrkitError, match="does not match"):
        t.image_to_square(np.zeros((10, 10)))
    with pytest.raises(CxrkitError, match="positive integer"):
        SquareResize(0, 10)


def test_scale_boxes():
    b = scale_boxes([[100, 200, 50, 60]], (1024, 1024), (224, 224))
    assert np.allclose(b, [[100 * 224 / 1024, 200 * 224 / 1024, 50 * 224 / 1024, 60 * 224 / 1024]])

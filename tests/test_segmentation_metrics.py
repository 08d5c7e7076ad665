"""Dice, HD95, contour error and plausibility on masks with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from cxrkit.metrics.segmentation import contour_error, dice, hausdorff95, plausibility


def _square(x0, y0, s, shape=(100, 100)):
    m = np.zeros(shape, bool)
    m[y0 : y0 + s, x0 : x0 + s] = True
    return m


def test_dice_by_hand():
    a, b = _square(10, 10, 20), _square(20, 10, 20)
    assert dice(a, b) == pytest.approx(2 * 200 / 800)
    assert dice(a, a) == 1.0 and dice(np.zeros((5, 5)), np.zeros((5, 5))) == 1.0
    with pytest.raises(ValueError, match="shapes differ"):
        dice(a, a[:50])


def test_hd95_of_shifted_square_is_the_shift():
    a, b = _square(10, 10, 40), _square(15, 10, 40)
    assert hausdorff95(a, b) == pytest.approx(5.0, abs=0.01)
    assert hausdorff95(a, a) == 0.0
    assert hausdorff95(a, np.zeros_like(a)) == np.inf


def test_contour_error_on_square():
    truth = np.array([[0, 0], [10, 0], [10, 10], [0, 10]], float)
    assert contour_error(truth, truth) == 0.0
    assert contour_error(np.array([[5, 2], [12, 5]]), truth) == pytest.approx((2 + 2) / 2)


def test_plausibility_counts_components_and_holes():
    m = _square(10, 10, 30)
    assert plausibility(m) == {"components": 1, "holes": 0, "plausible": True}
    holed = m.copy()
    holed[20:25, 20:25] = False
    assert plausibility(holed)["holes"] == 1 and not plausibility(holed)["plausible"]
    two = m | _square(60, 60, 10)
    assert plausibility(two)["components"] == 2
    edge = _square(0, 0, 20)  # touching the border is not a hole
    assert plausibility(edge)["plausible"]

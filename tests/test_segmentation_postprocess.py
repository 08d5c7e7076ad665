"""The standard clean-up of pixel masks (largest component per structure, holes filled)."""

from __future__ import annotations

import numpy as np
import pytest

from cxrkit.errors import CxrkitError
from cxrkit.metrics.segmentation import plausibility
from cxrkit.segmentation.postprocess import (
    clean_mask,
    clean_masks,
    fill_holes,
    largest_component,
)


def _square(m, y, x, s):
    m[y : y + s, x : x + s] = True
    return m


def test_largest_component_keeps_only_the_biggest_blob():
    m = np.zeros((40, 40), bool)
    _square(m, 2, 2, 10)  # 100 px
    _square(m, 20, 20, 12)  # 144 px: kept
    _square(m, 35, 2, 3)  # 9 px
    out = largest_component(m)
    assert out.sum() == 144 and out[20:32, 20:32].all() and not out[2:12, 2:12].any()
    assert m.sum() == 100 + 144 + 9  # input untouched


def test_largest_component_uses_8_connectivity_and_breaks_ties_by_first_pixel():
    diag = np.zeros((6, 6), bool)
    diag[[1, 2, 3], [1, 2, 3]] = True  # one component by 8-connectivity
    assert largest_component(diag).sum() == 3
    tie = np.zeros((20, 20), bool)
    _square(tie, 12, 1, 4)
    _square(tie, 1, 12, 4)  # same size; its first pixel (row 1) comes first in row-major order
    out = largest_component(tie)
    assert out[1:5, 12:16].all() and not out[12:16, 1:5].any()


def test_fill_holes_fills_enclosed_background_only():
    m = np.zeros((20, 20), bool)
    _square(m, 2, 2, 10)
    m[5:8, 5:8] = False  # a hole
    m[2:12, 9] = False  # a slit open to the outside: not a hole
    m[2, 2:12] = True  # ...except the top row closes it; the slit then opens at the bottom edge (row 11)
    out = fill_holes(m)
    assert out[5:8, 5:8].all()
    assert not out[3:12, 9].any()  # still connected to the image border through the open bottom
    ring = np.zeros((7, 7), bool)
    ring[1:6, 1:6] = True
    ring[3, 3] = False
    ring[2, 2] = False  # diagonal to the centre: 4-connectivity keeps them two holes, both filled
    assert fill_holes(ring)[1:6, 1:6].all()
    edge = np.zeros((6, 6), bool)
    edge[0:3, :] = True
    edge[0, 2] = False  # background on the border is outside, not a hole
    assert not fill_holes(edge)[0, 2]


def test_clean_mask_makes_every_nonempty_mask_plausible():
    rng = np.random.default_rng(0)
    for _ in range(20):
        m = rng.random((30, 30)) < 0.45
        out = clean_mask(m)
        assert plausibility(out)["plausible"]
        assert out.dtype == bool and out.shape == m.shape
    empty = np.zeros((8, 8), bool)
    assert not clean_mask(empty).any()
    assert not plausibility(clean_mask(empty))["plausible"]  # nothing to keep: stays implausible
    good = _square(np.zeros((10, 10), bool), 2, 2, 5)
    assert np.array_equal(clean_mask(good), good)  # a plausible mask is left as it is


def test_clean_masks_per_structure_and_bad_shape():
    m = np.zeros((10, 10), bool)
    _square(m, 0, 0, 3)
    _square(m, 6, 6, 4)
    out = clean_masks({"heart": m, "left_lung": np.zeros((10, 10), bool)})
    assert set(out) == {"heart", "left_lung"} and out["heart"].sum() == 16 and not out["left_lung"].any()
    with pytest.raises(CxrkitError, match="2-D"):
        clean_mask(np.zeros((2, 3, 3), bool))

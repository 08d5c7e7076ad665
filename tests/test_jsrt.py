"""JSRT reader on the real data; the measurement code on the SCR expert masks vs the landmark fills."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import shared_path

from cxrkit.anatomy.measure import measure_masks
from cxrkit.data.jsrt import read_jsrt
from cxrkit.errors import CxrkitError
from cxrkit.io.landmarks import organ_masks
from cxrkit.metrics.segmentation import dice, plausibility


@pytest.mark.realdata
def test_jsrt_split_counts_and_landmarks():
    root = shared_path("segmentation", "jsrt")
    lm = shared_path("landmarks", "landmarks")
    cases = read_jsrt(root, lm)
    assert len(cases) == 247
    assert {s: sum(c.split == s for c in cases) for s in ("train", "val", "test")} == {"train": 174, "val": 22, "test": 51}
    assert sum(c.landmark_files is None for c in cases) == 1
    with pytest.raises(CxrkitError, match="split 'x' is not one of"):
        read_jsrt(root, split="x")


@pytest.mark.realdata
def test_landmark_fills_match_scr_masks_and_ctr():
    cases = [c for c in read_jsrt(shared_path("segmentation", "jsrt"), shared_path("landmarks", "landmarks"), split="test")
             if c.landmark_files is not None][:8]
    ctr_err = []
    for c in cases:
        truth = c.load_masks()
        filled = organ_masks(c.landmarks(), 1024, 1024)
        for s in ("right_lung", "left_lung", "heart"):
            assert dice(filled[s], truth[s]) > 0.97
            assert plausibility(filled[s])["plausible"]
        a = measure_masks(truth["right_lung"], truth["left_lung"], truth["heart"]).ctr
        b = measure_masks(filled["right_lung"], filled["left_lung"], filled["heart"]).ctr
        assert 0.3 < a < 0.7
        ctr_err.append(abs(a - b))
    assert np.mean(ctr_err) < 0.01

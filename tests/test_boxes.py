"""Heatmap -> boxes: the ChestX-ray8 paper protocol and cxrkit's adaptive per-peak method."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from cxrkit.classification.boxes import (
    COMPONENT_RULES,
    METHODS,
    Box,
    adaptive_boxes,
    heatmap_to_boxes,
    paper_boxes,
    threshold_boxes,
    top_threshold_boxes,
)
from cxrkit.errors import CxrkitError


def _blobs(h=200, w=300):
    yy, xx = np.mgrid[:h, :w]
    strong = np.exp(-((xx - 60) ** 2 + (yy - 50) ** 2) / (2 * 12**2))
    weak = 0.5 * np.exp(-((xx - 220) ** 2 + (yy - 150) ** 2) / (2 * 12**2))
    return (strong + weak).astype(np.float32)


def test_box_is_frozen():
    b = Box(1, 2, 3, 4, 0.5)
    assert b.as_tuple() == (1, 2, 3, 4)
    with pytest.raises(dataclasses.FrozenInstanceError):
        b.x = 5


def test_paper_boxes_exact_rectangles_and_thresholds():
    heat = np.zeros((100, 120), np.float32)
    heat[10:20, 30:50] = 1.0  # strong: above both thresholds
    heat[60:70, 5:12] = 0.4  # weak: 0.4 * 255 = 102 -> only at T=60
    boxes = paper_boxes(heat)
    assert [b.as_tuple() for b in boxes] == [(30, 10, 20, 10), (30, 10, 20, 10), (5, 60, 7, 10)]
    assert [b.score for b in boxes] == pytest.approx([1.0, 1.0, 0.4])
    assert [b.as_tuple() for b in paper_boxes(heat, thresholds=(180,))] == [(30, 10, 20, 10)]
    # The [0, 255] normalization is min-max: an offset and a scale change nothing.
    moved = paper_boxes(heat * 7 + 3)
    assert [b.as_tuple() for b in moved] == [b.as_tuple() for b in boxes]
    assert [b.score for b in moved] == pytest.approx([b.score for b in boxes])


def test_paper_boxes_on_smooth_blobs():
    boxes = paper_boxes(_blobs())
    # 180/255 ~ 0.71 of the range: only the strong blob; 60/255 ~ 0.24: both blobs.
    assert len(boxes) == 3
    best = boxes[0]
    assert best.x < 60 < best.x + best.w and best.y < 50 < best.y + best.h and best.w < 30
    assert boxes[1].w > best.w  # the same blob at T=60 is looser, ranked after the tight one
    weak = boxes[2]
    assert weak.x < 220 < weak.x + weak.w and 0.4 < weak.score < 0.6
    assert all(0 <= b.score <= 1 for b in boxes)


def test_constant_or_bad_heatmaps():
    assert paper_boxes(np.zeros((10, 10))) == [] and adaptive_boxes(np.ones((10, 10))) == []
    with pytest.raises(CxrkitError, match="2-D"):
        paper_boxes(np.zeros((2, 3, 4)))
    with pytest.raises(CxrkitError, match="NaN"):
        heatmap_to_boxes(np.full((4, 4), np.nan), method="adaptive")
    with pytest.raises(CxrkitError, match="outside"):
        paper_boxes(_blobs(), thresholds=(300,))


def test_adaptive_boxes_find_the_weak_second_lesion_tightly():
    boxes = adaptive_boxes(_blobs())
    assert len(boxes) == 2
    strong, weak = boxes
    assert strong.score > weak.score
    assert weak.x < 220 < weak.x + weak.w and weak.y < 150 < weak.y + weak.h
    assert weak.w < 40  # its own half-max region, not the global low threshold's
    assert len(adaptive_boxes(_blobs(), max_boxes=1)) == 1
    assert len(adaptive_boxes(_blobs(), min_peak=0.7)) == 1  # the weak peak is ~0.5 of the range
    assert adaptive_boxes(_blobs(), min_area=0.05) == []  # both blobs' boxes are < 5% of the image


def test_adaptive_boxes_at_image_resolution_are_in_original_pixels():
    heat = np.zeros((1024, 1024), np.float32)
    yy, xx = np.mgrid[:1024, :1024]
    heat += np.exp(-((xx - 700) ** 2 + (yy - 300) ** 2) / (2 * 40**2))
    (b,) = adaptive_boxes(heat)
    assert abs(b.x + b.w / 2 - 700) < 8 and abs(b.y + b.h / 2 - 300) < 8
    assert 80 < b.w < 120  # half-max width of a Gaussian: 2.355 * 40 = 94


def test_dispatcher_errors_list_the_choices():
    assert heatmap_to_boxes(_blobs()) == paper_boxes(_blobs())
    assert heatmap_to_boxes(_blobs(), "adaptive", rel_threshold=0.7) == adaptive_boxes(_blobs(), rel_threshold=0.7)
    with pytest.raises(CxrkitError, match=r"unknown box method 'x'; choose one of \('paper', 'adaptive', 'threshold'\)"):
        heatmap_to_boxes(_blobs(), method="x")
    with pytest.raises(CxrkitError, match="unknown option.*'bogus'.*rel_threshold"):
        heatmap_to_boxes(_blobs(), method="adaptive", bogus=1)
    with pytest.raises(CxrkitError, match="rel_threshold must be in"):
        adaptive_boxes(_blobs(), rel_threshold=0)
    assert METHODS == ("paper", "adaptive", "threshold")
    assert heatmap_to_boxes(_blobs(), "threshold", threshold=0.3, component="union") == threshold_boxes(_blobs(), 0.3, "union")


def _two_regions():
    heat = np.zeros((100, 120), np.float32)
    heat[10:20, 30:50] = 1.0  # strong and small
    heat[60:90, 5:40] = 0.4  # weak and large: 0.4 * 255 = 102
    return heat


def test_threshold_boxes_region_rules():
    heat = _two_regions()
    each = threshold_boxes(heat, 60 / 255)
    assert [b.as_tuple() for b in each] == [(30, 10, 20, 10), (5, 60, 35, 30)]  # by peak
    # At 60/255 the rule is the paper's at its T=60: same boxes, same order, same scores.
    assert each == paper_boxes(heat, thresholds=(60,))
    largest = threshold_boxes(heat, 60 / 255, "largest")
    assert [b.as_tuple() for b in largest] == [(5, 60, 35, 30), (30, 10, 20, 10)]  # by area
    assert largest[0].score == pytest.approx(35 * 30 / (100 * 120))
    (union,) = threshold_boxes(heat, 0.3, "union")
    assert union.as_tuple() == (5, 10, 45, 80)  # around both regions
    assert [b.as_tuple() for b in threshold_boxes(heat, 0.5)] == [(30, 10, 20, 10)]  # the weak one is below
    assert threshold_boxes(np.ones((5, 5)), 0.5) == []
    for bad in (0, 1.5):
        with pytest.raises(CxrkitError, match="threshold must be in"):
            threshold_boxes(heat, bad)
    with pytest.raises(CxrkitError, match="component 'x'"):
        threshold_boxes(heat, 0.5, "x")


def test_top_threshold_boxes_equal_each_rules_first_box():
    rng = np.random.default_rng(0)
    import cv2

    thresholds = (0.1, 60 / 255, 0.5, 180 / 255, 0.9)
    for _ in range(10):
        heat = cv2.GaussianBlur(rng.random((90, 130)).astype(np.float32), (0, 0), rng.uniform(3, 12))
        top = top_threshold_boxes(heat, thresholds)
        assert set(top) == {(t, c) for t in thresholds for c in COMPONENT_RULES}
        for (t, c), box in top.items():
            assert box == threshold_boxes(heat, t, c)[0]
        # The paper's top box is the T=180 region that holds the peak.
        assert paper_boxes(heat)[0].as_tuple() == top[(180 / 255, "each")].as_tuple()
    assert top_threshold_boxes(np.zeros((4, 4)), (0.5,)) == {(0.5, c): None for c in COMPONENT_RULES}
    with pytest.raises(CxrkitError, match="component 'x'"):
        top_threshold_boxes(heat, (0.5,), ("x",))

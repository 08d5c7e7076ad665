"""Heatmap -> boxes and the IoU / IoBB localization scores."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cxrkit.classification.boxes import adaptive_boxes, heatmap_to_boxes, paper_boxes
from cxrkit.errors import CxrkitError
from cxrkit.metrics.localization import iobb, iou, localization_table


def test_iou_and_iobb_by_hand():
    gt, pred = (0, 0, 10, 10), (5, 5, 10, 10)
    assert iou(gt, pred) == pytest.approx(25 / 175)
    assert iobb(gt, pred) == pytest.approx(25 / 100)
    assert iobb((0, 0, 10, 10), (2, 2, 4, 4)) == 1.0  # a box inside the expert box
    assert iou((0, 0, 1, 1), (5, 5, 1, 1)) == 0.0


def _blobs():
    yy, xx = np.mgrid[:200, :300]
    strong = np.exp(-((xx - 60) ** 2 + (yy - 50) ** 2) / (2 * 12**2))
    weak = 0.5 * np.exp(-((xx - 220) ** 2 + (yy - 150) ** 2) / (2 * 12**2))
    return (strong + weak).astype(np.float32)


def test_paper_boxes_thresholds_and_order():
    boxes = paper_boxes(_blobs())
    # threshold 180/255 ~ 0.71 of the peak: only the strong blob; 60/255: both blobs.
    assert len(boxes) == 3
    best = boxes[0]
    assert best.x < 60 < best.x + best.w and best.y < 50 < best.y + best.h and best.w < 30
    assert paper_boxes(np.zeros((10, 10))) == []


def test_adaptive_boxes_find_the_weak_second_lesion_tightly():
    boxes = adaptive_boxes(_blobs())
    assert len(boxes) == 2
    weak = boxes[1]
    assert weak.x < 220 < weak.x + weak.w and weak.y < 150 < weak.y + weak.h
    assert weak.w < 40  # its own half-max region, not the global low threshold's
    with pytest.raises(CxrkitError, match="unknown box method 'x'; choose one of"):
        heatmap_to_boxes(_blobs(), method="x")


def test_localization_table_accuracy_and_fp():
    gt = pd.DataFrame({"Image Index": ["a", "b"], "Finding": ["Mass", "Mass"], "x": [0, 0], "y": [0, 0], "w": [10, 10], "h": [10, 10]})
    pred = pd.DataFrame({"Image Index": ["a", "a", "b"], "Finding": ["Mass"] * 3, "x": [2, 50, 30],
                         "y": [2, 50, 30], "w": [4, 5, 5], "h": [4, 5, 5], "score": [1, 1, 1]})
    t = localization_table(gt, pred)
    assert t.loc["Mass", "acc_iobb@0.5"] == 0.5  # a: hit; b: miss
    assert t.loc["Mass", "acc_iou@0.1"] == 0.5  # 16/100 on a
    assert t.loc["Mass", "acc_iou@0.2"] == 0.0
    assert t.loc["Mass", "avg_fp@iobb0.5"] == 1.0  # a: 1 FP, b: 1 FP
    assert t.loc["all", "n_boxes"] == 2

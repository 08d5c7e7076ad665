"""IoU / IoBB by hand and the ChestX-ray8 localization table (accuracy, average false positives)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cxrkit.errors import CxrkitError
from cxrkit.metrics.localization import (
    IOBB_THRESHOLDS,
    IOU_THRESHOLDS,
    PAPER_LOCALIZATION_CVPR2017,
    iobb,
    iobb_matrix,
    iou,
    iou_matrix,
    localization_table,
    paper_comparison,
    write_localization_report,
)


def test_iou_and_iobb_by_hand():
    gt, pred = (0, 0, 10, 10), (5, 5, 10, 10)
    assert iou(gt, pred) == pytest.approx(25 / 175)
    assert iobb(gt, pred) == pytest.approx(25 / 100)
    assert iobb((0, 0, 10, 10), (2, 2, 4, 4)) == 1.0  # a box inside the expert box
    assert iou((0, 0, 10, 10), (2, 2, 4, 4)) == pytest.approx(16 / 100)
    assert iobb((2, 2, 4, 4), (0, 0, 10, 10)) == pytest.approx(16 / 100)  # over the *predicted* area
    assert iou((0, 0, 1, 1), (5, 5, 1, 1)) == 0.0
    assert iou((0, 0, 10, 10), (10, 0, 10, 10)) == 0.0  # touching edges
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert iobb((0, 0, 10, 10), (3, 3, 0, 0)) == 0.0  # empty predicted box


def test_pairwise_matrices_match_scalar_versions():
    rng = np.random.default_rng(0)
    a = np.c_[rng.uniform(0, 50, (6, 2)), rng.uniform(1, 30, (6, 2))]
    b = np.c_[rng.uniform(0, 50, (4, 2)), rng.uniform(1, 30, (4, 2))]
    mu, mb = iou_matrix(a, b), iobb_matrix(a, b)
    assert mu.shape == mb.shape == (6, 4)
    for i in range(6):
        for j in range(4):
            assert mu[i, j] == pytest.approx(iou(a[i], b[j])) and mb[i, j] == pytest.approx(iobb(a[i], b[j]))
    assert np.allclose(mu, iou_matrix(b, a).T)
    assert iou_matrix(a, np.zeros((0, 4))).shape == (6, 0)


def _gt():
    return pd.DataFrame({"Image Index": ["a", "b", "c"], "Finding": ["Mass", "Mass", "Nodule"],
                         "x": [0, 0, 100], "y": [0, 0, 100], "w": [10, 10, 20], "h": [10, 10, 20]})


def _pred():
    return pd.DataFrame({
        "Image Index": ["a", "a", "b", "c", "c", "z"],
        "Finding": ["Mass", "Mass", "Mass", "Nodule", "Mass", "Mass"],
        "x": [2, 50, 30, 95, 100, 0], "y": [2, 50, 30, 100, 100, 0], "w": [4, 5, 5, 20, 20, 5],
        "h": [4, 5, 5, 20, 20, 5], "score": [1] * 6})


def test_localization_table_accuracy_and_false_positives():
    t = localization_table(_gt(), _pred())
    assert list(t.index) == ["Mass", "Nodule", "all"]
    # a: the small box (IoBB 1, IoU 0.16) hits; b: its box is far away.
    assert t.loc["Mass", "acc_iobb@0.9"] == 0.5 and t.loc["Mass", "acc_iobb@0.5"] == 0.5
    assert t.loc["Mass", "acc_iou@0.1"] == 0.5 and t.loc["Mass", "acc_iou@0.2"] == 0.0
    # FP per image with a Mass box: a has 1 far box, b has 1 -> 2 / 2 images at any threshold.
    assert t.loc["Mass", "afp_iobb@0.5"] == 1.0 and t.loc["Mass", "avg_fp@iobb0.5"] == 1.0
    # a's hit at IoU 0.16 is itself a false positive at T(IoU) = 0.2: 3 FP / 2 images.
    assert t.loc["Mass", "afp_iou@0.1"] == 1.0 and t.loc["Mass", "afp_iou@0.2"] == 1.5
    # Nodule on c: shifted by 5 px -> IoBB 300/400 = 0.75, IoU 300/500 = 0.6; correct needs strictly more
    # than T. The 'Mass' box on c is not a Nodule box.
    assert iobb((100, 100, 20, 20), (95, 100, 20, 20)) == 0.75 and iou((100, 100, 20, 20), (95, 100, 20, 20)) == 0.6
    assert t.loc["Nodule", "acc_iobb@0.5"] == 1.0 and t.loc["Nodule", "acc_iobb@0.75"] == 0.0
    assert t.loc["Nodule", "acc_iou@0.5"] == 1.0 and t.loc["Nodule", "acc_iou@0.6"] == 0.0
    assert t.loc["all", "n_boxes"] == 3 and t.loc["all", "n_images"] == 3
    assert t.loc["all", "acc_iobb@0.5"] == pytest.approx(2 / 3)
    assert t.loc["Mass", "n_pred"] == 3 and t.attrs["n_pred_ignored"] == 2  # c/Mass and z/Mass: no expert box
    expected = [f"acc_iobb@{x}" for x in IOBB_THRESHOLDS] + [f"acc_iou@{x}" for x in IOU_THRESHOLDS]
    assert all(c in t.columns for c in expected)


def test_no_prediction_means_miss_and_zero_fp():
    t = localization_table(_gt(), _pred().iloc[:0])
    assert (t[[c for c in t.columns if c.startswith("acc_")]] == 0).all().all()
    assert (t[[c for c in t.columns if c.startswith("afp_")]] == 0).all().all()


def test_bad_inputs_are_clear_errors():
    with pytest.raises(CxrkitError, match=r"predicted boxes: missing columns \['w'\]"):
        localization_table(_gt(), _pred().drop(columns="w"))
    bad = _pred()
    bad.loc[0, "h"] = -1
    with pytest.raises(CxrkitError, match="negative"):
        localization_table(_gt(), bad)
    with pytest.raises(CxrkitError, match="empty"):
        localization_table(_gt().iloc[:0], _pred())


def test_paper_table_and_report(tmp_path):
    assert PAPER_LOCALIZATION_CVPR2017.loc["Cardiomegaly", "acc_iobb@0.1"] == 0.9931
    assert PAPER_LOCALIZATION_CVPR2017.loc["Nodule", "afp_iobb@0.9"] == 0.6199
    assert PAPER_LOCALIZATION_CVPR2017.shape == (8, 10)
    t = localization_table(_gt(), _pred())
    comp = paper_comparison(t)
    assert len(comp) == 8 * 5
    row = comp[(comp.finding == "Mass") & (comp["T(IoBB)"] == 0.5)].iloc[0]
    assert row.acc_here == 0.5 and row.acc_wang2017_cvpr == 0.1411 and row.afp_wang2017_cvpr == 0.6941
    assert comp[comp.finding == "Atelectasis"].acc_here.isna().all()  # not in this ground truth
    files = write_localization_report(t, tmp_path, "loc")
    assert [f.name for f in files] == ["loc.csv", "loc.md", "loc_vs_paper.csv"]
    back = pd.read_csv(tmp_path / "loc.csv", index_col="finding")
    assert back.loc["Mass", "acc_iobb@0.5"] == 0.5
    md = (tmp_path / "loc.md").read_text()
    assert "Wang et al., CVPR 2017" in md and "| Mass |" in md

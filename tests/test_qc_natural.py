"""RCA judged on natural outputs (`cxrkit bench rca-natural`): metrics by hand, checkpoint discovery, and the
protocol end to end on 2 real JSRT images and 2 snapshots."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from cxrkit.cli.main import main
from cxrkit.errors import UsageError
from cxrkit.models import create_model, save_checkpoint
from cxrkit.qc.natural import (
    agreement,
    find_checkpoints,
    pearson,
    pearson_ci,
    summarize,
    true_dice_distribution,
)


def test_agreement_by_hand():
    true = np.array([0.95, 0.85, 0.97, 0.80])
    est = np.array([0.93, 0.88, 0.90, 0.70])
    a = agreement(true, est)
    assert a["n"] == 4 and a["failures"] == 2  # 0.85 and 0.80 are below 0.9
    assert a["mae"] == pytest.approx((0.02 + 0.03 + 0.07 + 0.10) / 4)
    # failures should get the lower estimates: failure scores 0.88, 0.70 vs good 0.93, 0.90 -> 4 of 4 pairs
    assert a["auroc_fail"] == 1.0
    assert agreement(true, np.array([0.93, 0.91, 0.90, 0.70]))["auroc_fail"] == 0.75  # 0.91 is above the 0.90
    assert a["pearson_r"] == pytest.approx(np.corrcoef(true, est)[0, 1])
    assert agreement(true, est, fail_below=0.7)["failures"] == 0
    assert math.isnan(agreement(true, est, fail_below=0.7)["auroc_fail"])  # one class only


def test_pearson_is_nan_for_a_constant_side():
    assert math.isnan(pearson([0.9, 0.9, 0.9], [0.1, 0.5, 0.7]))
    assert pearson([1, 2, 3], [2, 4, 6.5]) > 0.99


def test_pearson_ci_brackets_r_and_resamples_whole_images():
    rng = np.random.default_rng(0)
    images = np.repeat(np.arange(30), 5)
    true = rng.normal(0.9, 0.05, images.size)
    est = true + rng.normal(0, 0.02, images.size)
    r = pearson(true, est)
    lo, hi = pearson_ci(true, est, images, n_boot=500)
    assert lo < r < hi and hi - lo < 0.2
    # one image only: no resampling possible
    assert all(math.isnan(v) for v in pearson_ci(true[:5], est[:5], images[:5]))


def test_summary_groups_and_distribution():
    rows = []
    for i in range(6):
        for model, off in (("hybridgnet", 0.0), ("unet", -0.1)):
            for k in ("right_lung", "left_lung", "heart", "all"):
                t = 0.95 + off - 0.02 * i
                rows.append({"image": f"im{i}", "set": "natural", "model": model, "structure": k, "true_dice": t,
                             "learned_max": t - 0.05, "learned_calibrated": t})
    df = pd.DataFrame(rows)
    s = summarize(df, n_boot=50)
    assert set(s["group"]) == {"all", "hybridgnet", "unet"}
    hit = s[(s.group == "all") & (s.estimate == "calibrated") & (s.structure == "heart")].iloc[0]
    assert hit["mae"] == pytest.approx(0.0) and hit["pearson_r"] == pytest.approx(1.0)
    assert hit["failures"] == int((df[df.structure == "heart"]["true_dice"] < 0.9).sum())
    d = true_dice_distribution(df)
    row = d[(d.set == "natural") & (d.structure == "all")].iloc[0]
    assert row["n"] == 12 and row["max"] == pytest.approx(0.95) and row["min"] == pytest.approx(0.75)


def test_find_checkpoints_orders_snapshots_by_step(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    for step in (3000, 1500, 12000):
        (run / "checkpoints" / f"step-{step:05d}.pt").write_bytes(b"x")
    (run / "best.pt").write_bytes(b"x")
    assert [p.name for p in find_checkpoints([run])] == ["step-01500.pt", "step-03000.pt", "step-12000.pt"]
    assert find_checkpoints([run / "best.pt"]) == [run / "best.pt"]
    with pytest.raises(UsageError, match="no such file"):
        find_checkpoints([tmp_path / "missing"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="no step-"):
        find_checkpoints([tmp_path / "empty"])


@pytest.mark.realdata
def test_rca_natural_protocol_on_two_images(shared, tmp_path, capsys):
    jsrt = shared("segmentation", "jsrt")
    save_checkpoint(tmp_path / "hgn" / "checkpoints" / "step-01000.pt", create_model("hybridgnet", pretrained=True))
    save_checkpoint(tmp_path / "unet" / "checkpoints" / "step-00000.pt", create_model("unet"))  # untrained
    out = tmp_path / "nat"
    rc = main(["bench", "rca-natural", "--checkpoints", str(tmp_path / "hgn"), str(tmp_path / "unet"),
               "--jsrt", str(jsrt), "--max-images", "2", "--perturbations", "none", "rotate+15",
               "--out", str(out), "--quiet"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "2 checkpoints: hybridgnet@1000, unet@0" in printed and "true Dice distribution" in printed
    per = pd.read_csv(out / "per_output.csv")
    nat, dmg = per[per.set == "natural"], per[per.set == "damage"]
    assert len(nat) == 2 * 2 * 2 * 4  # images x perturbations x checkpoints x (3 structures + all)
    assert set(nat["candidate"]) == {"hybridgnet@1000", "unet@0"} and set(nat["perturbation"]) == {"none", "rotate+15"}
    assert nat[nat.model == "unet"]["cleaned"].all() and not nat[nat.model == "hybridgnet"]["cleaned"].any()
    assert (dmg.groupby("image")["candidate"].nunique() == 23).all() and len(dmg) == 2 * 23 * 4  # bench rca's damage
    good = nat[(nat.model == "hybridgnet") & (nat.structure != "all")]
    assert (good["true_dice"] > 0.85).all()  # the shipped model, also on the rotated images (truth rotated too)
    assert (good["learned_max"] > 0.6).all() and good["learned_calibrated"].notna().all()
    overall = nat[nat.structure == "all"].set_index(["image", "perturbation", "candidate"])
    parts = nat[nat.structure != "all"].groupby(["image", "perturbation", "candidate"])["true_dice"].mean()
    assert np.allclose(overall["true_dice"], parts.loc[overall.index])  # all = mean of the three structures
    s = pd.read_csv(out / "summary.csv")
    assert {"natural", "damage"} == set(s["set"]) and {"max", "calibrated", "mean"} <= set(s["estimate"])
    for name in ("natural_learned_max.png", "natural_learned_calibrated.png", "damage_learned_max.png",
                 "true_dice_distribution.csv"):
        assert (out / name).is_file()


def test_damage_rows_within_the_natural_range_form_their_own_group():
    nat = [0.90, 0.95, 0.93, 0.91, 0.92]
    dmg = [0.30, 0.92, 0.97, 0.94, 0.93]  # 0.92, 0.94, 0.93 lie within the natural range [0.90, 0.95]
    rows = []
    for i, (t_nat, t_dmg) in enumerate(zip(nat, dmg)):
        for set_name, t in (("natural", t_nat), ("damage", t_dmg)):
            rows.append({"image": f"im{i}", "set": set_name, "model": "hybridgnet" if set_name == "natural" else "damage",
                         "structure": "heart", "true_dice": t, "learned_max": t - 0.01 * i})
    s = summarize(pd.DataFrame(rows), n_boot=20)
    assert set(s[s.set == "damage"]["group"]) == {"all", "natural_range"}
    inside = s[(s.set == "damage") & (s.group == "natural_range")].iloc[0]
    assert inside["n"] == 3 and inside["failures"] == 0
    assert inside["pearson_r"] == pytest.approx(pearson([0.92, 0.94, 0.93], [0.91, 0.91, 0.89]))

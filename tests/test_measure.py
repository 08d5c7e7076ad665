"""Cardiothoracic ratio and areas: exact on synthetic masks, streaming over CheXmask CSVs, real labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import shared_path

from cxrkit.anatomy.measure import measure_masks
from cxrkit.cli.main import main
from cxrkit.errors import CxrkitError

SAMPLE = Path(__file__).resolve().parents[1] / "src" / "cxrkit" / "demo" / "sample" / "chexmask" / "ChestX-Ray8_sample.csv"


def test_ctr_from_rectangles():
    right, left, heart = (np.zeros((100, 200), bool) for _ in range(3))
    right[10:90, 20:90] = True  # image left = patient's right lung
    left[10:90, 110:180] = True
    heart[50:85, 80:140] = True
    m = measure_masks(right, left, heart, spacing=(0.5, 0.25))
    assert m.thorax_width_px == 160 and m.heart_width_px == 60
    assert m.ctr == pytest.approx(60 / 160)
    assert m.area_heart_px == 35 * 60 and m.area_heart_mm2 == pytest.approx(35 * 60 * 0.125)
    assert m.heart_width_mm == pytest.approx(15.0)
    empty = measure_masks(right, left, np.zeros_like(heart))
    assert np.isnan(empty.ctr) and empty.heart_width_px == 0
    with pytest.raises(CxrkitError, match="different shapes"):
        measure_masks(right, left, heart[:50])


def test_cli_measure_on_bundled_rows(tmp_path, capsys):
    assert main(["measure", "--masks-from", str(SAMPLE), "--out", str(tmp_path / "m.csv"), "--spacing", "0.5"]) == 0
    m = pd.read_csv(tmp_path / "m.csv")
    assert list(m.columns[:2]) == ["ImageID", "ctr"] and len(m) >= 1
    assert m["ctr"].between(0.3, 0.7).all() and m["area_heart_mm2"].notna().all()
    np.testing.assert_allclose(m["area_heart_mm2"], m["area_heart_px"] * 0.25, rtol=1e-5)
    assert main(["measure", "--masks-from", str(SAMPLE), "--out", str(tmp_path / "x.csv"), "--spacing", "-1"]) == 2
    assert "--spacing: expected a number > 0, got -1" in capsys.readouterr().err


def test_bad_row_is_reported_not_dropped(tmp_path):
    lines = SAMPLE.read_text().splitlines()
    header, first = lines[0], lines[1]
    cells = first.split(",")
    broken = first.replace(cells[-1], "not-a-number") if cells[-1] else first + "x"
    (tmp_path / "b.csv").write_text("\n".join([header, first, broken]) + "\n")
    assert main(["measure", "--masks-from", str(tmp_path / "b.csv"), "--out", str(tmp_path / "m.csv")]) == 1
    m = pd.read_csv(tmp_path / "m.csv")
    assert len(m) == 2 and m["error"].isna().iloc[0] and isinstance(m["error"].iloc[1], str)


@pytest.mark.realdata
def test_ctr_is_higher_with_cardiomegaly_on_real_chexmask_rows(tmp_path, capsys):
    csv_path = shared_path("chexmask", "subsets", "ChestX-Ray8.csv")
    meta = shared_path("nih", "Data_Entry_2017_v2020.csv.gz")
    assert main(["measure", "--masks-from", str(csv_path), "--out", str(tmp_path / "m.csv"), "--nih-metadata", str(meta)]) == 0
    out = capsys.readouterr().out
    assert "50 of 50 rows matched" in out
    m = pd.read_csv(tmp_path / "m.csv")
    from cxrkit.data.nih import read_metadata

    lab = read_metadata(meta).set_index("Image Index").loc[m["ImageID"], "Cardiomegaly"].to_numpy()
    assert m["ctr"][lab == 1].mean() > m["ctr"][lab == 0].mean() + 0.03

"""AUROC, ROC and bootstrap CIs against brute force; the evaluate command, on real reference predictions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import shared_path
from cxrkit.errors import CxrkitError
from cxrkit.findings import FINDINGS
from cxrkit.metrics.auroc import auroc, auroc_table, bootstrap_auroc_ci, roc_curve


def brute(y, s):
    p, n = s[y == 1], s[y == 0]
    return ((p[:, None] > n[None]).sum() + 0.5 * (p[:, None] == n[None]).sum()) / (len(p) * len(n))


@pytest.mark.parametrize("seed", range(5))
def test_auroc_matches_pairwise_with_ties(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 300).astype(float)
    s = np.round(rng.uniform(size=300), 1)  # many ties
    assert auroc(y, s) == pytest.approx(brute(y, s), abs=1e-12)


def test_auroc_edge_cases():
    assert np.isnan(auroc([1, 1], [0.2, 0.3]))
    assert auroc([0, 1, np.nan], [0.1, 0.9, np.nan]) == 1.0  # NaN labels dropped
    assert auroc([0, 1], [0.5, 0.5]) == 0.5
    with pytest.raises(ValueError, match="labels must be 1, 0 or NaN"):
        auroc([0, 2], [0.1, 0.2])


def test_roc_curve_area_equals_auroc():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 200)
    s = np.round(rng.normal(y, 1.0), 1)
    fpr, tpr, thr = roc_curve(y, s)
    assert fpr[0] == tpr[0] == 0 and fpr[-1] == tpr[-1] == 1
    assert np.trapezoid(tpr, fpr) == pytest.approx(auroc(y, s), abs=1e-12)


def test_bootstrap_is_seeded_and_brackets_the_estimate():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 400)
    s = rng.normal(y, 1.5)
    a = bootstrap_auroc_ci(y, s, 300, rng=np.random.default_rng(5))
    b = bootstrap_auroc_ci(y, s, 300, rng=np.random.default_rng(5))
    assert a == b and a[0] < auroc(y, s) < a[1]
    labels = np.stack([y, 1 - y], 1).astype(float)
    labels[0, 1] = np.nan
    t = auroc_table(labels, np.stack([s, -s], 1), names=("A", "B"), n_boot=200, seed=3)
    assert list(t.finding) == ["A", "B", "mean"] and list(t.columns) == ["finding", "auroc", "ci_low", "ci_high", "n_pos", "n_neg"]
    assert t.auroc[2] == pytest.approx((t.auroc[0] + t.auroc[1]) / 2)
    assert t.n_pos[1] + t.n_neg[1] == 399
    assert (t.ci_low <= t.auroc).all() and (t.auroc <= t.ci_high).all()


def _write(tmp_path, n=40, prefix="prob_"):
    rng = np.random.default_rng(0)
    names = [f"{i + 1:08d}_000.png" for i in range(n)]
    labels = rng.integers(0, 2, (n, 14))
    header = ("Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
              "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]")
    rows = []
    for name, lab in zip(names, labels):
        found = "|".join(f for f, v in zip(FINDINGS, lab) if v) or "No Finding"
        rows.append(f"{name},{found},0,{int(name[:8])},50,F,PA,1024,1024,0.14,0.14")
    (tmp_path / "meta.csv").write_text(header + "\n" + "\n".join(rows) + "\n")
    probs = np.clip(labels * 0.3 + rng.uniform(0, 0.7, labels.shape), 0, 1)
    frame = pd.DataFrame(probs, columns=[f"{prefix}{f}" for f in FINDINGS])
    frame.insert(0, "Image Index", names)
    frame.to_csv(tmp_path / "preds.csv", index=False)
    return labels, probs


@pytest.mark.parametrize("prefix", ["prob_", ""])
def test_cli_evaluate_writes_contract_table(tmp_path, capsys, prefix):
    from cxrkit.cli.main import main

    labels, probs = _write(tmp_path, prefix=prefix)
    rc = main(["evaluate", "--predictions", str(tmp_path / "preds.csv"), "--metadata", str(tmp_path / "meta.csv"),
               "--out", str(tmp_path / "e"), "--n-boot", "50"])
    assert rc == 0
    t = pd.read_csv(tmp_path / "e" / "auroc.csv")
    assert list(t.columns) == ["finding", "auroc", "ci_low", "ci_high", "n_pos", "n_neg"]
    assert list(t.finding) == [*FINDINGS, "mean"]
    for j, f in enumerate(FINDINGS):
        assert t.auroc[j] == pytest.approx(brute(labels[:, j], probs[:, j]), abs=1e-6)
    assert (tmp_path / "e" / "roc_curves.png").is_file() and (tmp_path / "e" / "comparison.md").is_file()
    comp = pd.read_csv(tmp_path / "e" / "comparison.csv")
    assert comp.wang2017_resnet50_official_split.iloc[-1] == pytest.approx(0.745, abs=5e-4)
    assert comp.chexnet_2017_other_split.iloc[-1] == pytest.approx(0.841, abs=5e-4)


def test_evaluate_errors_are_clear(tmp_path, capsys):
    from cxrkit.cli.main import main

    _write(tmp_path)
    preds = pd.read_csv(tmp_path / "preds.csv")
    args = ["evaluate", "--predictions", str(tmp_path / "bad.csv"), "--metadata", str(tmp_path / "meta.csv"),
            "--out", str(tmp_path / "e"), "--n-boot", "0"]
    preds.drop(columns="prob_Hernia").to_csv(tmp_path / "bad.csv", index=False)
    assert main(args) == 2
    assert "no probability column for ['Hernia']" in capsys.readouterr().err
    bad = preds.copy()
    bad.loc[3, "prob_Mass"] = 1.7
    bad.to_csv(tmp_path / "bad.csv", index=False)
    assert main(args) == 2
    assert "00000004_000.png" in capsys.readouterr().err
    bad = preds.copy()
    bad.loc[0, "Image Index"] = "99999999_000.png"
    bad.to_csv(tmp_path / "bad.csv", index=False)
    assert main(args) == 2
    assert "99999999_000.png" in capsys.readouterr().err
    pd.concat([preds, preds.iloc[:1]]).to_csv(tmp_path / "bad.csv", index=False)
    assert main(args) == 2
    assert "duplicated" in capsys.readouterr().err


@pytest.mark.realdata
def test_reproduces_published_reference_aucs(tmp_path):
    from cxrkit.classification.evaluate import evaluate_predictions

    preds = shared_path("nih", "reference_predictions", "preds.csv")
    meta = shared_path("nih", "Data_Entry_2017_v2020.csv.gz")
    table = evaluate_predictions(preds, meta, tmp_path, n_boot=20, plots=False)
    ref = pd.read_csv(shared_path("nih", "reference_predictions", "aucs.csv"))
    assert list(ref.label) == list(FINDINGS)
    np.testing.assert_allclose(table.auroc.to_numpy()[:14], ref.auc.to_numpy(), atol=1e-6, rtol=0)

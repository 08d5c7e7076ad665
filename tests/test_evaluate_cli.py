"""`cxrkit evaluate`: the contract's outputs, clear errors, and the published reference AUROCs (real data)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import shared_path
from test_auroc import brute

from cxrkit.cli.main import main
from cxrkit.findings import FINDINGS

HEADER = ("Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
          "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]")


def _write(tmp_path, n=40, prefix="prob_"):
    rng = np.random.default_rng(0)
    names = [f"{i + 1:08d}_000.png" for i in range(n)]
    labels = rng.integers(0, 2, (n, 14))
    rows = []
    for name, lab in zip(names, labels):
        found = "|".join(f for f, v in zip(FINDINGS, lab) if v) or "No Finding"
        rows.append(f"{name},{found},0,{int(name[:8])},50,F,PA,1024,1024,0.14,0.14")
    extra = "99999998_000.png,Hernia,0,99999998,50,F,PA,1024,1024,0.14,0.14"  # in metadata, not predicted
    (tmp_path / "meta.csv").write_text(HEADER + "\n" + "\n".join(rows + [extra]) + "\n")
    probs = np.clip(labels * 0.3 + np.round(rng.uniform(0, 0.7, labels.shape), 2), 0, 1)  # with ties
    frame = pd.DataFrame(probs, columns=[f"{prefix}{f}" for f in FINDINGS])
    frame.insert(0, "Image Index", names)
    frame = frame.iloc[rng.permutation(n)]  # order differs from the metadata
    frame.to_csv(tmp_path / "preds.csv", index=False)
    return labels, probs


def _run(tmp_path, preds="preds.csv", *extra):
    return main(["evaluate", "--predictions", str(tmp_path / preds), "--metadata", str(tmp_path / "meta.csv"),
                 "--out", str(tmp_path / "e"), *extra])


@pytest.mark.parametrize("prefix", ["prob_", ""])
def test_cli_evaluate_writes_contract_table(tmp_path, capsys, prefix):
    labels, probs = _write(tmp_path, prefix=prefix)
    assert _run(tmp_path, "preds.csv", "--n-boot", "50") == 0
    printed = capsys.readouterr().out
    assert "Hernia" in printed and "mean" in printed
    t = pd.read_csv(tmp_path / "e" / "auroc.csv")
    assert list(t.columns) == ["finding", "auroc", "ci_low", "ci_high", "n_pos", "n_neg"]
    assert list(t.finding) == [*FINDINGS, "mean"]
    for j, f in enumerate(FINDINGS):
        assert t.auroc[j] == pytest.approx(brute(labels[:, j], probs[:, j]), abs=1e-6)
        assert t.n_pos[j] == labels[:, j].sum() and t.n_pos[j] + t.n_neg[j] == 40
    assert t.auroc.iloc[-1] == pytest.approx(t.auroc.iloc[:14].mean(), abs=1e-6)
    for name in ("roc_curves.png", "roc_overlay.png", "comparison.md"):
        assert (tmp_path / "e" / name).stat().st_size > 0
    assert (tmp_path / "e" / "roc_curves.png").read_bytes()[:4] == b"\x89PNG"
    comp = pd.read_csv(tmp_path / "e" / "comparison.csv")
    assert comp.wang2017_resnet50_official_split.iloc[-1] == pytest.approx(0.745)
    assert comp.chexnet_2017_other_split.iloc[-1] == pytest.approx(0.841)
    assert comp.chexnet_2017_other_split.iloc[:14].mean() == pytest.approx(0.841, abs=5e-4)
    md = (tmp_path / "e" / "comparison.md").read_text()
    assert "official split" in md and "not the official" in md
    assert not list((tmp_path / "e").glob(".*.tmp"))  # atomic writes leave no temporaries


def test_cli_seed_and_n_boot(tmp_path, capsys):
    _write(tmp_path)
    _run(tmp_path, "preds.csv", "--n-boot", "40", "--seed", "1", "--no-plots")
    a = pd.read_csv(tmp_path / "e" / "auroc.csv")
    _run(tmp_path, "preds.csv", "--n-boot", "40", "--seed", "1", "--no-plots")
    assert pd.read_csv(tmp_path / "e" / "auroc.csv").equals(a)
    _run(tmp_path, "preds.csv", "--n-boot", "0", "--no-plots")
    assert pd.read_csv(tmp_path / "e" / "auroc.csv").ci_low.isna().all()


def _error(tmp_path, capsys, frame):
    frame.to_csv(tmp_path / "bad.csv", index=False)
    assert _run(tmp_path, "bad.csv", "--n-boot", "0", "--no-plots") == 1  # a bad input file
    err = capsys.readouterr().err
    assert err.startswith("cxrkit evaluate: error: ") and err.count("\n") == 1 and "bad.csv" in err
    return err


def test_evaluate_errors_are_clear(tmp_path, capsys):
    _write(tmp_path)
    preds = pd.read_csv(tmp_path / "preds.csv")
    err = _error(tmp_path, capsys, preds.drop(columns=["prob_Hernia", "prob_Mass"]))
    assert "no probability column for ['Mass', 'Hernia']" in err and "prob_FINDING" in err
    err = _error(tmp_path, capsys, preds.drop(columns="Image Index"))
    assert "no 'Image Index' column" in err
    bad = preds.copy()
    bad.loc[3, "prob_Mass"] = 1.7
    bad.loc[5, "prob_Edema"] = -0.1
    err = _error(tmp_path, capsys, bad)
    assert "2 probabilities are outside [0, 1]" in err and bad["Image Index"][3] in err and "prob_Mass" in err
    bad = preds.copy()
    bad["prob_Nodule"] = bad["prob_Nodule"].astype(object)
    bad.loc[7, "prob_Nodule"] = "high"
    err = _error(tmp_path, capsys, bad)
    assert "1 probabilities are missing or not numbers" in err and "'high'" in err
    bad = preds.copy()
    bad.loc[0, "Image Index"] = "99999999_000.png"
    bad.loc[1, "Image Index"] = "99999997_000.png"
    err = _error(tmp_path, capsys, bad)
    assert "2 of 40 images are not in" in err and "99999999_000.png" in err and "meta.csv" in err
    err = _error(tmp_path, capsys, pd.concat([preds, preds.iloc[:2]]))
    assert "2 duplicated images" in err and preds["Image Index"][0] in err
    err = _error(tmp_path, capsys, preds.iloc[:0])
    assert "no prediction rows" in err
    assert main(["evaluate", "--predictions", str(tmp_path / "nope.csv"), "--metadata",
                 str(tmp_path / "meta.csv"), "--out", str(tmp_path / "e")]) == 2
    assert "not found" in capsys.readouterr().err


def test_prob_columns_win_over_bare_finding_columns(tmp_path, capsys):
    labels, probs = _write(tmp_path)
    preds = pd.read_csv(tmp_path / "preds.csv")
    for f in FINDINGS:  # e.g. labels merged beside the probabilities: must not be scored as predictions
        preds[f] = 0.5
    preds.to_csv(tmp_path / "both.csv", index=False)
    assert _run(tmp_path, "both.csv", "--n-boot", "0", "--no-plots") == 0
    t = pd.read_csv(tmp_path / "e" / "auroc.csv")
    assert t.auroc[0] == pytest.approx(brute(labels[:, 0], probs[:, 0]), abs=1e-6)


@pytest.mark.realdata
def test_reproduces_published_reference_aucs(tmp_path):
    from cxrkit.classification.evaluate import evaluate_predictions

    preds = shared_path("nih", "reference_predictions", "preds.csv")
    meta = shared_path("nih", "Data_Entry_2017_v2020.csv.gz")
    ref = pd.read_csv(shared_path("nih", "reference_predictions", "aucs.csv"))
    table = evaluate_predictions(preds, meta, tmp_path, n_boot=20, plots=False)
    assert list(ref.label) == list(FINDINGS) and list(table.finding) == [*FINDINGS, "mean"]
    np.testing.assert_allclose(table.auroc.to_numpy()[:14], ref.auc.to_numpy(), atol=1e-6, rtol=0)
    assert (table.n_pos + table.n_neg).iloc[0] == 22433
    written = pd.read_csv(tmp_path / "auroc.csv")
    np.testing.assert_allclose(written.auroc.to_numpy()[:14], ref.auc.to_numpy(), atol=1e-6, rtol=0)

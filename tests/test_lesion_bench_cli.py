"""`cxrkit bench lesions` end to end on the bundled images (tiny settings), and its outputs' contract."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from cxrkit.classification.lesion_bench import COLUMNS, score_rows
from cxrkit.cli.main import main

SAMPLE = Path(__file__).resolve().parents[1] / "src" / "cxrkit" / "demo" / "sample" / "nih" / "images"


@pytest.mark.slow
def test_bench_lesions_smoke(tmp_path, capsys):
    out = tmp_path / "b"
    rc = main(["bench", "lesions", "--out", str(out), "--images", str(SAMPLE), "--metadata", "none", "--epochs", "1",
               "--repeats", "1", "--input-size", "64", "--workers", "0", "--batch-size", "4", "--quiet"])
    assert rc == 0
    brief = json.loads(capsys.readouterr().out)
    assert set(brief["per_finding"]) == {"Effusion", "Mass", "Nodule"}
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["images"]["used"] == 6 and metrics["samples"]["test"] > 0
    with open(out / "test_predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == COLUMNS
    assert len(rows) == 3 * metrics["samples"]["test"]
    for r in rows:
        assert (r["gt_x"] == "") == (r["label"] == "0")
        assert 0 <= float(r["prob"]) <= 1
    assert (out / "roc.png").is_file()
    # model.pt is a checkpoint that `cxrkit predict` loads.
    assert main(["predict", str(SAMPLE / "00004296_000.png"), "--model", str(out / "model.pt"), "--out", str(tmp_path / "p")]) == 0
    assert json.loads((tmp_path / "p" / "00004296_000.json").read_text())["model"] == "resnet_lite"


def test_score_rows_recomputes_auroc_and_iobb_from_the_csv_fields():
    rows = []
    for i, (label, prob) in enumerate([(1, 0.9), (1, 0.8), (0, 0.3), (0, 0.85)]):
        for f in ("Effusion", "Mass", "Nodule"):
            gt = (10.0, 10.0, 20.0, 20.0) if label else (None,) * 4
            pred = (12.0, 12.0, 8.0, 8.0) if i == 0 else (100.0, 100.0, 5.0, 5.0)
            rows.append({"image": f"i{i}", "finding": f, "label": label, "prob": prob,
                         **dict(zip(("gt_x", "gt_y", "gt_w", "gt_h"), gt)),
                         **dict(zip(("pred_x", "pred_y", "pred_w", "pred_h"), pred))})
    m = score_rows(rows)
    assert m["per_finding"]["Mass"]["auroc"] == pytest.approx(0.75)  # 3 of 4 pairs ordered right
    assert m["per_finding"]["Mass"]["acc_iobb@0.5"] == pytest.approx(0.5)  # i0 inside the box, i1 away
    assert m["overall"]["targets"]["acc_iobb@0.5>=0.8"] is False


def test_parse_lse_r_accepts_one_number_or_per_finding_pairs():
    from cxrkit.classification.lesion_bench import DEFAULT_LSE_R, lse_architecture, parse_lse_r
    from cxrkit.errors import CxrkitError

    assert parse_lse_r("4") == 4.0
    per = parse_lse_r("Effusion=4, Mass=6")
    assert per == (("Effusion", 4.0), ("Mass", 6.0))
    assert lse_architecture(per) == (("lse_r", (4.0, 6.0, DEFAULT_LSE_R)),)  # LESION_FINDINGS order
    assert lse_architecture(None) == ()
    for bad, msg in (("0", "positive"), ("x", "neither"), ("Hernia=3", "not one of"), ("Mass=-1", "positive"),
                     ("Mass=a", "number")):
        with pytest.raises(CxrkitError, match=msg):
            parse_lse_r(bad)


def _tiny_run(out, *extra):
    return main(["bench", "lesions", "--out", str(out), "--images", str(SAMPLE), "--metadata", "none", "--epochs", "1",
                 "--repeats", "1", "--input-size", "64", "--workers", "0", "--batch-size", "4", "--quiet", *extra])


def test_bench_lesions_compose_selects_per_finding_on_validation(tmp_path, capsys):
    from cxrkit.classification.lesions import LESION_FINDINGS
    from cxrkit.errors import CxrkitError
    from cxrkit.models.checkpoint import load_checkpoint

    a, b = tmp_path / "r10", tmp_path / "r4"
    assert _tiny_run(a, "--lse-r", "10") == 0 and _tiny_run(b, "--lse-r", "4") == 0
    capsys.readouterr()
    out = tmp_path / "c"
    assert main(["bench", "lesions-compose", str(a), str(b), "--out", str(out), "--images", str(SAMPLE),
                 "--metadata", "none", "--quiet"]) == 0
    brief = json.loads(capsys.readouterr().out)
    m = json.loads((out / "metrics.json").read_text())
    comp, chosen = m["composition"], m["box_method"]["chosen"]
    assert brief["composition"] == comp["select"] and set(comp["select"]) == set(LESION_FINDINGS)
    for f, run in comp["select"].items():  # each finding from the run that localized it best on validation
        val = {r: comp["validation_per_run"][r][chosen][f] for r in comp["runs"]}
        assert val[run] == max(val.values())
        if val[str(a)] == val[str(b)]:
            assert run == str(a)  # ties keep the earlier run
    model = load_checkpoint(out / "model.pt")
    assert model.card.name == "finding_ensemble" and model.card.labels == tuple(LESION_FINDINGS)
    member_r = [dict(arch)["lse_r"] for arch in model.card.arch_kwargs["member_architectures"]]
    want = [10.0 if comp["select"][f] == str(a) else 4.0 for f in LESION_FINDINGS]
    assert [member_r[i] for i in model.card.arch_kwargs["select"]] == want
    with open(out / "test_predictions.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == 3 * m["samples"]["test"]
    assert main(["predict", str(SAMPLE / "00004296_000.png"), "--model", str(out / "model.pt"), "--out",
                 str(tmp_path / "p")]) == 0
    c = tmp_path / "seed1"
    assert _tiny_run(c, "--seed", "1") == 0
    with pytest.raises(CxrkitError, match="seed"):
        from cxrkit.classification.lesion_compose import compose_runs

        compose_runs([a, c], SAMPLE, tmp_path / "bad", progress=False)

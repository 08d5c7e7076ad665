"""CLI contract of ``cxrkit reports`` (CONTRACTS.md: label INPUT --out OUT.csv [--style] [--id-column] [--text-column])."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from cxrkit.cli.main import main
from cxrkit.findings import FINDINGS, NO_FINDING

REPORTS = [
    ["id", "text"],
    ["r1", "FINDINGS: Heart size is normal. No pleural effusion or pneumothorax.\nIMPRESSION: No acute disease."],
    ["r2", "Mild cardiomegaly. Small left pleural effusion with adjacent atelectasis; cannot exclude pneumonia."],
    ["r3", ""],
    ["r4", "No change in cardiomegaly. No new consolidation."],
]


@pytest.fixture
def reports_csv(tmp_path: Path) -> Path:
    p = tmp_path / "reports.csv"
    with open(p, "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows(REPORTS)
    return p


def rows(path: Path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.reader(fh))


def test_label_chexpert_style_contract(reports_csv, tmp_path, capsys):
    out = tmp_path / "out" / "labels.csv"
    assert main(["reports", "label", str(reports_csv), "--out", str(out)]) == 0
    got = rows(out)
    assert got[0] == ["id", *FINDINGS, NO_FINDING, "status"]
    assert [r[0] for r in got[1:]] == ["r1", "r2", "r3", "r4"]
    col = {name: i for i, name in enumerate(got[0])}
    r1, r2, r3, r4 = got[1:]
    assert r1[col["Cardiomegaly"]] == "0" and r1[col["Effusion"]] == "0" and r1[col[NO_FINDING]] == "1" and r1[col["status"]] == ""
    assert (r2[col["Cardiomegaly"]], r2[col["Effusion"]], r2[col["Atelectasis"]], r2[col["Pneumonia"]]) == ("1", "1", "1", "-1")
    assert r2[col[NO_FINDING]] == "" and r2[col["Mass"]] == ""
    assert r3[1:-1] == [""] * 15 and r3[-1] == "empty text"
    assert r4[col["Cardiomegaly"]] == "1" and r4[col["Consolidation"]] == "-1"
    for r in got[1:]:
        assert all(c in ("", "1", "0", "-1") for c in r[1:-1])
    err = capsys.readouterr().err
    assert "labeled 4 reports" in err and "1 of 4 reports could not be labeled" in err


def test_label_nih_style_contract(reports_csv, tmp_path):
    out = tmp_path / "nih.csv"
    assert main(["reports", "label", str(reports_csv), "--out", str(out), "--style", "nih"]) == 0
    assert rows(out) == [
        ["id", "Finding Labels", "status"],
        ["r1", "No Finding", ""],
        ["r2", "Atelectasis|Cardiomegaly|Effusion", ""],
        ["r3", "", "empty text"],
        ["r4", "Cardiomegaly", ""],
    ]


def test_label_custom_columns_and_json(tmp_path):
    src = tmp_path / "in.csv"
    src.write_text("accession,report_text\nA1,Right upper lobe mass.\n", encoding="utf-8")
    out, js = tmp_path / "o.csv", tmp_path / "o.json"
    code = main(["reports", "label", str(src), "--out", str(out), "--id-column", "accession", "--text-column", "report_text", "--json", str(js)])
    assert code == 0
    got = rows(out)
    assert got[0][0] == "accession" and got[1][0] == "A1" and got[1][got[0].index("Mass")] == "1"
    data = json.loads(js.read_text())
    assert data[0]["evidence"][0]["text"] == "mass" and data[0]["evidence"][0]["start"] == 17


def test_missing_column_exits_nonzero_with_one_line_error(reports_csv, tmp_path, capsys):
    out = tmp_path / "o.csv"
    code = main(["reports", "label", str(reports_csv), "--out", str(out), "--text-column", "report"])
    assert code != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith("cxrkit reports: error:") and "missing column 'report'" in err and "reports.csv" in err
    assert not out.exists()


def test_missing_input_exits_nonzero(tmp_path, capsys):
    assert main(["reports", "label", str(tmp_path / "nope.csv"), "--out", str(tmp_path / "o.csv")]) != 0
    assert "no such file or folder" in capsys.readouterr().err


def test_existing_output_survives_a_failed_run(reports_csv, tmp_path):
    out = tmp_path / "o.csv"
    out.write_text("previous\n")
    assert main(["reports", "label", str(reports_csv), "--out", str(out), "--id-column", "nope"]) != 0
    assert out.read_text() == "previous\n"


def test_sections_option(tmp_path):
    src = tmp_path / "in.csv"
    src.write_text('id,text\na,"INDICATION: pneumonia.\nFINDINGS: Lungs clear."\n', encoding="utf-8")
    out = tmp_path / "o.csv"
    assert main(["reports", "label", str(src), "--out", str(out), "--style", "nih"]) == 0
    assert rows(out)[1][1] == "No Finding"
    assert main(["reports", "label", str(src), "--out", str(out), "--style", "nih", "--sections", "findings,indication"]) == 0
    assert rows(out)[1][1] == "Pneumonia"


def test_explain(capsys):
    assert main(["reports", "explain", "No XXXX pleural effusion. Pneumonia cannot be excluded."]) == 0
    out = capsys.readouterr().out
    assert "Effusion" in out and "negation.pre:no" in out and 'trigger "cannot be excluded"' in out
    assert main(["reports", "explain", "--json", "Mild cardiomegaly."]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["labels"]["Cardiomegaly"] == 1 and data["evidence"][0]["start"] == 5


def test_explain_empty_text_is_an_error(capsys):
    assert main(["reports", "explain", "  "]) != 0
    assert "empty text" in capsys.readouterr().err


def test_rules_copy_and_use(tmp_path, capsys):
    d = tmp_path / "myrules"
    assert main(["reports", "rules", "--copy-to", str(d)]) == 0
    assert sorted(p.name for p in d.iterdir()) == ["mentions.toml", "sections.toml", "triggers.toml"]
    assert main(["reports", "rules", "--copy-to", str(d)]) != 0  # never overwrites edits
    (d / "mentions.toml").write_text((d / "mentions.toml").read_text().replace("  'hernias?',", "  'hernias?',\n  'gastric pull-?up',"))
    capsys.readouterr()
    assert main(["reports", "explain", "--rules", str(d), "Gastric pullup in the posterior mediastinum."]) == 0
    assert "Hernia" in capsys.readouterr().out


def test_eval_on_small_gold(tmp_path, capsys):
    gold = tmp_path / "gold.csv"
    cols = ["filename", *FINDINGS, "normal"]
    lines = [",".join(cols)]
    truth = {"r1": set(), "r2": {"Cardiomegaly", "Effusion", "Atelectasis"}, "r4": {"Cardiomegaly", "Consolidation"}}
    for rid, pos in truth.items():
        lines.append(",".join([rid, *("1" if f in pos else "0" for f in FINDINGS), "1" if not pos else "0"]))
    gold.write_text("\n".join(lines) + "\n")
    src = tmp_path / "rep.csv"
    with open(src, "w", newline="") as fh:
        csv.writer(fh).writerows(REPORTS)
    out = tmp_path / "eval.csv"
    assert main(["reports", "eval", "--gold", str(gold), "--reports", str(src), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "ChestX-ray8 labeler (paper, OpenI, 14 classes)" in text and "89.8" in text and "77.2" in text
    got = {r[0]: r for r in rows(out)}
    # r4's consolidation is "no new" -> uncertain -> counted negative: one FN
    assert got["micro"][1:6] == ["5", "4", "4", "0", "1"]
    assert got["Hernia"][-1] == "0" and got["Cardiomegaly"][-1] == "1"


def test_eval_without_gold_gives_clear_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CXRKIT_SHARED_DATA", str(tmp_path / "none"))
    monkeypatch.chdir(tmp_path)
    import cxrkit.cli.shared as shared

    monkeypatch.setattr(shared, "__file__", str(tmp_path / "a" / "b" / "c" / "d.py"))
    assert main(["reports", "eval"]) != 0
    err = capsys.readouterr().err
    assert "openi_gold_dev.csv not found" in err and "--gold" in err

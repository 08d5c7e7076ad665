"""Report labeling on real data: the CheXpert labeler's sample reports, the OpenI gold set, the demo."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from cxrkit.reports import Labeler

# CheXpert columns that are the same observation as an NIH finding (or No Finding). CheXpert's
# "Lung Lesion", "Lung Opacity" etc. have no exact NIH counterpart and are not compared.
SHARED = {
    "No Finding": "No Finding",
    "Cardiomegaly": "Cardiomegaly",
    "Edema": "Edema",
    "Consolidation": "Consolidation",
    "Pneumonia": "Pneumonia",
    "Atelectasis": "Atelectasis",
    "Pneumothorax": "Pneumothorax",
    "Pleural Effusion": "Effusion",
}


def _cell(value: str) -> int | None:
    return None if value.strip() == "" else int(float(value))


@pytest.mark.realdata
def test_chexpert_labeler_sample_reports_exactly(shared):
    path = shared("reports", "chexpert_labeler", "labeled_reports.csv")
    with open(path, newline="", encoding="utf-8") as fh:
        expected = list(csv.DictReader(fh))
    with open(shared("reports", "chexpert_labeler", "sample_reports.csv"), newline="", encoding="utf-8") as fh:
        samples = [row[0] for row in csv.reader(fh)]
    assert len(expected) == 4 and [e["Reports"] for e in expected] == samples
    labeler = Labeler()
    for row in expected:
        result = labeler.label(row["Reports"])
        assert result.ok
        for chexpert_name, nih_name in SHARED.items():
            assert result.labels[nih_name] == _cell(row[chexpert_name]), (row["Reports"][:40], chexpert_name)


@pytest.mark.realdata
def test_openi_gold_micro_f1(shared):
    from cxrkit.reports.evaluate import evaluate, format_table

    gold = shared("reports", "openi", "openi_gold_dev.csv")
    reports = shared("reports", "openi", "NLMCXR_reports.tgz")
    result = evaluate(gold, reports)
    table = format_table(result)
    assert result.n_reports == 3080 and not result.missing
    assert result.micro.f1 is not None and result.micro.f1 >= 0.90, table
    # both halves (rules were written looking at split A only)
    assert result.splits["A"].f1 >= 0.90 and result.splits["B"].f1 >= 0.90, table
    assert "Hernia" not in result.annotated  # the gold set has no Hernia positives


@pytest.mark.realdata
def test_cli_label_real_openi_archive(shared, tmp_path):
    from cxrkit.cli.main import main

    tgz = shared("reports", "openi", "NLMCXR_reports.tgz")
    out = tmp_path / "openi.csv"
    assert main(["reports", "label", str(tgz), "--out", str(out), "--no-progress"]) == 0
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 3955 and len({r["id"] for r in rows}) == 3955
    assert all(r["id"].startswith("CXR") for r in rows)
    empty = [r for r in rows if r["status"]]
    assert all("no FINDINGS/IMPRESSION text" in r["status"] for r in empty) and len(empty) < 40


def test_demo_section(tmp_path):
    from cxrkit.demo.section import DemoContext
    from cxrkit.demo.sections.reports import build

    section = build(DemoContext(out=tmp_path))
    assert section.title == "Report labeling"
    for rel in section.files:
        assert (tmp_path / rel).is_file()
    assert "CXR1000" in section.html and "background:#f6b8b8" in section.html and "<u" in section.html
    assert "CC BY-NC-ND" in section.html
    with open(tmp_path / "reports" / "labels.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["id"] for r in rows] == ["CXR1", "CXR1000", "CXR1022", "CXR1100", "CXR1243"]
    assert rows[0]["No Finding"] == "1" and rows[1]["Atelectasis"] == "1" and rows[1]["Mass"] == "-1"
    sample = Path(DemoContext(out=tmp_path).sample_dir) / "reports"
    assert (sample / "NOTICE.md").is_file()

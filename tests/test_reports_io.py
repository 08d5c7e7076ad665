"""Report inputs (CSV, .txt folder, OpenI XML file / folder / .tgz), per-row status, outputs."""

from __future__ import annotations

import csv
import gzip
import io
import json
import tarfile
from pathlib import Path

import pytest

from cxrkit.errors import CxrkitError
from cxrkit.findings import FINDINGS, NO_FINDING
from cxrkit.reports import Labeler
from cxrkit.reports.io import input_kind, iter_reports, parse_openi_xml
from cxrkit.reports.output import header, label_file

XML = """<?xml version="1.0" encoding="utf-8"?>
<eCitation><uId id="CXR{n}"/><MedlineCitation><Article><Abstract>
<AbstractText Label="COMPARISON">Prior pneumothorax.</AbstractText>
<AbstractText Label="INDICATION">Rule out pneumonia.</AbstractText>
<AbstractText Label="FINDINGS">{findings}</AbstractText>
<AbstractText Label="IMPRESSION">{impression}</AbstractText>
</Abstract></Article></MedlineCitation></eCitation>
"""


def xml(n: int, findings: str = "Mild cardiomegaly.", impression: str = "No effusion.") -> bytes:
    return XML.format(n=n, findings=findings, impression=impression).encode("utf-8")


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def labeled(src: Path, out: Path, **kw) -> list[dict[str, str]]:
    label_file(src, out, progress=False, **kw)
    return read_csv(out)


def write_csv(path: Path, rows: list[list[str]], encoding: str = "utf-8") -> Path:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    path.write_bytes(buf.getvalue().encode(encoding))
    return path


# --- CSV ---------------------------------------------------------------------------------------


def test_csv_in_order_with_status_rows(tmp_path):
    src = tmp_path / "in.csv"
    raw = (
        b"id,text,extra\n"
        b"a,Mild cardiomegaly. No effusion.,x\n"
        b"b,,x\n"
        b"c,Possible pneumonia.,x\n"
        b"d,Pleural effusion \xe9 noted.,x\n"
        b"e\n"
        b"a,No acute disease.,x\n"
    )
    src.write_bytes(raw)
    items = list(iter_reports(src))
    assert [i.id for i in items] == ["a", "b", "c", "d", "e", "a"]
    assert items[4].status.startswith("row has 1 fields")
    out = tmp_path / "out.csv"
    summary = label_file(src, out, progress=False)
    assert summary.reports == 6 and summary.with_status == 3
    rows = read_csv(out)
    assert list(rows[0]) == ["id", *FINDINGS, NO_FINDING, "status"]
    assert [r["id"] for r in rows] == ["a", "b", "c", "d", "e", "a"]
    assert rows[0]["Cardiomegaly"] == "1" and rows[0]["Effusion"] == "0" and rows[0]["Atelectasis"] == ""
    assert rows[0][NO_FINDING] == "" and rows[0]["status"] == ""
    assert rows[1]["status"] == "empty text" and all(rows[1][f] == "" for f in (*FINDINGS, NO_FINDING))
    assert rows[2]["Pneumonia"] == "-1"
    assert "not valid UTF-8" in rows[3]["status"] and rows[3]["Effusion"] == ""
    assert rows[4]["status"].startswith("row has 1 fields")
    assert rows[5][NO_FINDING] == "1"


def test_csv_other_encoding_and_bom(tmp_path):
    src = write_csv(tmp_path / "cp.csv", [["id", "text"], ["r1", "Pleural effusion, café."]], encoding="cp1252")
    out = tmp_path / "o.csv"
    label_file(src, out, encoding="cp1252", progress=False)
    assert read_csv(out)[0]["Effusion"] == "1"
    bom = tmp_path / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbfid,text\nr1,Small pneumothorax.\n")
    label_file(bom, out, progress=False)
    assert read_csv(out)[0]["Pneumothorax"] == "1"


def test_csv_gzip_and_custom_columns(tmp_path):
    src = tmp_path / "in.csv.gz"
    with gzip.open(src, "wt", encoding="utf-8", newline="") as fh:
        csv.writer(fh).writerows([["study", "report"], ["s1", "Right lower lobe pneumonia.\nNo effusion."]])
    out = tmp_path / "o.csv"
    label_file(src, out, id_column="study", text_column="report", progress=False)
    rows = read_csv(out)
    assert list(rows[0])[0] == "study" and rows[0]["study"] == "s1" and rows[0]["Pneumonia"] == "1"


def test_csv_missing_column_is_an_error_and_writes_nothing(tmp_path):
    src = write_csv(tmp_path / "in.csv", [["id", "report"], ["a", "x"]])
    out = tmp_path / "o.csv"
    with pytest.raises(CxrkitError, match=r"in\.csv: missing column 'text' \(columns are: 'id', 'report'\); choose one with --text-column"):
        label_file(src, out, progress=False)
    assert not out.exists() and list(tmp_path.iterdir()) == [src]
    with pytest.raises(CxrkitError, match="missing column 'rid'.*--id-column"):
        label_file(src, out, id_column="rid", text_column="report", progress=False)


def test_csv_empty_and_utf16_files(tmp_path):
    empty = tmp_path / "e.csv"
    empty.write_bytes(b"")
    with pytest.raises(CxrkitError, match="empty file"):
        list(iter_reports(empty))
    u16 = tmp_path / "u.csv"
    u16.write_bytes("id,text\na,Effusion.\n".encode("utf-16"))
    with pytest.raises(CxrkitError, match="UTF-16"):
        list(iter_reports(u16))
    items = list(iter_reports(u16, encoding="utf-16"))
    assert items[0].text == "Effusion."


# --- .txt files --------------------------------------------------------------------------------


def test_txt_folder_natural_order_and_statuses(tmp_path):
    d = tmp_path / "txt"
    d.mkdir()
    (d / "r10.txt").write_text("FINDINGS: No pneumothorax.\nIMPRESSION: Mild cardiomegaly.", encoding="utf-8")
    (d / "r2.txt").write_text("Small left pleural effusion.", encoding="utf-8")
    (d / "r3.txt").write_bytes(b"")
    (d / "r4.txt").write_bytes(b"Cardiomegaly \xff\xfe.")
    (d / "notes.md").write_text("ignored")
    assert input_kind(d) == "txt-folder"
    out = tmp_path / "o.csv"
    label_file(d, out, style="nih", progress=False)
    rows = read_csv(out)
    assert list(rows[0]) == ["id", "Finding Labels", "status"]
    assert [(r["id"], r["Finding Labels"]) for r in rows] == [("r2", "Effusion"), ("r3", ""), ("r4", ""), ("r10", "Cardiomegaly")]
    assert rows[1]["status"] == "empty text" and "not valid UTF-8" in rows[2]["status"]


def test_single_txt_file(tmp_path):
    p = tmp_path / "one.txt"
    p.write_text("No acute disease.")
    assert [(i.id, i.text) for i in iter_reports(p)] == [("one", "No acute disease.")]


# --- OpenI XML ---------------------------------------------------------------------------------


def test_openi_xml_uses_findings_and_impression():
    item = parse_openi_xml(xml(7), "ecgen-radiology/7.xml")
    assert item.id == "CXR7" and item.text == "FINDINGS: Mild cardiomegaly.\nIMPRESSION: No effusion."
    r = Labeler().label(item.text, item.id)
    assert r.labels["Cardiomegaly"] == 1 and r.labels["Effusion"] == 0
    assert r.labels["Pneumonia"] is None and r.labels["Pneumothorax"] is None  # INDICATION/COMPARISON ignored
    both = parse_openi_xml(xml(7), "7.xml", sections=("findings", "impression", "indication"))
    assert both.text.startswith("INDICATION: Rule out pneumonia.")
    every = parse_openi_xml(xml(7), "7.xml", sections=("all",))
    assert every.text.splitlines()[0] == "COMPARISON: Prior pneumothorax." and len(every.text.splitlines()) == 4


def test_openi_xml_bad_and_empty():
    bad = parse_openi_xml(b"<eCitation><uId id='CXR9'/>", "ecgen-radiology/9.xml")
    assert bad.id == "CXR9" and "invalid XML" in bad.status
    empty = parse_openi_xml(xml(5, "", ""), "5.xml")
    assert empty.id == "CXR5" and "no FINDINGS/IMPRESSION text" in empty.status


def make_tgz(path: Path, reports: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in reports.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_openi_folder_tgz_and_file(tmp_path):
    reports = {
        "ecgen-radiology/1.xml": xml(1, "Heart size is normal. The lungs are clear.", "Normal chest."),
        "ecgen-radiology/10.xml": xml(10, "Small right pneumothorax.", "Cannot exclude pneumonia."),
        "ecgen-radiology/2.xml": b"<broken",
        "ecgen-radiology/3.xml": xml(3, "", ""),
    }
    tgz = make_tgz(tmp_path / "reports.tgz", reports)
    folder = tmp_path / "xml"
    folder.mkdir()
    for name, data in reports.items():
        (folder / Path(name).name).write_bytes(data)
    assert input_kind(tgz) == "xml-archive" and input_kind(folder) == "xml-folder" and input_kind(folder / "1.xml") == "xml"
    tgz_rows = labeled(tgz, tmp_path / "a.csv")
    assert [r["id"] for r in tgz_rows] == ["CXR1", "CXR10", "CXR2", "CXR3"]  # archive order
    dir_rows = labeled(folder, tmp_path / "b.csv")
    assert [r["id"] for r in dir_rows] == ["CXR1", "CXR2", "CXR3", "CXR10"]  # natural order
    by = {r["id"]: r for r in tgz_rows}
    assert by["CXR1"]["Cardiomegaly"] == "0" and by["CXR1"][NO_FINDING] == "1"
    assert by["CXR10"]["Pneumothorax"] == "1" and by["CXR10"]["Pneumonia"] == "-1"
    assert "invalid XML" in by["CXR2"]["status"] and "no FINDINGS/IMPRESSION" in by["CXR3"]["status"]
    one = labeled(folder / "10.xml", tmp_path / "c.csv")
    assert one == [by["CXR10"]]


def test_unknown_inputs(tmp_path):
    with pytest.raises(CxrkitError, match="no such file or folder"):
        input_kind(tmp_path / "missing.csv")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CxrkitError, match="no .txt or .xml"):
        input_kind(tmp_path / "empty")
    odd = tmp_path / "x.bin"
    odd.write_bytes(b"\x00\x01")
    with pytest.raises(CxrkitError, match="unknown input type"):
        input_kind(odd)


# --- outputs -----------------------------------------------------------------------------------


def test_json_evidence_output(tmp_path):
    src = write_csv(tmp_path / "in.csv", [["id", "text"], ["a", "FINDINGS: No XXXX effusion. IMPRESSION: Mild cardiomegaly."], ["b", ""]])
    out, js = tmp_path / "o.csv", tmp_path / "o.json"
    label_file(src, out, json_out=js, progress=False)
    data = json.loads(js.read_text(encoding="utf-8"))
    assert [d["id"] for d in data] == ["a", "b"]
    a = data[0]
    assert a["labels"]["Cardiomegaly"] == 1 and a["finding_labels"] == "Cardiomegaly"
    for ev in a["evidence"]:
        assert a["text"][ev["start"] : ev["end"]] == ev["text"]
        assert a["text"][ev["sentence"]["start"] : ev["sentence"]["end"]] == ev["sentence"]["text"]
        assert ev["status"] in ("positive", "negative", "uncertain") and ev["rule"]
    eff = next(e for e in a["evidence"] if e["finding"] == "Effusion")
    assert eff["label"] == 0 and eff["trigger"]["text"] == "No" and eff["section"] == "findings"
    assert data[1]["status"] == "empty text" and data[1]["evidence"] == []


def test_empty_input_gives_header_only(tmp_path):
    src = write_csv(tmp_path / "in.csv", [["id", "text"]])
    out, js = tmp_path / "o.csv", tmp_path / "o.json"
    label_file(src, out, json_out=js, progress=False)
    assert out.read_text().splitlines() == [",".join(header("chexpert"))]
    assert json.loads(js.read_text()) == []

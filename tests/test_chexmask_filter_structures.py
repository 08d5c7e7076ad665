"""Per-structure Dice RCA filtering (``filter_csv(structure_thresholds=...)``, ``--structure-threshold``)
and the readers' tolerance of the six per-structure QC columns."""

from __future__ import annotations

import csv

import pytest
from test_chexmask import HEADER, row, write_csv

from cxrkit.cli.main import main
from cxrkit.data.chexmask import (
    STRUCTURE_CHOICES,
    filter_csv,
    find_record,
    iter_records,
    parse_structure_thresholds,
    read_columns,
    structure_dice_column,
    summarize_csv,
)
from cxrkit.errors import CxrkitError

PER_STRUCTURE = [f"Dice RCA ({fam}) {name}" for fam in ("Mean", "Max") for name in ("Right Lung", "Left Lung", "Heart")]
QC_HEADER = HEADER + PER_STRUCTURE


def qc_row(image_id: str, mean: str = "0.9", mx: str = "0.95", rl: str = "0.9", ll: str = "0.9", heart: str = "0.9",
           rl_max: str = "0.95", ll_max: str = "0.95", heart_max: str = "0.95", **cells: str) -> dict[str, str]:
    r = row(image_id, mean, mx, **cells)
    r.update(dict(zip(PER_STRUCTURE, (rl, ll, heart, rl_max, ll_max, heart_max))))
    return r


@pytest.fixture
def qc_csv(tmp_path):
    rows = [
        qc_row("keep.png"),
        qc_row("heart.png", heart="0.55"),
        qc_row("both.png", rl="0.7", heart="0.5"),
        qc_row("overall.png", mean="0.6", heart="0.5"),  # the overall threshold is tested first
        qc_row("noheart.png", heart=""),
        qc_row("edge.png", rl="0.8", heart="0.6", ll="0.1"),  # >= is kept; left lung not thresholded
        qc_row("maxlow.png", heart_max="0.5"),
    ]
    return write_csv(tmp_path / "qc.csv", QC_HEADER, rows)


def ids(path):
    return [r.image_id for r in iter_records(path)]


def test_structure_column_names():
    assert STRUCTURE_CHOICES == ("right_lung", "left_lung", "heart")
    assert [structure_dice_column(s, by) for by in ("mean", "max") for s in STRUCTURE_CHOICES] == PER_STRUCTURE
    with pytest.raises(CxrkitError, match="unknown structure 'lungs'"):
        structure_dice_column("lungs")


def test_parse_structure_thresholds():
    assert parse_structure_thresholds(["right_lung=0.8", "heart = 0.6"]) == {"right_lung": 0.8, "heart": 0.6}
    assert parse_structure_thresholds([]) == {}
    with pytest.raises(CxrkitError, match=r"'lung=0\.5'.*unknown structure 'lung'; expected one of right_lung, left_lung, heart"):
        parse_structure_thresholds(["lung=0.5"])
    with pytest.raises(CxrkitError, match=r"'heart'.*STRUCTURE=VALUE.*right_lung, left_lung, heart"):
        parse_structure_thresholds(["heart"])
    with pytest.raises(CxrkitError, match=r"'heart=abc'.*'abc' is not a number"):
        parse_structure_thresholds(["heart=abc"])
    with pytest.raises(CxrkitError, match=r"'heart=1\.5'.*outside \[0, 1\]"):
        parse_structure_thresholds(["heart=1.5"])
    with pytest.raises(CxrkitError, match=r"outside"):
        parse_structure_thresholds(["heart=nan"])
    with pytest.raises(CxrkitError, match="heart is given twice"):
        parse_structure_thresholds(["heart=0.5", "heart=0.6"])


def test_filter_by_structures_keeps_and_counts_reasons(qc_csv, tmp_path):
    out = tmp_path / "o.csv"
    s = filter_csv(qc_csv, out, structure_thresholds={"right_lung": 0.8, "heart": 0.6})
    assert ids(out) == ["keep.png", "edge.png", "maxlow.png"]
    assert (s.rows, s.kept) == (7, 3)
    assert s.dropped == {
        "heart Dice RCA (Mean) < 0.6": 1,
        "right_lung Dice RCA (Mean) < 0.8; heart Dice RCA (Mean) < 0.6": 1,
        "below threshold": 1,
        "no heart Dice RCA (Mean)": 1,
    }
    assert sum(s.dropped.values()) == s.rows - s.kept
    text = "\n".join(s.lines())
    assert "kept 3 with Dice RCA (Mean) >= 0.7 and right_lung Dice RCA (Mean) >= 0.8 and heart Dice RCA (Mean) >= 0.6" in text
    assert "dropped 1: heart Dice RCA (Mean) < 0.6" in text
    # rows are copied verbatim, extra columns included
    src = qc_csv.read_text().splitlines()
    assert out.read_text().splitlines() == [src[0], src[1], src[6], src[7]]


def test_filter_by_max_family(qc_csv, tmp_path):
    s = filter_csv(qc_csv, tmp_path / "o.csv", by="max", threshold=0.7, structure_thresholds={"heart": 0.6})
    # the Max columns decide: only maxlow.png fails (heart.png's low Mean Heart is not looked at)
    assert (s.kept, s.dropped) == (6, {"heart Dice RCA (Max) < 0.6": 1})
    assert "maxlow.png" not in ids(tmp_path / "o.csv") and "heart.png" in ids(tmp_path / "o.csv")


def test_no_structure_thresholds_is_the_old_behaviour(qc_csv, tmp_path):
    s = filter_csv(qc_csv, tmp_path / "o.csv")
    assert s.dropped == {"below threshold": 1} and s.kept == 6
    assert s.lines()[0].endswith(f"kept 6 with Dice RCA (Mean) >= 0.7 -> {tmp_path / 'o.csv'}")
    assert s.structure_thresholds == {}


def test_missing_per_structure_column_is_a_clear_error(tmp_path):
    plain = write_csv(tmp_path / "plain.csv", HEADER, [row("a.png")])
    out = tmp_path / "o.csv"
    with pytest.raises(CxrkitError, match=r"plain\.csv: no column 'Dice RCA \(Mean\) Heart' for the per-structure"):
        filter_csv(plain, out, structure_thresholds={"heart": 0.6})
    assert not out.exists()
    # only the Mean family present: --by max names the Max column
    mean_only = write_csv(tmp_path / "m.csv", HEADER + PER_STRUCTURE[:3], [qc_row("a.png")])
    with pytest.raises(CxrkitError, match=r"no column 'Dice RCA \(Max\) Right Lung', 'Dice RCA \(Max\) Heart'"):
        filter_csv(mean_only, out, by="max", structure_thresholds={"right_lung": 0.5, "heart": 0.6})
    with pytest.raises(CxrkitError, match="unknown structure 'liver'"):
        filter_csv(mean_only, out, structure_thresholds={"liver": 0.5})
    with pytest.raises(CxrkitError, match="outside"):
        filter_csv(mean_only, out, structure_thresholds={"heart": 2})


def test_bad_per_structure_cell_strict_and_lenient(tmp_path):
    path = write_csv(tmp_path / "b.csv", QC_HEADER, [qc_row("a.png"), qc_row("b.png", heart="high"), qc_row("c.png")])
    out = tmp_path / "o.csv"
    with pytest.raises(CxrkitError, match=r"b\.csv:3: row 'b\.png': Dice RCA \(Mean\) Heart 'high' is not a number"):
        filter_csv(path, out, structure_thresholds={"heart": 0.5})
    assert not out.exists()
    s = filter_csv(path, out, structure_thresholds={"heart": 0.5}, lenient=True)
    assert s.kept == 2 and len(s.errors) == 1 and ":3:" in s.errors[0]
    # not thresholded on heart: the bad cell is not read
    assert filter_csv(path, out, structure_thresholds={"right_lung": 0.5}).kept == 3


def test_readers_tolerate_the_per_structure_columns(tmp_path):
    # extra columns before and after the mask columns: they must not be taken for "Right Lung" etc.
    header = ["Image Index", *PER_STRUCTURE[:3], *HEADER[1:], *PER_STRUCTURE[3:]]
    path = write_csv(tmp_path / "q.csv", header, [qc_row("a.png", mean="0.95", mx="0.97"), qc_row("b.png")])
    cols = read_columns(path)
    assert cols.header[cols.right_lung] == "Right Lung" and cols.header[cols.heart] == "Heart"
    assert cols.header[cols.dice_mean] == "Dice RCA (Mean)" and cols.header[cols.dice_max] == "Dice RCA (Max)"
    recs = list(iter_records(path, validate=True))
    assert [r.dice_mean for r in recs] == [0.95, 0.9] and recs[0].masks()["heart"].any()
    assert find_record(path, "b.png").line == 3
    assert summarize_csv(path)["bad_rows"] == 0
    s = filter_csv(path, tmp_path / "o.csv", structure_thresholds={"left_lung": 0.95})
    assert s.dropped == {"left_lung Dice RCA (Mean) < 0.95": 2}


def test_cli_structure_threshold(qc_csv, tmp_path, capsys):
    out = tmp_path / "o.csv"
    rc = main(["chexmask", "filter", str(qc_csv), "--out", str(out),
               "--structure-threshold", "right_lung=0.8", "--structure-threshold", "heart=0.6"])
    printed = capsys.readouterr().out
    assert rc == 0 and "kept 3" in printed and "dropped 1: heart Dice RCA (Mean) < 0.6" in printed
    with open(out, newline="") as fh:
        assert next(csv.reader(fh)) == QC_HEADER
    rc = main(["chexmask", "filter", str(qc_csv), "--out", str(out), "--structure-threshold", "lungs=0.8"])
    err = capsys.readouterr().err
    assert rc == 2 and "'lungs=0.8'" in err and "right_lung, left_lung, heart" in err
    plain = write_csv(tmp_path / "plain.csv", HEADER, [row("a.png")])
    rc = main(["chexmask", "filter", str(plain), "--out", str(out), "--structure-threshold", "heart=0.6"])
    err = capsys.readouterr().err
    assert rc == 1 and "no column 'Dice RCA (Mean) Heart'" in err and str(plain) in err

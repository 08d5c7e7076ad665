"""CheXmask -> Parquet conversion (cxrkit.warehouse.convert) and DuckDB queries (cxrkit query)."""

from __future__ import annotations

import csv
import gzip
import json
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import cxrkit
from cxrkit.anatomy.measure import measure_masks
from cxrkit.cli.main import main
from cxrkit.data.chexmask import iter_records
from cxrkit.errors import CxrkitError, MissingDependencyError
from cxrkit.io import rle
from cxrkit.warehouse import columns as columns_mod
from cxrkit.warehouse import connect, convert_csv, runs_geometry

SAMPLE = Path(cxrkit.__file__).parent / "demo" / "sample" / "chexmask" / "ChestX-Ray8_sample.csv"
NIH_SAMPLE = Path(cxrkit.__file__).parent / "demo" / "sample" / "nih" / "Data_Entry_2017_v2020.csv.gz"
ORGANS = {"right_lung": "Right Lung", "left_lung": "Left Lung", "heart": "Heart"}
EXAMPLE_SQL = (
    'SELECT c.image_index, c.ctr, c."Dice RCA (Mean)" FROM chexmask c JOIN nih n ON n."Image Index" = c.image_index '
    'WHERE n.Cardiomegaly = 1 AND c.ctr > 0.5 AND c."Dice RCA (Mean)" >= 0.7'
)

csv.field_size_limit(2**31 - 1)


def read_csv_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        return header, [r for r in reader if r]


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)
    return path


def repeated_sample(path: Path, copies: int) -> Path:
    """The bundled sample's rows repeated with unique ids (``<id>#<copy>``)."""
    header, rows = read_csv_rows(SAMPLE)
    out = [[f"{r[0]}#{k}"] + r[1:] for k in range(copies) for r in rows]
    return write_csv(path, header, out)


def read_dataset(folder: Path) -> pa.Table:
    parts = sorted(folder.glob("part-*.parquet"))
    return pa.concat_tables([pq.read_table(p) for p in parts])


# ------------------------------------------------------------------------------------------------
# conversion
# ------------------------------------------------------------------------------------------------
def test_sample_converts_row_for_row(tmp_path: Path) -> None:
    s = convert_csv(SAMPLE, tmp_path, rows_per_file=3, row_group_size=2)
    assert s.complete and not s.skipped and (s.rows, s.parts, s.bad_rows) == (4, 2, 0)
    folder = tmp_path / "ChestX-Ray8_sample"
    assert sorted(p.name for p in folder.iterdir()) == ["_progress.json", "part-00000.parquet", "part-00001.parquet"]
    t = read_dataset(folder).to_pylist()
    header, rows = read_csv_rows(SAMPLE)
    assert len(t) == len(rows)
    for got, row in zip(t, rows):
        src = dict(zip(header, row))
        for name in ("Image Index", "Landmarks", "Right Lung", "Left Lung", "Heart"):
            assert got[name] == src[name]  # strings unchanged
        assert got["Dice RCA (Mean)"] == float(src["Dice RCA (Mean)"])
        assert got["Dice RCA (Max)"] == float(src["Dice RCA (Max)"])
        assert (got["Height"], got["Width"]) == (int(float(src["Height"])), int(float(src["Width"])))
        assert got["dataset"] == "ChestX-Ray8_sample"
        assert got["image_id"] == got["image_index"] == src["Image Index"]
        assert got["qc_pass"] == (float(src["Dice RCA (Mean)"]) >= 0.7)
    assert [r["source_line"] for r in t] == [2, 3, 4, 5]
    # the CSV's columns first, in order, then the derived ones
    assert list(read_dataset(folder).column_names[: len(header)]) == header


def test_derived_columns_equal_decoded_masks_and_measure(tmp_path: Path) -> None:
    convert_csv(SAMPLE, tmp_path)
    rows = read_dataset(tmp_path / "ChestX-Ray8_sample").to_pylist()
    for rec, got in zip(iter_records(SAMPLE), rows):
        masks = {organ: rle.decode(getattr(rec, organ), rec.height, rec.width) for organ in ORGANS}
        for organ, m in masks.items():
            assert got[f"{organ}_area"] == int(np.count_nonzero(m))
            ys, xs = np.nonzero(m)
            assert (got[f"{organ}_x0"], got[f"{organ}_y0"], got[f"{organ}_x1"], got[f"{organ}_y1"]) == (
                xs.min(), ys.min(), xs.max(), ys.max())
        ref = measure_masks(masks["right_lung"], masks["left_lung"], masks["heart"])
        assert got["ctr"] == ref.ctr
        assert (got["heart_width"], got["thorax_width"]) == (ref.heart_width_px, ref.thorax_width_px)


def test_runs_geometry_matches_decode_on_random_masks() -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        h, w = int(rng.integers(1, 9)), int(rng.integers(1, 9))
        mask = rng.random((h, w)) < rng.random()
        starts, lengths = rle.parse_runs(rle.encode(mask), h, w)
        area, box = runs_geometry(starts, lengths, w)
        assert area == int(mask.sum())
        if not mask.any():
            assert box is None
            continue
        ys, xs = np.nonzero(mask)
        assert box == (xs.min(), ys.min(), xs.max(), ys.max())


def test_empty_mask_gives_null_box_and_ctr(tmp_path: Path) -> None:
    header, rows = read_csv_rows(SAMPLE)
    rows[0][header.index("Heart")] = ""
    src = write_csv(tmp_path / "empty_heart.csv", header, rows)
    convert_csv(src, tmp_path / "out")
    got = read_dataset(tmp_path / "out" / "empty_heart").to_pylist()[0]
    assert got["heart_area"] == 0 and got["heart_x0"] is None and got["ctr"] is None and got["heart_width"] == 0


def test_gzip_input_gives_the_same_rows(tmp_path: Path) -> None:
    gz = tmp_path / "ChestX-Ray8_sample.csv.gz"
    gz.write_bytes(gzip.compress(SAMPLE.read_bytes()))
    convert_csv(SAMPLE, tmp_path / "plain")
    convert_csv(gz, tmp_path / "gz")
    assert read_dataset(tmp_path / "gz" / "ChestX-Ray8_sample").equals(read_dataset(tmp_path / "plain" / "ChestX-Ray8_sample"))


def test_resume_after_interruption_writes_every_row_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = repeated_sample(tmp_path / "big.csv", copies=6)  # 24 rows -> 5 parts of <= 5 rows
    full = convert_csv(src, tmp_path / "full", rows_per_file=5, row_group_size=2)
    assert (full.rows, full.parts) == (24, 5)
    expected = read_dataset(tmp_path / "full" / "big")

    # 1. stopped cleanly after 2 parts (max_parts), then resumed
    first = convert_csv(src, tmp_path / "a", rows_per_file=5, row_group_size=2, max_parts=2)
    assert (first.rows, first.parts, first.complete) == (10, 2, False)
    second = convert_csv(src, tmp_path / "a", rows_per_file=5, row_group_size=2)
    assert (second.resumed_at_row, second.new_rows, second.rows, second.complete) == (10, 14, 24, True)
    assert read_dataset(tmp_path / "a" / "big").equals(expected)

    # 2. crashed in the middle of part 3 (after one of its row groups was written)
    calls = {"n": 0}
    real_add = columns_mod.RowBuffer.add

    def crashing_add(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 14:
            raise KeyboardInterrupt("simulated crash")
        return real_add(self, *args, **kwargs)

    monkeypatch.setattr(columns_mod.RowBuffer, "add", crashing_add)
    with pytest.raises(KeyboardInterrupt):
        convert_csv(src, tmp_path / "b", rows_per_file=5, row_group_size=2)
    monkeypatch.setattr(columns_mod.RowBuffer, "add", real_add)
    folder = tmp_path / "b" / "big"
    assert sorted(p.name for p in folder.iterdir()) == ["_progress.json", "part-00000.parquet", "part-00001.parquet"]
    manifest = json.loads((folder / "_progress.json").read_text())
    assert manifest["state"]["rows_consumed"] == 10 and not manifest["state"]["complete"]
    resumed = convert_csv(src, tmp_path / "b", rows_per_file=5, row_group_size=2)
    table = read_dataset(folder)
    assert table.equals(expected)
    ids = table.column("image_id").to_pylist()
    assert len(ids) == len(set(ids)) == 24
    assert resumed.resumed_at_row == 10

    # 3. a finished source is skipped; other options are refused unless --overwrite
    again = convert_csv(src, tmp_path / "b", rows_per_file=5)
    assert again.skipped and again.rows == 24 and again.new_rows == 0
    partial = convert_csv(src, tmp_path / "c", rows_per_file=5, max_parts=1)
    with pytest.raises(CxrkitError, match="rows_per_file"):
        convert_csv(src, tmp_path / "c", rows_per_file=7)
    redo = convert_csv(src, tmp_path / "c", rows_per_file=7, overwrite=True)
    assert partial.rows == 5 and (redo.rows, redo.parts) == (24, 4)


def _corrupt_csv(tmp_path: Path) -> tuple[Path, dict[int, str]]:
    header, rows = read_csv_rows(SAMPLE)
    rows = [[f"{r[0]}#{k}"] + r[1:] for k in range(3) for r in rows]  # 12 rows, lines 2..13
    rows[2] = rows[2][:-1]  # line 4: a field short
    rows[5][header.index("Heart")] = "12 5 7"  # line 7: odd RLE
    rows[9][header.index("Dice RCA (Mean)")] = "abc"  # line 11: not a number
    rows[10][header.index("Landmarks")] = "1,2,3"  # line 12: bad landmarks
    return write_csv(tmp_path / "corrupt.csv", header, rows), {4: "fields", 7: "Heart", 11: "abc", 12: "Landmarks"}


def test_bad_row_raises_naming_file_and_line(tmp_path: Path) -> None:
    src, _ = _corrupt_csv(tmp_path)
    with pytest.raises(CxrkitError, match=r"corrupt\.csv:4: .*fields"):
        convert_csv(src, tmp_path / "out")
    rc = main(["chexmask", "to-parquet", str(src), "--out", str(tmp_path / "out"), "--quiet"])
    assert rc == 1  # a bad row of an input file


def test_lenient_records_bad_rows_once_across_restarts(tmp_path: Path) -> None:
    src, bad = _corrupt_csv(tmp_path)
    first = convert_csv(src, tmp_path / "out", lenient=True, rows_per_file=2, max_parts=2)
    assert not first.complete
    s = convert_csv(src, tmp_path / "out", lenient=True, rows_per_file=2)
    assert s.complete and (s.rows, s.bad_rows) == (8, 4)
    with open(tmp_path / "out" / "corrupt" / "errors.csv", newline="") as fh:
        errors = list(csv.DictReader(fh))
    assert [int(e["line"]) for e in errors] == sorted(bad)
    for e in errors:
        assert bad[int(e["line"])] in e["reason"] and e["source"] == str(src)
    lines = read_dataset(tmp_path / "out" / "corrupt").column("source_line").to_pylist()
    assert lines == [n for n in range(2, 14) if n not in bad]


def test_cli_to_parquet_and_duplicate_names(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    rc = main(["chexmask", "to-parquet", str(SAMPLE), "--out", str(tmp_path / "pq"), "--quiet", "--rows-per-file", "2"])
    assert rc == 0
    assert "4 rows in 2 parts" in capsys.readouterr().out
    rc = main(["chexmask", "to-parquet", str(SAMPLE), "--out", str(tmp_path / "pq"), "--quiet", "--rows-per-file", "2"])
    assert rc == 0 and "skipped" in capsys.readouterr().out
    gz = tmp_path / "ChestX-Ray8_sample.csv.gz"
    gz.write_bytes(gzip.compress(SAMPLE.read_bytes()))
    rc = main(["chexmask", "to-parquet", str(SAMPLE), str(gz), "--out", str(tmp_path / "x"), "--quiet"])
    assert rc == 2 and "would both be written" in capsys.readouterr().err


def test_header_name_clashing_with_a_derived_column_is_renamed(tmp_path: Path) -> None:
    header, rows = read_csv_rows(SAMPLE)
    header, rows = header + ["Dataset"], [r + ["ChestX-Ray8"] for r in rows]
    convert_csv(write_csv(tmp_path / "withds.csv", header, rows), tmp_path / "out")
    t = read_dataset(tmp_path / "out" / "withds")
    assert t.column("Dataset (csv)").to_pylist() == ["ChestX-Ray8"] * 4
    assert t.column("dataset").to_pylist() == ["withds"] * 4


# ------------------------------------------------------------------------------------------------
# query
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sample_parquet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("warehouse")
    convert_csv(SAMPLE, out)
    return out


def expected_cardiomegaly(csv_path: Path, nih_path: Path) -> list[str]:
    """The example query computed without DuckDB: full mask decode + measure_masks + NIH labels."""
    from cxrkit.data.nih import read_metadata

    nih = read_metadata(nih_path).set_index("Image Index")
    out = []
    for rec in iter_records(csv_path):
        name = rec.image_id.rsplit("/", 1)[-1]
        if name not in nih.index or nih.loc[name, "Cardiomegaly"] != 1:
            continue
        ctr = measure_masks(*(rec.mask(o) for o in ORGANS)).ctr
        if ctr > 0.5 and rec.dice_mean is not None and rec.dice_mean >= 0.7:
            out.append(name)
    return sorted(out)


def test_query_cli_joins_nih(sample_parquet: Path, capsys: pytest.CaptureFixture) -> None:
    rc = main(["query", EXAMPLE_SQL, "--data", str(sample_parquet), "--nih-metadata", str(NIH_SAMPLE)])
    assert rc == 0
    rows = list(csv.DictReader(capsys.readouterr().out.splitlines()))
    assert sorted(r["image_index"] for r in rows) == expected_cardiomegaly(SAMPLE, NIH_SAMPLE) == ["00016037_000.png"]
    assert float(rows[0]["ctr"]) > 0.5 and float(rows[0]["Dice RCA (Mean)"]) >= 0.7


def test_query_outputs_and_formats(sample_parquet: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    sql = "SELECT image_index, ctr, qc_pass, heart_area FROM chexmask ORDER BY image_index"
    for name in ("r.parquet", "r.csv", "r.json"):
        assert main(["query", sql, "--data", str(sample_parquet), "--out", str(tmp_path / name)]) == 0
    assert [p.name for p in sorted(tmp_path.iterdir())] == ["r.csv", "r.json", "r.parquet"]  # no temporaries left
    parquet = pq.read_table(tmp_path / "r.parquet").to_pylist()
    assert len(parquet) == 4 and parquet[0]["image_index"] == "00004594_003.png"
    with open(tmp_path / "r.csv", newline="") as fh:
        assert [r["image_index"] for r in csv.DictReader(fh)] == [r["image_index"] for r in parquet]
    assert json.loads((tmp_path / "r.json").read_text()) == parquet
    capsys.readouterr()
    assert main(["query", sql, "--data", str(sample_parquet), "--format", "json", "--limit", "2"]) == 0
    assert json.loads(capsys.readouterr().out) == parquet[:2]
    assert main(["query", sql, "--data", str(sample_parquet), "--format", "table"]) == 0
    out = capsys.readouterr().out
    assert "00004594_003.png" in out and "(4 rows)" in out


def test_query_errors(sample_parquet: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["query", "SELEC 1", "--data", str(sample_parquet)]) == 2
    err = capsys.readouterr().err
    assert "SQL error" in err and "SELEC" in err
    assert main(["query", "SELECT no_such_column FROM chexmask", "--data", str(sample_parquet)]) == 2
    assert "no_such_column" in capsys.readouterr().err
    assert main(["query", "SELECT 1", "--data", str(tmp_path / "missing")]) == 2
    assert "no such folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["query", "SELECT 1", "--data", str(tmp_path / "empty")]) == 2
    assert "no Parquet files" in capsys.readouterr().err


def test_connect_python_api(sample_parquet: Path) -> None:
    con = connect([sample_parquet])
    n, areas = con.sql("SELECT count(*), sum(heart_area) FROM chexmask").fetchall()[0]
    expected = sum(rle.area(r.heart, r.height, r.width) for r in iter_records(SAMPLE))
    assert (n, areas) == (4, expected)


def test_missing_dependencies_give_install_hint(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, sample_parquet: Path) -> None:
    monkeypatch.setitem(sys.modules, "duckdb", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'cxrkit\[scale\]'"):
        connect([sample_parquet])
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'cxrkit\[scale\]'"):
        convert_csv(SAMPLE, tmp_path)


# ------------------------------------------------------------------------------------------------
# real data
# ------------------------------------------------------------------------------------------------
@pytest.mark.realdata
def test_real_chexmask_rows_convert_and_join_nih(shared, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    subsets = shared("chexmask", "subsets")
    nih = shared("nih", "Data_Entry_2017_v2020.csv.gz")
    sources = sorted(p for p in subsets.glob("*.csv") if not p.name.endswith("_name_mapping.csv"))
    assert len(sources) == 18
    out = tmp_path / "pq"
    rc = main(["chexmask", "to-parquet", *map(str, sources), "--out", str(out), "--quiet"])
    assert rc == 0
    capsys.readouterr()
    expected = {p.name[: -len(".csv")]: sum(1 for _ in iter_records(p)) for p in sources}
    con = connect([out], nih_metadata=nih)
    got = dict(con.sql("SELECT dataset, count(*) FROM chexmask GROUP BY dataset").fetchall())
    assert got == expected and sum(got.values()) == 915  # 305 HybridGNet rows + 2 x 305 physician rows
    swapped = con.sql("SELECT count(*) FROM chexmask WHERE dataset = 'Padchest' AND dice_swapped").fetchall()[0][0]
    assert swapped == 30
    bad = con.sql('SELECT count(*) FROM chexmask WHERE "Dice RCA (Max)" < "Dice RCA (Mean)"').fetchall()[0][0]
    assert bad == 0
    # the example query on the real ChestX-ray8 rows equals the same selection done by decoding masks
    rc = main(["query", EXAMPLE_SQL + " AND c.dataset = 'ChestX-Ray8'", "--data", str(out), "--nih-metadata", str(nih)])
    assert rc == 0
    rows = list(csv.DictReader(capsys.readouterr().out.splitlines()))
    assert sorted(r["image_index"] for r in rows) == expected_cardiomegaly(subsets / "ChestX-Ray8.csv", nih)
    assert len(rows) >= 1

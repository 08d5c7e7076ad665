"""Property-based tests (Hypothesis) of the CSV readers: CheXmask (:mod:`cxrkit.data.chexmask`) and NIH
metadata / boxes (:mod:`cxrkit.data.nih`).

Valid files written in random ways (quoting, column order, CRLF, UTF-8 BOM, gzip) read back exactly; the
same files damaged (cut at any byte, plain or gzip; Latin-1, NUL, random bytes or a stray quote inserted;
a cell replaced by junk) either read into valid records / a valid table or raise ``CxrkitError`` naming
the file, in one line. In lenient mode every CSV row comes back exactly once, as a record or a
``RowError`` (nothing silently skipped).
"""

from __future__ import annotations

import csv
import gzip
import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from cxrkit.data.chexmask import (
    ID_COLUMNS,
    CheXmaskRecord,
    RowError,
    find_record,
    iter_records,
    read_columns,
    read_name_mapping,
    summarize_csv,
)
from cxrkit.data.nih import CANONICAL_COLUMNS, read_boxes, read_metadata
from cxrkit.errors import CxrkitError
from cxrkit.findings import FINDINGS, NO_FINDING
from cxrkit.io.landmarks import format_landmarks
from cxrkit.io.rle import encode

N = settings().max_examples  # from the profile loaded in conftest.py (default / long)


def fuzz(examples: int) -> settings:
    # The module's folder is shared on purpose across the examples of one test (each writes its own file).
    return settings(max_examples=examples, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz_csv")


# --- writing files ---------------------------------------------------------------------------------------
QUOTING = [csv.QUOTE_MINIMAL, csv.QUOTE_ALL, csv.QUOTE_NONNUMERIC]


@st.composite
def layouts(draw):
    """How a table is written: quoting, line ends, BOM, gzip."""
    return {
        "quoting": draw(st.sampled_from(QUOTING)),
        "crlf": draw(st.booleans()),
        "bom": draw(st.booleans()),
        "gzip": draw(st.booleans()),
    }


def table_bytes(header: list[str], rows: list[list[str]], layout: dict) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, quoting=layout["quoting"], lineterminator="\r\n" if layout["crlf"] else "\n")
    writer.writerow(header)
    writer.writerows(rows)
    return ("\ufeff" if layout["bom"] else "").encode() + out.getvalue().encode("utf-8")


def write(folder: Path, name: str, data: bytes, gz: bool) -> Path:
    path = folder / (name + (".csv.gz" if gz else ".csv"))
    path.write_bytes(gzip.compress(data, mtime=0) if gz else data)
    return path


@st.composite
def damage(draw, data: bytes, gz: bool):
    """Damage a file's bytes: cut, insert Latin-1 / NUL / random bytes / a quote, or overwrite bytes.
    For gzip files the cut and the overwrite hit the compressed bytes (a .gz cut short)."""
    how = draw(st.sampled_from(["none", "cut", "latin1", "nul", "quote", "bytes", "overwrite"]))
    raw = gzip.compress(data, mtime=0) if gz else data
    target = raw if how in ("cut", "overwrite") else data
    n = len(target)
    i = draw(st.integers(0, max(0, n - 1)))
    if how == "cut":
        target = target[:i]
    elif how == "overwrite":
        b = bytearray(target)
        for _ in range(draw(st.integers(1, 3))):
            b[draw(st.integers(0, n - 1))] = draw(st.integers(0, 255))
        target = bytes(b)
    elif how != "none":
        extra = {"latin1": "é,ü".encode("latin-1"), "nul": b"\0", "quote": b'"'}.get(how) or draw(st.binary(min_size=1, max_size=8))
        target = target[:i] + extra + target[i:]
    if how in ("cut", "overwrite"):
        return how, target
    return how, gzip.compress(target, mtime=0) if gz else target


def check_error(exc: CxrkitError, path: Path) -> None:
    msg = str(exc)
    assert str(path) in msg and "\n" not in msg, msg


# --- CheXmask -------------------------------------------------------------------------------------------------
points_text = format_landmarks(np.arange(240, dtype=float).reshape(120, 2) % 97)
dice = st.one_of(st.floats(0, 1), st.none(), st.just(float("nan")))


@st.composite
def chexmask_rows(draw):
    """A CheXmask header (random ID column, column order, optional columns) and valid rows with their masks."""
    id_name = draw(st.sampled_from(ID_COLUMNS))
    optional = draw(st.lists(st.sampled_from(["Dice RCA (Mean)", "Dice RCA (Max)", "Height", "Width", "Dataset"]), unique=True))
    header = [id_name, "Landmarks", "Right Lung", "Left Lung", "Heart", *optional]
    order = draw(st.permutations(range(len(header))))
    header = [header[i] for i in order]
    sized = "Height" in header and "Width" in header
    rows, expected = [], []
    for k in range(draw(st.integers(0, 5))):
        h, w = (draw(st.integers(1, 24)), draw(st.integers(1, 24))) if sized else (1024, 1024)
        small = (min(h, 24), min(w, 24))
        masks = {organ: np.zeros((h, w), bool) for organ in ("right_lung", "left_lung", "heart")}
        for m in masks.values():
            m[: small[0], : small[1]] = draw(hnp.arrays(bool, small))
        dm, dx = draw(dice), draw(dice)
        cells = {
            id_name: draw(st.sampled_from([f"{k:08d}_000.png", f"dir/sub {k}/img,{k}.jpg", f' "q{k}" ', f"é{k}\u4e2d"])),
            "Landmarks": points_text,
            "Right Lung": encode(masks["right_lung"]),
            "Left Lung": encode(masks["left_lung"]),
            "Heart": encode(masks["heart"]),
            "Dice RCA (Mean)": "" if dm is None else repr(dm),
            "Dice RCA (Max)": "" if dx is None else repr(dx),
            "Height": str(h) if draw(st.booleans()) else f"{h}.0",
            "Width": str(w),
            "Dataset": draw(st.sampled_from(["", "NIH", "a,b"])),
        }
        rows.append([cells[c] for c in header])
        expected.append((cells, masks, h, w))
    return id_name, header, rows, expected


@fuzz(N)
@given(chexmask_rows(), layouts())
def test_chexmask_valid_files_read_back_exactly(folder, table, layout):
    id_name, header, rows, expected = table
    path = write(folder, "valid", table_bytes(header, rows, layout), layout["gzip"])
    cols = read_columns(path)
    assert cols.id_name == id_name and cols.header == tuple(header)
    records = list(iter_records(path, validate=True))
    assert len(records) == len(expected)
    for rec, (cells, masks, h, w) in zip(records, expected):
        assert isinstance(rec, CheXmaskRecord) and rec.source == str(path)
        assert rec.image_id == cells[id_name].strip() and (rec.height, rec.width) == (h, w)
        got = {k: rec.dice(k) for k in ("mean", "max")}
        want = {k: cells[f"Dice RCA ({k.capitalize()})"] if f"Dice RCA ({k.capitalize()})" in header else "" for k in ("mean", "max")}
        want = {k: None if v in ("", "nan") else float(v) for k, v in want.items()}
        if want["mean"] is not None and want["max"] is not None and want["max"] < want["mean"]:
            want = {"mean": want["max"], "max": want["mean"]}  # the Max/Mean swap repair
        assert got == want
        for organ, m in masks.items():
            np.testing.assert_array_equal(rec.mask(organ), m)
        assert find_record(path, rec.image_id).line == rec.line
    summary = summarize_csv(path)
    assert summary["rows"] == len(expected) and summary["bad_rows"] == 0


def _csv_rows(data: bytes) -> int | None:
    """Rows (non-blank, after the header) Python's csv module sees in valid UTF-8 text; None otherwise."""
    try:
        text = data.decode("utf-8-sig")
        rows = [r for r in csv.reader(io.StringIO(text, newline="")) if r]
    except (UnicodeDecodeError, csv.Error):
        return None
    return max(0, len(rows) - 1)


@st.composite
def chexmask_files(draw):
    _, header, rows, _ = draw(chexmask_rows())
    layout = draw(layouts())
    data = table_bytes(header, rows, layout)
    if rows and draw(st.booleans()):  # one cell replaced by junk
        junk = draw(st.sampled_from(["", "x", "nan", "-1", "1e400", "1e300", "99999999999999999999", "1 2 3", "0 5", "\0", "é"]) | st.text(max_size=6))
        r, c = draw(st.integers(0, len(rows) - 1)), draw(st.integers(0, len(header) - 1))
        rows = [list(x) for x in rows]
        rows[r][c] = junk
        data = table_bytes(header, rows, layout)
    how, damaged = draw(damage(data, layout["gzip"]))
    return how, damaged, layout["gzip"]


@fuzz(2 * N)
@given(chexmask_files(), st.booleans(), st.booleans())
def test_chexmask_damaged_files_read_or_raise(folder, case, lenient, validate):
    how, data, gz = case
    path = write(folder, "damaged", data, gz)
    try:
        items = list(iter_records(path, lenient=lenient, validate=validate))
    except CxrkitError as exc:
        check_error(exc, path)
        items = None
    if items is not None:
        for it in items:
            assert it.source == str(path)
            if isinstance(it, RowError):
                assert lenient and "\n" not in it.message
            else:
                assert it.height >= 1 and it.width >= 1 and isinstance(it.image_id, str) and it.image_id
                for organ in ("right_lung", "left_lung", "heart"):
                    try:
                        m = it.mask(organ)
                        assert m.shape == (it.height, it.width)
                    except CxrkitError as exc:
                        assert not validate, exc  # a validated row decodes
                        check_error(exc, path)
        if lenient and not gz:  # every CSV row comes back exactly once, as a record or a RowError
            rows = _csv_rows(data)
            if rows is not None:
                assert len(items) == rows, (how, len(items), rows)
    for fn in (read_columns, lambda p: summarize_csv(p, lenient=True)):
        try:
            fn(path)
        except CxrkitError as exc:
            check_error(exc, path)


@fuzz(N)
@given(st.lists(st.tuples(st.text(max_size=8), st.text(max_size=8)), max_size=4), layouts(), st.data())
def test_name_mapping_read_or_raise(folder, pairs, layout, data):
    raw = table_bytes(["Original", "New"], [list(p) for p in pairs], layout)
    how, damaged = data.draw(damage(raw, layout["gzip"]))
    path = write(folder, "mapping", damaged, layout["gzip"])
    try:
        mapping = read_name_mapping(path)
    except CxrkitError as exc:
        check_error(exc, path)
        return
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in mapping.items())


# --- NIH metadata -----------------------------------------------------------------------------------------------
H_NIH = ["Image Index", "Finding Labels", "Follow-up #", "Patient ID", "Patient Age", "Patient Gender", "View Position",
         "OriginalImage[Width", "Height]", "OriginalImagePixelSpacing[x", "y]"]
H_KAGGLE = ["Image Index", "Finding Labels", "Follow-up #", "Patient ID", "Patient Age", "Patient Gender", "View Position",
            "OriginalImageWidth", "OriginalImageHeight", "OriginalImagePixelSpacing_x", "OriginalImagePixelSpacing_y"]


@st.composite
def nih_tables(draw):
    fmt = draw(st.sampled_from(["2017", "v2020", "kaggle"]))
    header = list(H_KAGGLE if fmt == "kaggle" else H_NIH) + ([""] if fmt == "2017" else [])
    rows, expected = [], []
    for k in range(draw(st.integers(1, 6))):  # v2020 vs 2017 is told from the first age: at least one row
        findings = draw(st.lists(st.sampled_from(FINDINGS), unique=True, max_size=3))
        labels = "|".join(findings) if findings else ("No_Finding" if fmt == "kaggle" else NO_FINDING)
        age_years = draw(st.integers(0, 120))
        if fmt == "v2020":
            age_text, age = str(age_years), float(age_years)
        else:
            unit = draw(st.sampled_from(["Y", "M", "D"]))
            age_text, age = f"{age_years:03d}{unit}", age_years * {"Y": 1.0, "M": 1 / 12, "D": 1 / 365.25}[unit]
        width, height = draw(st.integers(1, 5000)), draw(st.integers(1, 5000))
        sx, sy = draw(st.floats(0.01, 1.0)), draw(st.floats(0.01, 1.0))
        row = [f"{k:08d}_{k % 7:03d}.png", labels, f"{k % 7:03d}", f"{k:08d}", age_text, draw(st.sampled_from("MF")),
               draw(st.sampled_from(["PA", "AP"])), str(width), str(height), repr(sx), repr(sy)]
        rows.append(row + ([""] if fmt == "2017" else []))
        expected.append({"findings": findings, "age": age, "width": width, "height": height, "sx": sx, "sy": sy, "id": k})
    return fmt, header, rows, expected


@fuzz(N)
@given(nih_tables(), layouts())
def test_nih_valid_files_read_back_exactly(folder, table, layout):
    fmt, header, rows, expected = table
    path = write(folder, "nih", table_bytes(header, rows, layout), layout["gzip"])
    df = read_metadata(path)
    assert df.attrs["format"] == fmt and len(df) == len(expected)
    for i, e in enumerate(expected):
        assert df["Patient Age"][i] == pytest.approx(e["age"])
        assert (df["Width"][i], df["Height"][i], df["Patient ID"][i]) == (e["width"], e["height"], e["id"])
        assert df["PixelSpacing_x"][i] == round(e["sx"], 6) and df["PixelSpacing_y"][i] == round(e["sy"], 6)
        assert df["Finding Labels"][i] == ("|".join(e["findings"]) or NO_FINDING)
        assert [f for f in FINDINGS if df[f][i] == 1.0] == [f for f in FINDINGS if f in e["findings"]]


def check_nih_frame(df: pd.DataFrame) -> None:
    assert list(df.columns) == list(CANONICAL_COLUMNS) + list(FINDINGS)
    assert df["Patient Gender"].isin(["M", "F"]).all()
    assert np.isfinite(df["Patient Age"]).all() and np.isfinite(df[["PixelSpacing_x", "PixelSpacing_y"]]).all().all()
    for c in ("Follow-up #", "Patient ID", "Width", "Height"):
        assert df[c].dtype.kind == "i", c
    for i, labels in enumerate(df["Finding Labels"]):
        names = [] if labels == NO_FINDING else labels.split("|")
        assert [f for f in FINDINGS if df[f].iloc[i] == 1.0] == [f for f in FINDINGS if f in names]


@st.composite
def nih_files(draw):
    _, header, rows, _ = draw(nih_tables())
    layout = draw(layouts())
    if draw(st.booleans()):  # one cell replaced by junk
        junk = draw(st.sampled_from(["", "x", "nan", "inf", "-inf", "1.5", "1e400", "99999999999999999999", "058X", "Fracture", "m", "\0"]) | st.text(max_size=6))
        r, c = draw(st.integers(0, len(rows) - 1)), draw(st.integers(0, 10))
        rows = [list(x) for x in rows]
        rows[r][c] = junk
    how, damaged = draw(damage(table_bytes(header, rows, layout), layout["gzip"]))
    return how, damaged, layout["gzip"]


@fuzz(2 * N)
@given(nih_files())
def test_nih_damaged_files_read_or_raise(folder, case):
    how, data, gz = case
    path = write(folder, "nih_damaged", data, gz)
    try:
        df = read_metadata(path)
    except CxrkitError as exc:
        check_error(exc, path)
        return
    check_nih_frame(df)


@st.composite
def box_files(draw):
    rows = []
    for k in range(draw(st.integers(0, 5))):
        vals = [repr(draw(st.floats(0, 1024))) for _ in range(4)]
        rows.append([f"{k:08d}_000.png", draw(st.sampled_from([*FINDINGS, "Infiltrate"])), *vals, "", "", ""])
    if rows and draw(st.booleans()):
        r, c = draw(st.integers(0, len(rows) - 1)), draw(st.integers(0, 5))
        rows[r][c] = draw(st.sampled_from(["", "x", "nan", "inf", "1e400", "Fracture"]) | st.text(max_size=5))
    layout = draw(layouts())
    header = ["Image Index", "Finding Label", "Bbox [x", "y", "w", "h]", "", "", ""]
    how, damaged = draw(damage(table_bytes(header, rows, layout), layout["gzip"]))
    return how, damaged, layout["gzip"]


@fuzz(N)
@given(box_files())
def test_nih_boxes_read_or_raise(folder, case):
    how, data, gz = case
    path = write(folder, "boxes", data, gz)
    try:
        df = read_boxes(path)
    except CxrkitError as exc:
        check_error(exc, path)
        return
    assert list(df.columns) == ["Image Index", "Finding", "x", "y", "w", "h"]
    assert df["Finding"].isin(FINDINGS).all()
    assert np.isfinite(df[["x", "y", "w", "h"]].to_numpy(dtype=float)).all()


# --- cases the fuzzing found -------------------------------------------------------------------------------------
GOOD_NIH = "00000001_000.png,Cardiomegaly,000,00000001,058Y,M,PA,2682,2749,0.143,0.143\n"


@pytest.mark.parametrize(
    "data, gz, message",
    [
        ((",".join(H_NIH) + ",\n" + GOOD_NIH).encode() + "é".encode("latin-1") + b"\n", False,
         r"line 3: byte 0xe9 \(column 1\) is not valid UTF-8"),
        (gzip.compress((",".join(H_NIH) + ",\n" + GOOD_NIH * 50).encode())[:-20], True, "the gzip stream ends early"),
        (gzip.compress((",".join(H_NIH) + ",\n" + GOOD_NIH).encode())[:-4] + b"\1\2\3\4", True, "unreadable"),
        ((",".join(H_NIH) + ",\n" + GOOD_NIH.replace(",000,", ",1.5,")).encode(), False, "Follow-up # '1.5' is not a finite integer"),
        ((",".join(H_NIH) + ",\n" + GOOD_NIH.replace("2682", "1e400")).encode(), False, "Width '1e400' is not a finite integer"),
        ((",".join(H_NIH) + ",\n" + GOOD_NIH.replace("2682", "99999999999999999999")).encode(), False, "not a finite integer"),
        ((",".join(H_NIH) + ",\n" + GOOD_NIH.replace(",0.143\n", ",inf\n")).encode(), False, "PixelSpacing_y 'inf' is not a finite number"),
    ],
)
def test_nih_unreadable_bytes_and_bad_numbers(tmp_path, data, gz, message):
    path = tmp_path / ("m.csv.gz" if gz else "m.csv")
    path.write_bytes(data)
    with pytest.raises(CxrkitError, match=message) as info:
        read_metadata(path)
    check_error(info.value, path)


def test_nih_bom_header_is_read(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbf" + (",".join(H_NIH) + ",\n" + GOOD_NIH).encode())
    assert read_metadata(path)["Width"].tolist() == [2682]  # used to be "unrecognised NIH metadata header"
    boxes = tmp_path / "boxes.csv"
    boxes.write_bytes(b"\xef\xbb\xbfImage Index,Finding Label,Bbox [x,y,w,h],,,\n00000001_000.png,Mass,1,2,3,4\n")
    assert read_boxes(boxes)["w"].tolist() == [3.0]


def test_nih_boxes_refuse_non_finite(tmp_path):
    boxes = tmp_path / "boxes.csv"
    boxes.write_text("Image Index,Finding Label,Bbox [x,y,w,h],,,\n00000001_000.png,Mass,nan,2,3,4\n")
    with pytest.raises(CxrkitError, match=r"boxes.csv: line 2: bad box row .*non-finite"):
        read_boxes(boxes)


@pytest.mark.parametrize(
    "tail, gz, message",
    [
        ("é".encode("latin-1"), False, r"line 3: byte 0xe9 \(column 1\) is not valid UTF-8"),
        (b"", True, "the gzip stream ends early"),
    ],
)
def test_chexmask_unreadable_bytes_raise_even_when_lenient(tmp_path, tail, gz, message):
    header = "Image Index,Landmarks,Right Lung,Left Lung,Heart\n"
    row = f'a.png,"{points_text}",1 1,1 1,1 1\n'
    data = (header + row).encode() + tail + row.encode() * 200
    path = tmp_path / ("c.csv.gz" if gz else "c.csv")
    path.write_bytes(gzip.compress(data)[:-30] if gz else data)
    for lenient in (False, True):
        with pytest.raises(CxrkitError, match=message) as info:
            list(iter_records(path, lenient=lenient))
        check_error(info.value, path)
    if not gz:
        with pytest.raises(CxrkitError, match="not valid UTF-8"):
            read_columns(tmp_path / _latin1_header(tmp_path))


def _latin1_header(tmp_path: Path) -> str:
    (tmp_path / "h.csv").write_bytes("Image Index,Landmarks,Right Lung,Left Lung,Heart,Notes é\n".encode("latin-1"))
    return "h.csv"


def test_name_mapping_short_row(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text("Original,New\nimages/a.png\n")
    with pytest.raises(CxrkitError, match=r"m.csv:2: expected 2 fields Original,New"):
        read_name_mapping(path)


def test_chexmask_header_with_an_open_quote_gives_a_one_line_error(tmp_path):
    """Found by the long campaign: a quote inserted before the header pulls the next lines into one header
    cell, and the 'no image-id column' message printed them, newlines included."""
    path = tmp_path / "q.csv"
    row = f'00000000_000.png,"{points_text}",1 1,1 1,1 1\n'
    path.write_text('"Image Index,Landmarks,Right Lung,Left Lung,Heart\n' + row * 50)
    for fn in (read_columns, lambda p: list(iter_records(p, lenient=True))):
        with pytest.raises(CxrkitError, match="no image-id column") as info:
            fn(path)
        check_error(info.value, path)
        assert len(str(info.value)) < 1000
    nih = tmp_path / "n.csv"
    nih.write_text('"' + ",".join(H_NIH) + ",\n" + GOOD_NIH * 200)
    with pytest.raises(CxrkitError, match="unrecognised NIH metadata header") as info:
        read_metadata(nih)
    check_error(info.value, nih)
    assert len(str(info.value)) < 1000

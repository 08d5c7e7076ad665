"""CheXmask CSV reader: every header/cell quirk, bad rows, filtering, NIH join, streaming memory, real files."""

from __future__ import annotations

import csv
import gzip
import io
import logging
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import shared_path

from cxrkit.data.chexmask import (
    ID_COLUMNS,
    NihJoined,
    RowError,
    dice_reject_reason,
    filter_csv,
    find_record,
    iter_chunks,
    iter_records,
    join_nih,
    mask_paths,
    read_columns,
    read_name_mapping,
    records_frame,
    safe_filename,
    summarize_csv,
    write_masks,
)
from cxrkit.errors import CxrkitError
from cxrkit.io.landmarks import format_landmarks, organ_masks
from cxrkit.io.rle import decode, encode
from cxrkit.viz import render_overlay

HEADER = ["Image Index", "Dice RCA (Mean)", "Dice RCA (Max)", "Landmarks", "Left Lung", "Right Lung", "Heart", "Height", "Width"]


def _ellipse(cx, cy, rx, ry, n):
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], axis=1).round()


def synthetic_points(h: int, w: int) -> np.ndarray:
    """120 landmarks (right lung on the image left, left lung on the right, heart between)."""
    return np.concatenate(
        [
            _ellipse(w * 0.3, h * 0.45, w * 0.15, h * 0.3, 44),
            _ellipse(w * 0.7, h * 0.45, w * 0.15, h * 0.3, 50),
            _ellipse(w * 0.52, h * 0.65, w * 0.12, h * 0.12, 26),
        ]
    )


def synthetic_cells(h: int = 40, w: int = 32, landmarks: str | None = None) -> dict[str, str]:
    pts = synthetic_points(h, w)
    masks = organ_masks(pts, h, w)
    return {
        "Landmarks": landmarks if landmarks is not None else format_landmarks(pts),
        "Right Lung": encode(masks["right_lung"]),
        "Left Lung": encode(masks["left_lung"]),
        "Heart": encode(masks["heart"]),
        "Height": str(h),
        "Width": str(w),
    }


def write_csv(path: Path, header: list[str], rows: list[dict[str, str]], gz: bool = False) -> Path:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([row.get(h, "") for h in header])
    data = buf.getvalue().encode("utf-8")
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def row(image_id: str, mean="0.8", mx="0.9", **cells) -> dict[str, str]:
    r = {"Image Index": image_id, "Dice RCA (Mean)": mean, "Dice RCA (Max)": mx}
    r.update(synthetic_cells())
    r.update(cells)
    return r


@pytest.fixture
def small_csv(tmp_path) -> Path:
    rows = [row("a.png", "0.95", "0.97"), row("b.png", "0.65", "0.75"), row("c.png", "0.70", "0.80")]
    return write_csv(tmp_path / "small.csv", HEADER, rows)


# --- header -------------------------------------------------------------------------------------
@pytest.mark.parametrize("id_name", ["Image Index", "Path", "dicom_id", "image_id", "ImageID", "Image", "filename", "id"])
def test_every_id_column_name(tmp_path, id_name):
    header = [id_name] + HEADER[1:]
    r = row("x/y.jpg")
    r[id_name] = r.pop("Image Index")
    path = write_csv(tmp_path / "t.csv", header, [r])
    assert read_columns(path).id_name == id_name
    (rec,) = iter_records(path)
    assert rec.image_id == "x/y.jpg"
    assert id_name in ID_COLUMNS


def test_id_column_preference_and_override(tmp_path):
    header = ["Path", "ImageID"] + HEADER[1:]
    r = row("ignored")
    r.update({"Path": "p.jpg", "ImageID": "i.jpg"})
    path = write_csv(tmp_path / "t.csv", header, [r])
    assert next(iter_records(path)).image_id == "p.jpg"  # Path is preferred over ImageID
    assert next(iter_records(path, id_column="ImageID")).image_id == "i.jpg"
    with pytest.raises(CxrkitError, match="no column 'nope'"):
        read_columns(path, id_column="nope")


def test_unknown_id_column_names_file_and_expected(tmp_path):
    path = write_csv(tmp_path / "t.csv", ["Name"] + HEADER[1:], [])
    with pytest.raises(CxrkitError, match=r"t\.csv: no image-id column; expected one of Image Index, Path"):
        read_columns(path)


def test_missing_required_column(tmp_path):
    path = write_csv(tmp_path / "t.csv", [h for h in HEADER if h != "Heart"], [])
    with pytest.raises(CxrkitError, match="missing column.*Heart"):
        list(iter_records(path))


def test_empty_file(tmp_path):
    (tmp_path / "e.csv").write_text("")
    with pytest.raises(CxrkitError, match="empty file"):
        list(iter_records(tmp_path / "e.csv"))


def test_columns_found_by_name_in_any_order(tmp_path):
    header = ["Heart", "Width", "Landmarks", "Right Lung", "Dice RCA (Max)", "ImageID", "Height", "Left Lung", "Dice RCA (Mean)"]
    r = row("z.png", "0.81", "0.92")
    r["ImageID"] = r.pop("Image Index")
    rec = next(iter_records(write_csv(tmp_path / "t.csv", header, [r])))
    assert (rec.dice_mean, rec.dice_max) == (0.81, 0.92)
    np.testing.assert_array_equal(rec.mask("right_lung"), decode(r["Right Lung"], 40, 32))


def test_pandas_index_column_and_bom(tmp_path):
    header = ["", "ImageID", "Dice RCA (Max)", "Dice RCA (Mean)", "Landmarks", "Left Lung", "Right Lung", "Heart"]
    r = row("q.png", "0.8", "0.9")
    r.update({"": "0", "ImageID": "q.png"})
    r.update(synthetic_cells(1024, 1024))
    path = write_csv(tmp_path / "t.csv", header, [r])
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    cols = read_columns(path)
    assert cols.id_name == "ImageID" and cols.header[0] == ""
    assert next(iter_records(path)).image_id == "q.png"


# --- cells --------------------------------------------------------------------------------------
def test_dice_columns_either_order(tmp_path):
    swapped = ["ImageID", "Dice RCA (Max)", "Dice RCA (Mean)"] + HEADER[3:]  # Padchest order
    r = row("p.png", "0.81", "0.92")
    r["ImageID"] = r.pop("Image Index")
    a = next(iter_records(write_csv(tmp_path / "a.csv", swapped, [r])))
    r2 = row("p.png", "0.81", "0.92")
    b = next(iter_records(write_csv(tmp_path / "b.csv", HEADER, [r2])))
    assert (a.dice_mean, a.dice_max) == (b.dice_mean, b.dice_max) == (0.81, 0.92)
    assert not a.dice_swapped


def test_dice_max_below_mean_is_repaired_and_flagged(tmp_path):
    path = write_csv(tmp_path / "t.csv", HEADER, [row("s.png", mean="0.92", mx="0.89")])
    rec = next(iter_records(path))
    assert (rec.dice_mean, rec.dice_max, rec.dice_swapped) == (0.89, 0.92, True)
    raw = next(iter_records(path, repair_dice=False))
    assert (raw.dice_mean, raw.dice_max, raw.dice_swapped) == (0.92, 0.89, False)


@pytest.mark.parametrize(
    "height, width, expected, blank",
    [("", "", (1024, 1024), True), ("1024.0", "1024.0", (1024, 1024), False), (" 512 ", "256", (512, 256), False), ("", "800", (1024, 800), True)],
)
def test_height_width_blank_float_int(tmp_path, height, width, expected, blank):
    rec = next(iter_records(write_csv(tmp_path / "t.csv", HEADER, [row("h.png", Height=height, Width=width)])))
    assert (rec.height, rec.width) == expected and rec.size_was_blank is blank


@pytest.mark.parametrize(
    "cells, message",
    [
        ({"Height": "abc"}, "Height 'abc' is not a number"),
        ({"Width": "0"}, "Width '0' is not a positive integer"),
        ({"Height": "10.5"}, "Height '10.5' is not a positive integer"),
        ({"Height": "inf"}, "not a positive integer"),
        ({"Dice RCA (Mean)": "high"}, r"Dice RCA \(Mean\) 'high' is not a number"),
        ({"Dice RCA (Max)": "1.5"}, "outside"),
        ({"Image Index": "  "}, "empty image id"),
    ],
)
def test_bad_cells_raise_with_file_and_line(tmp_path, cells, message):
    rows = [row("ok.png"), row("bad.png", **cells), row("ok2.png")]
    path = write_csv(tmp_path / "t.csv", HEADER, rows)
    with pytest.raises(CxrkitError, match=message) as info:
        list(iter_records(path))
    assert f"{path}:3:" in str(info.value)


def test_blank_and_nan_dice_are_missing(tmp_path):
    path = write_csv(tmp_path / "t.csv", HEADER, [row("a.png", mean="", mx="nan")])
    rec = next(iter_records(path))
    assert rec.dice_mean is None and rec.dice_max is None
    assert dice_reject_reason(rec) == "no Dice"


def test_wrong_field_count_strict_and_lenient(tmp_path):
    path = write_csv(tmp_path / "t.csv", HEADER, [row("a.png"), row("b.png"), row("c.png")])
    lines = path.read_text().split("\n")
    lines[2] = lines[2] + ",extra"
    path.write_text("\n".join(lines))
    with pytest.raises(CxrkitError, match=r"t\.csv:3: row 'b\.png': 10 fields; the header has 9"):
        list(iter_records(path))
    items = list(iter_records(path, lenient=True))
    assert [type(i).__name__ for i in items] == ["CheXmaskRecord", "RowError", "CheXmaskRecord"]
    err = items[1]
    assert err.line == 3 and err.image_id == "b.png" and str(err).startswith(f"{path}:3:")
    assert items[2].line == 4


def test_multiline_numpy_landmarks_and_line_numbers(tmp_path):
    pts = synthetic_points(40, 32).astype(int)
    printed = np.array2string(pts, threshold=10**6)  # 120 lines
    rows = [row("a.png", Landmarks=printed), row("b.png"), row("c.png", Landmarks=printed), row("d.png")]
    path = write_csv(tmp_path / "t.csv", HEADER, rows)
    recs = list(iter_records(path))
    assert [r.line for r in recs] == [2, 122, 123, 243]
    np.testing.assert_array_equal(recs[0].points(), pts)
    for r in recs:
        masks, fills = r.masks(), r.landmark_masks()
        assert all(np.array_equal(masks[o], fills[o]) for o in masks)


def test_blank_lines_skipped(tmp_path):
    path = write_csv(tmp_path / "t.csv", HEADER, [row("a.png"), row("b.png")])
    text = path.read_text().split("\n")
    path.write_text("\n".join(text[:2] + [""] + text[2:]))
    recs = list(iter_records(path))
    assert [r.image_id for r in recs] == ["a.png", "b.png"] and recs[1].line == 4


def test_validate_finds_bad_rle_and_landmarks_at_read_time(tmp_path):
    rows = [row("a.png"), row("b.png", Heart="5 3 1 1"), row("c.png", Landmarks="1,2,3")]
    path = write_csv(tmp_path / "t.csv", HEADER, rows)
    assert len(list(iter_records(path))) == 3  # not checked without validate
    items = list(iter_records(path, validate=True, lenient=True))
    assert isinstance(items[1], RowError) and "Heart" in items[1].message and "starts before" in items[1].message
    assert isinstance(items[2], RowError) and "3 values" in items[2].message
    with pytest.raises(CxrkitError, match=r":3: row 'b\.png': Heart"):
        list(iter_records(path, validate=True))


def test_decode_errors_name_file_line_and_organ(tmp_path):
    path = write_csv(tmp_path / "t.csv", HEADER, [row("a.png", **{"Left Lung": "1 2 x"})])
    rec = next(iter_records(path))
    with pytest.raises(CxrkitError, match=r"t\.csv:2: Left Lung of 'a\.png': RLE"):
        rec.masks()
    with pytest.raises(CxrkitError, match="unknown organ"):
        rec.mask("liver")


def test_physician_layout_without_dice_and_size(tmp_path):
    header = ["ImageID", "Dataset", "Landmarks", "Right Lung", "Left Lung", "Heart"]
    cells = synthetic_cells(1024, 1024)
    path = write_csv(tmp_path / "t.csv", header, [{"ImageID": "m.png", "Dataset": "CheXpert", **cells}])
    rec = next(iter_records(path))
    assert rec.dataset == "CheXpert" and rec.dice_mean is None and (rec.height, rec.width) == (1024, 1024)
    with pytest.raises(CxrkitError, match=r"no 'Dice RCA \(Mean\)' column"):
        filter_csv(path, tmp_path / "o.csv")


def test_gzip_input_equals_plain(tmp_path):
    rows = [row("a.png"), row("b.png", Height="", Width="")]
    plain = list(iter_records(write_csv(tmp_path / "p.csv", HEADER, rows)))
    gz = list(iter_records(write_csv(tmp_path / "p.csv.gz", HEADER, rows, gz=True)))
    strip = lambda r: {k: v for k, v in r.__dict__.items() if k != "source"}  # noqa: E731
    assert [strip(r) for r in gz] == [strip(r) for r in plain]
    # detected by content, not suffix
    data = (tmp_path / "p.csv.gz").read_bytes()
    (tmp_path / "renamed.csv").write_bytes(data)
    assert len(list(iter_records(tmp_path / "renamed.csv"))) == 2


def test_iter_chunks(small_csv):
    chunks = list(iter_chunks(small_csv, chunksize=2))
    assert [len(c) for c in chunks] == [2, 1]
    with pytest.raises(CxrkitError):
        list(iter_chunks(small_csv, chunksize=0))


def test_find_record(small_csv):
    assert find_record(small_csv, "b.png").line == 3
    with pytest.raises(CxrkitError, match=r"image id 'zzz' not found in .*small\.csv"):
        find_record(small_csv, "zzz")


def test_find_record_reports_its_own_bad_row(tmp_path):
    path = write_csv(tmp_path / "t.csv", HEADER, [row("a.png", Height="x"), row("b.png")])
    assert find_record(path, "b.png").image_id == "b.png"  # other bad rows do not block the search
    with pytest.raises(CxrkitError, match=r":2: row 'a\.png': Height"):
        find_record(path, "a.png")


# --- filter and summary -------------------------------------------------------------------------
def test_filter_by_mean_copies_rows_verbatim(small_csv, tmp_path):
    out = tmp_path / "out" / "kept.csv"
    s = filter_csv(small_csv, out)
    assert (s.rows, s.kept, s.dropped) == (3, 2, {"below threshold": 1})
    src_lines = small_csv.read_text().splitlines()
    assert out.read_text().splitlines() == [src_lines[0], src_lines[1], src_lines[3]]  # 0.70 >= 0.7 kept
    assert "kept 2" in s.lines()[0]


def test_filter_by_max_threshold_and_gzip(small_csv, tmp_path):
    s = filter_csv(small_csv, tmp_path / "k.csv.gz", threshold=0.8, by="max")
    assert (s.kept, s.dropped) == (2, {"below threshold": 1})
    with gzip.open(tmp_path / "k.csv.gz", "rt") as fh:
        assert [r["Image Index"] for r in csv.DictReader(fh)] == ["a.png", "c.png"]
    with pytest.raises(CxrkitError, match="by must be"):
        filter_csv(small_csv, tmp_path / "x.csv", by="median")
    with pytest.raises(CxrkitError, match="outside"):
        filter_csv(small_csv, tmp_path / "x.csv", threshold=7)
    with pytest.raises(CxrkitError, match="must differ"):
        filter_csv(small_csv, small_csv)


def test_filter_uses_repaired_dice_and_counts_missing(tmp_path):
    rows = [row("sw.png", mean="0.75", mx="0.65"), row("no.png", mean="", mx=""), row("ok.png")]
    path = write_csv(tmp_path / "t.csv", HEADER, rows)
    s = filter_csv(path, tmp_path / "o.csv")
    assert (s.kept, s.dice_swapped, s.dropped) == (1, 1, {"below threshold": 1, "no Dice": 1})
    s2 = filter_csv(path, tmp_path / "o2.csv", repair_dice=False)
    assert s2.kept == 2


def test_filter_bad_row_strict_leaves_no_output_lenient_counts(tmp_path):
    path = write_csv(tmp_path / "t.csv", HEADER, [row("a.png"), row("b.png", Height="-3"), row("c.png")])
    out = tmp_path / "o.csv"
    with pytest.raises(CxrkitError, match=":3:"):
        filter_csv(path, out)
    assert not out.exists() and not list(tmp_path.glob(".o.csv*"))  # atomic: no partial file
    s = filter_csv(path, out, lenient=True)
    assert s.kept == 2 and len(s.errors) == 1 and ":3:" in s.errors[0]
    assert "1 bad rows" in "\n".join(s.lines())


def test_summarize(small_csv):
    s = summarize_csv(small_csv)
    assert s["rows"] == 3 and s["id_column"] == "Image Index" and s["bad_rows"] == 0
    assert s["dice"]["mean"]["count"] == 3
    assert s["dice"]["mean"]["min"] == 0.65 and s["dice"]["mean"]["max"] == 0.95
    assert s["dice"]["mean"]["mean"] == pytest.approx(0.7666666, abs=1e-6)
    assert abs(s["dice"]["mean"]["median"] - 0.70) <= 0.001
    assert s["passing"] == {"mean": 2, "max": 3}
    assert s["sizes"] == {"40x32": 3}


# --- NIH join -----------------------------------------------------------------------------------
def _nih_frame():
    return pd.DataFrame(
        {"Image Index": ["a.png", "c.png", "zz.png"], "Finding Labels": ["Effusion", "No Finding", "Mass"], "Patient Age": [60, 30, 40]}
    )


def test_join_nih_inner_with_column_or_index(small_csv, caplog):
    for nih in (_nih_frame(), _nih_frame().set_index("Image Index")):
        with caplog.at_level(logging.WARNING, logger="cxrkit.data.chexmask"):
            joined = list(join_nih(iter_records(small_csv), nih, chunksize=2))
        assert [j.record.image_id for j in joined] == ["a.png", "c.png"]
        assert joined[0].nih["Finding Labels"] == "Effusion" and joined[1].nih["Patient Age"] == 30
        assert "1 of 3 CheXmask rows have no NIH metadata" in caplog.text
        caplog.clear()


def test_join_nih_left_basename_key_and_errors_pass_through(tmp_path):
    rows = [row("images_001/images/a.png"), row("b.png", Height="bad"), row("q.png")]
    path = write_csv(tmp_path / "t.csv", HEADER, rows)
    out = list(join_nih(iter_records(path, lenient=True), _nih_frame(), how="left"))
    assert isinstance(out[0], NihJoined) and out[0].nih["Finding Labels"] == "Effusion"
    assert isinstance(out[1], RowError)
    assert out[2].nih is None


def test_join_nih_bad_frames(small_csv):
    with pytest.raises(CxrkitError, match="Image Index"):
        list(join_nih(iter_records(small_csv), pd.DataFrame({"x": [1]})))
    dup = pd.DataFrame({"Image Index": ["a.png", "a.png"]})
    with pytest.raises(CxrkitError, match="duplicate"):
        list(join_nih(iter_records(small_csv), dup))
    with pytest.raises(CxrkitError, match="how"):
        list(join_nih(iter_records(small_csv), _nih_frame(), how="outer"))


def test_records_frame(small_csv):
    df = records_frame(iter_records(small_csv))
    assert df["image_id"].tolist() == ["a.png", "b.png", "c.png"] and df["line"].tolist() == [2, 3, 4]
    assert records_frame([]).empty


def test_name_mapping(tmp_path):
    (tmp_path / "m.csv").write_text("Original,New\nDatasets/Chest8/ChestX-ray8/images_004/images/00008297_010.png,image_1.png\n")
    assert read_name_mapping(tmp_path / "m.csv") == {"image_1.png": "00008297_010.png"}
    (tmp_path / "bad.csv").write_text("a,b\n")
    with pytest.raises(CxrkitError, match="Original,New"):
        read_name_mapping(tmp_path / "bad.csv")


# --- export and drawing -------------------------------------------------------------------------
@pytest.mark.parametrize(
    "image_id, name",
    [
        ("00000001_000.png", "00000001_000.png"),
        ("train/patient18591/study2/view1_frontal.jpg", "train_patient18591_study2_view1_frontal.jpg"),
        ("../../etc/passwd", "_.._.._etc_passwd"),
        (".hidden", "_.hidden"),
        ("a b:c\\d", "a_b_c_d"),
    ],
)
def test_safe_filename(image_id, name):
    assert safe_filename(image_id) == name
    assert "/" not in safe_filename(image_id)


def test_safe_filename_empty():
    with pytest.raises(CxrkitError):
        safe_filename("  ")


def test_write_masks_8bit_0_255(small_csv, tmp_path):
    import cv2

    rec = find_record(small_csv, "a.png")
    paths = write_masks(rec, tmp_path / "m")
    assert paths == mask_paths(tmp_path / "m", "a.png")
    for organ, p in paths.items():
        img = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
        assert img.dtype == np.uint8 and img.shape == (40, 32) and set(np.unique(img)) <= {0, 255}
        np.testing.assert_array_equal(img > 0, rec.mask(organ))


def test_write_masks_bad_rle_writes_nothing(tmp_path):
    path = write_csv(tmp_path / "t.csv", HEADER, [row("a.png", Heart="99999 5")])
    with pytest.raises(CxrkitError, match="Heart"):
        write_masks(next(iter_records(path)), tmp_path / "m")
    assert not (tmp_path / "m").exists() or not any((tmp_path / "m").iterdir())


def test_render_overlay(small_csv):
    rec = find_record(small_csv, "a.png")
    dark = render_overlay(rec.masks(), rec.points())
    assert dark.shape == (40, 32, 3) and dark.dtype == np.uint8
    assert (dark[0, 0] == 24).all()  # dark canvas outside the masks
    gray = np.full((40, 32), 200, np.uint8)
    over = render_overlay(rec.masks(), None, gray)
    assert (over[0, 0] == 200).all()
    with pytest.raises(CxrkitError, match="does not match"):
        render_overlay(rec.masks(), None, np.zeros((10, 10), np.uint8))


# --- memory: streaming stays flat ---------------------------------------------------------------
def _peak_bytes(path: Path) -> tuple[int, int]:
    tracemalloc.start()
    try:
        n = 0
        for rec in iter_records(path):
            n += len(rec.right_lung) > 0
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return n, peak


@pytest.mark.realdata
def test_streaming_memory_is_flat_on_repeated_real_rows(tmp_path):
    src = shared_path("chexmask", "subsets", "ChestX-Ray8.csv")
    header, *body = src.read_text().splitlines(keepends=True)
    small, big = tmp_path / "x1.csv", tmp_path / "x16.csv"
    small.write_text(header + "".join(body))
    with open(big, "w") as fh:
        fh.write(header)
        for _ in range(16):
            fh.writelines(body)
    n1, peak1 = _peak_bytes(small)
    n16, peak16 = _peak_bytes(big)
    assert (n1, n16) == (50, 800)
    assert big.stat().st_size > 15_000_000
    # One row is ~20 KB; the peak must not grow with the file (16x the rows, 16 MB of CSV).
    assert peak16 < 1_000_000, peak16
    assert peak16 < peak1 * 1.5 + 100_000, (peak1, peak16)


# --- real files ---------------------------------------------------------------------------------
EXPECTED_ID = {
    "CANDID-PTX.csv": "ImageID",
    "CheXpert.csv": "Path",
    "ChestX-Ray8.csv": "Image Index",
    "MIMIC-CXR-JPG.csv": "dicom_id",
    "Padchest.csv": "ImageID",
    "VinDr-CXR.csv": "image_id",
}


@pytest.mark.realdata
def test_real_files_id_columns_and_rows():
    folder = shared_path("chexmask", "subsets")
    total = 0
    for name, id_name in EXPECTED_ID.items():
        recs = list(iter_records(folder / name, validate=True))
        assert read_columns(folder / name).id_name == id_name
        assert all(r.height == r.width == 1024 for r in recs)
        assert all(r.dice_mean is not None and r.dice_mean <= r.dice_max for r in recs)
        total += len(recs)
        for who in ("julia", "martina"):
            ann = list(iter_records(folder / name.replace(".csv", f"_{who}_annotations.csv"), validate=True))
            assert len(ann) == len(recs) and {r.image_id for r in ann} == {r.image_id for r in recs}
            assert all(r.dice_mean is None and r.dataset for r in ann)
    assert total == 305


@pytest.mark.realdata
def test_real_padchest_quirks():
    path = shared_path("chexmask", "subsets", "Padchest.csv")
    cols = read_columns(path)
    assert cols.header[1:3] == ("Dice RCA (Max)", "Dice RCA (Mean)")
    raw = {r.line: r for r in iter_records(path, repair_dice=False)}
    fixed = {r.line: r for r in iter_records(path)}
    blank = {line for line, r in fixed.items() if r.size_was_blank}
    assert len(raw) == 50 and len(blank) == 30
    with open(path, newline="") as fh:
        heights = {row["Height"] for row in csv.DictReader(fh)}
    assert heights == {"", "1024.0"}
    # The rows with blank Height/Width are exactly those whose "Max" is below their "Mean".
    assert {line for line, r in raw.items() if r.dice_max < r.dice_mean} == blank
    assert {line for line, r in fixed.items() if r.dice_swapped} == blank
    for line in blank:
        assert (fixed[line].dice_mean, fixed[line].dice_max) == (raw[line].dice_max, raw[line].dice_mean)
    r = fixed[2]
    assert r.image_id == "216840111366964013217898866992011332134237003_01-031-075.png"
    assert (r.dice_mean, r.dice_max) == (0.889177214966985, 0.9199746341631688)


@pytest.mark.realdata
def test_real_gzip_equals_plain(tmp_path):
    src = shared_path("chexmask", "subsets", "CheXpert.csv")
    gz = tmp_path / "CheXpert.csv.gz"
    gz.write_bytes(gzip.compress(src.read_bytes()))
    a = [(r.image_id, r.line, r.landmarks, r.heart, r.dice_mean) for r in iter_records(src)]
    b = [(r.image_id, r.line, r.landmarks, r.heart, r.dice_mean) for r in iter_records(gz)]
    assert a == b and len(a) == 56


@pytest.mark.realdata
def test_real_filter_counts():
    folder = shared_path("chexmask", "subsets")
    expected = {"CANDID-PTX.csv": 49, "CheXpert.csv": 54, "ChestX-Ray8.csv": 48, "MIMIC-CXR-JPG.csv": 47, "Padchest.csv": 48, "VinDr-CXR.csv": 48}
    for name, kept in expected.items():
        n = sum(1 for r in iter_records(folder / name) if dice_reject_reason(r) is None)
        assert n == kept, name


@pytest.mark.realdata
def test_real_join_with_nih_metadata():
    nih = pd.read_csv(shared_path("nih", "Data_Entry_2017_v2020.csv.gz"))
    joined = list(join_nih(iter_records(shared_path("chexmask", "subsets", "ChestX-Ray8.csv")), nih))
    assert len(joined) == 50
    assert all(j.nih["Image Index"] == j.record.image_id for j in joined)
    first = joined[0]
    assert first.record.image_id == "00028162_002.png" and first.nih["Patient ID"] == 28162


@pytest.mark.realdata
def test_real_name_mapping_points_at_the_annotated_nih_images():
    folder = shared_path("chexmask", "subsets")
    mapping = read_name_mapping(folder / "ChestX-Ray8_name_mapping.csv")
    # 30 entries (not 50): image_1 .. image_30, all among the 50 physician-annotated ids
    assert len(mapping) == 30 and mapping["image_1.png"] == "00008297_010.png"
    ids = {r.image_id for r in iter_records(folder / "ChestX-Ray8_julia_annotations.csv")}
    assert set(mapping.values()) <= ids

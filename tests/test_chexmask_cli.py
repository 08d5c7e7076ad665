"""``cxrkit chexmask info|filter|decode|overlay``: the decode contract, errors, real files."""

from __future__ import annotations

import gzip
import json

import cv2
import numpy as np
import pytest
from conftest import shared_path
from test_chexmask import HEADER, row, write_csv

from cxrkit.cli.main import main
from cxrkit.data.chexmask import find_record, iter_records
from cxrkit.io.rle import decode

ORGANS = ("right_lung", "left_lung", "heart")


def run(capsys, *argv):
    rc = main(["chexmask", *argv])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture
def synth(tmp_path):
    rows = [row("a.png", "0.95", "0.97"), row("b.png", "0.65", "0.75"), row("dir/c.jpg", "0.72", "0.6")]
    return write_csv(tmp_path / "s.csv", HEADER, rows)


def _check_masks(out_dir, image_id, csv_path, name=None):
    rec = find_record(csv_path, image_id)
    for organ in ORGANS:
        p = out_dir / f"{name or image_id}_{organ}.png"
        img = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
        assert img is not None, p
        assert img.dtype == np.uint8 and img.ndim == 2 and img.shape == (rec.height, rec.width)
        assert set(np.unique(img).tolist()) <= {0, 255}
        assert np.array_equal(img == 255, decode(rec.rle(organ), rec.height, rec.width))


# --- decode contract ----------------------------------------------------------------------------
def test_decode_writes_three_pngs_of_the_rows_size(synth, tmp_path, capsys):
    rc, out, err = run(capsys, "decode", str(synth), "--id", "a.png", "--out", str(tmp_path / "o"))
    assert rc == 0 and err == ""
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == sorted(f"a.png_{o}.png" for o in ORGANS)
    _check_masks(tmp_path / "o", "a.png", synth)  # 40 x 32, not 1024


def test_decode_sanitizes_slashes(synth, tmp_path, capsys):
    rc, out, _ = run(capsys, "decode", str(synth), "--id", "dir/c.jpg", "--out", str(tmp_path / "o"))
    assert rc == 0
    _check_masks(tmp_path / "o", "dir/c.jpg", synth, name="dir_c.jpg")
    assert not (tmp_path / "o" / "dir").exists()


def test_decode_gzip_input(synth, tmp_path, capsys):
    gz = tmp_path / "s.csv.gz"
    gz.write_bytes(gzip.compress(synth.read_bytes()))
    rc, _, _ = run(capsys, "decode", str(gz), "--id", "b.png", "--out", str(tmp_path / "o"))
    assert rc == 0
    _check_masks(tmp_path / "o", "b.png", synth)


def test_decode_missing_id_one_line_error_naming_id_and_file(synth, tmp_path, capsys):
    rc, out, err = run(capsys, "decode", str(synth), "--id", "nope.png", "--out", str(tmp_path / "o"))
    assert rc != 0 and out == ""
    assert err.count("\n") == 1 and "'nope.png'" in err and str(synth) in err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "setup, expected, status",
    [
        ("missing", "no such file", 2),  # a path on the command line that does not exist: usage
        ("bad_rle", "Heart of 'a.png'", 1),  # a bad file: a failed input
        ("bad_header", "no image-id column", 1),
    ],
)
def test_decode_errors(tmp_path, capsys, setup, expected, status):
    if setup == "missing":
        path = tmp_path / "absent.csv"
    elif setup == "bad_rle":
        path = write_csv(tmp_path / "t.csv", HEADER, [row("a.png", Heart="1 2 x")])
    else:
        path = write_csv(tmp_path / "t.csv", ["Name"] + HEADER[1:], [])
    rc, out, err = run(capsys, "decode", str(path), "--id", "a.png", "--out", str(tmp_path / "o"))
    assert rc == status and err.count("\n") == 1 and expected in err
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


# --- info, filter, overlay ----------------------------------------------------------------------
def test_info_text_and_json(synth, capsys):
    rc, out, _ = run(capsys, "info", str(synth))
    assert rc == 0
    assert "id column   Image Index" in out and "rows        3 (0 bad)" in out
    assert "40x32: 3" in out and "dice repair 1 rows" in out
    rc, out, _ = run(capsys, "info", str(synth), "--json", "--no-repair-dice")
    data = json.loads(out)
    assert data["rows"] == 3 and data["dice_swapped"] == 0 and data["passing"]["mean"] == 2


def test_info_reports_bad_rows_and_exits_1(tmp_path, capsys):
    path = write_csv(tmp_path / "t.csv", HEADER, [row("a.png"), row("b.png", Width="w")])
    rc, out, _ = run(capsys, "info", str(path))
    assert rc == 1 and "1 bad" in out and f"{path}:3:" in out


def test_filter_cli(synth, tmp_path, capsys):
    out_csv = tmp_path / "f.csv"
    rc, out, _ = run(capsys, "filter", str(synth), "--out", str(out_csv))
    assert rc == 0 and "kept 1" in out and "dropped 2: below threshold" in out
    assert [r.image_id for r in iter_records(out_csv)] == ["a.png"]
    rc, out, _ = run(capsys, "filter", str(synth), "--out", str(out_csv), "--by", "max", "--threshold", "0.7")
    assert rc == 0 and [r.image_id for r in iter_records(out_csv)] == ["a.png", "b.png", "dir/c.jpg"]


def test_filter_cli_strict_error_and_lenient(tmp_path, capsys):
    path = write_csv(tmp_path / "t.csv", HEADER, [row("a.png"), row("b.png", Height="x")])
    rc, _, err = run(capsys, "filter", str(path), "--out", str(tmp_path / "f.csv"))
    assert rc == 1 and f"{path}:3:" in err and not (tmp_path / "f.csv").exists()
    rc, out, _ = run(capsys, "filter", str(path), "--out", str(tmp_path / "f.csv"), "--lenient")
    assert rc == 0 and "1 bad rows" in out


def test_overlay_dark_canvas_and_image(synth, tmp_path, capsys):
    png = tmp_path / "ov.png"
    rc, _, _ = run(capsys, "overlay", str(synth), "--id", "a.png", "--out", str(png))
    assert rc == 0
    img = cv2.imread(str(png))
    assert img.shape == (40, 32, 3) and (img[0, 0] == 24).all()
    gray = tmp_path / "g.png"
    cv2.imwrite(str(gray), np.full((40, 32), 180, np.uint8))
    rc, _, _ = run(capsys, "overlay", str(synth), "--id", "a.png", "--out", str(png), "--image", str(gray), "--no-landmarks")
    assert rc == 0 and (cv2.imread(str(png))[0, 0] == 180).all()
    rc, _, err = run(capsys, "overlay", str(synth), "--id", "a.png", "--out", str(tmp_path / "x.jpg"))
    assert rc == 2 and ".png" in err
    cv2.imwrite(str(gray), np.zeros((50, 50), np.uint8))
    rc, _, err = run(capsys, "overlay", str(synth), "--id", "a.png", "--out", str(png), "--image", str(gray))
    assert rc == 1 and "1024 space" in err


# --- real data ----------------------------------------------------------------------------------
@pytest.mark.realdata
@pytest.mark.parametrize(
    "name, image_id, file_name",
    [
        ("ChestX-Ray8.csv", "00028162_002.png", "00028162_002.png"),
        ("CheXpert.csv", "train/patient14049/study5/view1_frontal.jpg", "train_patient14049_study5_view1_frontal.jpg"),
        ("Padchest.csv", "216840111366964013217898866992011332134237003_01-031-075.png", None),
        ("ChestX-Ray8_martina_annotations.csv", "00013310_001.png", None),
    ],
)
def test_real_decode_contract(tmp_path, capsys, name, image_id, file_name):
    src = shared_path("chexmask", "subsets", name)
    rc, out, err = run(capsys, "decode", str(src), "--id", image_id, "--out", str(tmp_path / "o"))
    assert rc == 0 and err == ""
    assert len(list((tmp_path / "o").iterdir())) == 3
    _check_masks(tmp_path / "o", image_id, src, name=file_name)
    assert cv2.imread(str(next((tmp_path / "o").iterdir())), cv2.IMREAD_UNCHANGED).shape == (1024, 1024)


@pytest.mark.realdata
def test_real_decode_gzip_and_missing_id(tmp_path, capsys):
    src = shared_path("chexmask", "subsets", "VinDr-CXR.csv")
    gz = tmp_path / "VinDr-CXR.csv.gz"
    gz.write_bytes(gzip.compress(src.read_bytes()))
    rc, _, _ = run(capsys, "decode", str(gz), "--id", "5780e843511eb33150ad2d151aeed276", "--out", str(tmp_path / "o"))
    assert rc == 0
    _check_masks(tmp_path / "o", "5780e843511eb33150ad2d151aeed276", src)
    rc, out, err = run(capsys, "decode", str(gz), "--id", "00000001_000.png", "--out", str(tmp_path / "p"))
    assert rc == 1 and err.count("\n") == 1 and "'00000001_000.png' not found" in err and str(gz) in err


@pytest.mark.realdata
def test_real_overlay_on_an_image_of_another_size(tmp_path, capsys):
    """A 1024-space row drawn on a 786x899 image: masks and points are mapped back with SquareResize."""
    src = shared_path("chexmask", "subsets", "ChestX-Ray8.csv")
    image = shared_path("chexmask", "example", "utils_example1.jpg")
    png = tmp_path / "ov.png"
    rc, _, _ = run(capsys, "overlay", str(src), "--id", "00028162_002.png", "--out", str(png), "--image", str(image))
    assert rc == 0
    assert cv2.imread(str(png)).shape == (899, 786, 3)


@pytest.mark.realdata
def test_real_info_padchest(capsys):
    src = shared_path("chexmask", "subsets", "Padchest.csv")
    rc, out, _ = run(capsys, "info", str(src), "--validate")
    assert rc == 0
    assert "id column   ImageID" in out and "rows        50 (0 bad)" in out
    assert "dice repair 30 rows" in out and "blank or missing Height/Width = 1024: 30" in out

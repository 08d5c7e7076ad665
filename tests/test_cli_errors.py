"""Mistakes users make get one line, the same exit codes everywhere, and never damage or litter.

Exit status: 2 for a usage error (a bad flag value, a folder where a file is written, a file where a folder
is written, a path that does not exist), 1 for inputs that failed; one line on stderr per error; nothing
existing is changed and no empty folder is left behind.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest

from cxrkit.cli.main import main

PKG = Path(str(resources.files("cxrkit.demo") / "sample"))
IMG = PKG / "nih" / "images" / "00009745_000.png"
ROWS = PKG / "chexmask" / "ChestX-Ray8_sample.csv"
REPORTS = PKG / "reports"


def _err(capsys) -> str:
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip() and "%|" not in ln]  # progress bars aside
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize("argv", [
    ["measure", "--masks-from", str(ROWS), "--out", "{dir}"],
    ["reports", "label", str(REPORTS), "--out", "{dir}"],
    ["chexmask", "filter", str(ROWS), "--out", "{dir}"],
    ["segment", str(IMG), "--out", "{dir}"],
    ["qc", str(IMG), "--masks-from", str(ROWS), "--out", "{dir}"],
])
def test_a_folder_where_a_file_is_written(tmp_path, capsys, argv):
    folder = tmp_path / "existing"
    folder.mkdir()
    (folder / "keep.txt").write_text("mine")
    rc = main([a.replace("{dir}", str(folder)) for a in argv])
    line = _err(capsys)
    assert rc == 2 and "is a folder" in line and line.startswith(f"cxrkit {argv[0]}: error: ")
    assert sorted(p.name for p in folder.iterdir()) == ["keep.txt"] and (folder / "keep.txt").read_text() == "mine"


@pytest.mark.parametrize("argv", [
    ["analyze", str(IMG), "--out", "{file}", "--no-qc"],
    ["predict", str(IMG), "--model", "resnet_lite_lesions", "--out", "{file}"],
    ["chexmask", "decode", str(ROWS), "--id", "00004594_003.png", "--out", "{file}"],
    ["stats", "summary", "--metadata", str(PKG / "nih" / "Data_Entry_2017_v2020.csv.gz"), "--out", "{file}"],
])
def test_a_file_where_a_folder_is_written(tmp_path, capsys, argv):
    f = tmp_path / "results"
    f.write_text("not a folder")
    rc = main([a.replace("{file}", str(f)) for a in argv])
    line = _err(capsys)
    assert rc == 2 and str(f) in line, line
    assert f.read_text() == "not a folder"


def test_failed_inputs_exit_1_name_the_file_once_and_leave_no_empty_folder(tmp_path, capsys):
    bad = tmp_path / "fake.png"
    bad.write_text("hello")
    out = tmp_path / "new" / "deeper"
    assert main(["analyze", str(bad), "--out", str(out), "--no-qc", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.count("fake.png") == 1 and "fake.png: not a PNG, JPEG or DICOM file" in err
    assert not (tmp_path / "new").exists()  # nothing was written: no empty folders
    assert main(["predict", str(bad), "--model", "resnet_lite_lesions", "--out", str(out)]) == 1
    assert capsys.readouterr().err.count("fake.png") == 1 and not (tmp_path / "new").exists()
    # a bad flag value names the flag, not a Python argument
    assert main(["segment", str(IMG), "--out", str(tmp_path / "s.csv"), "--batch-size", "0"]) == 2
    assert "--batch-size: expected a whole number >= 1, got 0" in _err(capsys)
    assert main(["segment", str(tmp_path / "missing.png"), "--out", str(tmp_path / "s.csv")]) == 2
    assert "missing.png: no such file or folder" in _err(capsys) and not (tmp_path / "s.csv").exists()


def test_predict_split_on_a_folder_with_only_test_images(tmp_path, capsys):
    """predict-split predicts the test-list images present; train/val images are not needed."""
    import shutil

    from tiny_nih import make_tiny_nih

    from cxrkit.models import create_model, save_checkpoint

    nih = make_tiny_nih(tmp_path / "nih", n_patients=4)
    test = (nih["split_dir"] / "test_list.txt").read_text().split()
    only = tmp_path / "only_test"
    only.mkdir()
    for name in test:
        shutil.copy(nih["images"] / name, only / name)
    save_checkpoint(tmp_path / "m.pt", create_model("resnet_lite", input_size=64))
    out = tmp_path / "preds.csv"
    assert main(["predict-split", "--model", str(tmp_path / "m.pt"), "--images", str(only), "--metadata",
                 str(nih["metadata"]), "--split-dir", str(nih["split_dir"]), "--out", str(out), "--device", "cpu"]) == 0
    assert out.read_text().count("\n") == len(test) + 1

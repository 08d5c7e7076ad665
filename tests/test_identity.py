"""Image identity is the path relative to the input root (issue: real datasets' layouts).

Small trees in each CheXmask dataset's layout (CheXpert and MIMIC-CXR-JPG repeat file names; PadChest 16-bit
PNGs in numbered folders; VinDr-CXR DICOMs with a ``.dicom`` suffix; the NIH download's images_0xx folders),
with non-square JPEG and DICOM films: every command keeps every image, the ID columns match the released
CheXmask CSVs, and outputs mirror the input tree without ever overwriting one another.
"""

from __future__ import annotations

import csv
import json
from importlib import resources
from pathlib import Path

import cv2
import numpy as np
import pytest

from cxrkit.cli.main import main
from cxrkit.io.inputs import collect_images, output_stems

SAMPLES = Path(str(resources.files("cxrkit.demo") / "sample" / "nih" / "images"))


def _film(k: int, shape: tuple[int, int]) -> np.ndarray:
    """A real NIH radiograph resized to ``shape`` (h, w): non-square films with real anatomy."""
    names = sorted(SAMPLES.glob("*.png"))
    img = cv2.imread(str(names[k % len(names)]), cv2.IMREAD_GRAYSCALE)
    return cv2.resize(img, (shape[1], shape[0]), interpolation=cv2.INTER_AREA)


def _dicom(path: Path, pixels: np.ndarray, photometric: str = "MONOCHROME2") -> None:
    from test_images import _dicom as write

    write(path, pixels.astype(np.uint16) * 16, photometric=photometric)


def build_trees(root: Path) -> dict[str, Path]:
    """One small tree per dataset layout; returns {dataset: its root folder}."""
    trees = {}
    cx = root / "CheXpert-v1.0-small"
    for i, rel in enumerate(["train/patient00001/study1/view1_frontal.jpg", "train/patient00002/study1/view1_frontal.jpg",
                             "train/patient00002/study2/view1_frontal.jpg", "valid/patient64541/study1/view1_frontal.jpg"]):
        (cx / rel).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(cx / rel), _film(i, (320, 390)))  # CheXpert-small: 320 px high, wider
    trees["chexpert"] = cx
    mm = root / "mimic-cxr-jpg" / "files"
    for i, rel in enumerate(["p10/p10000032/s50414267/02aa804e-bde0afdd-112c0b34-7bc16630-4e384014.jpg",
                             "p10/p10000032/s53189527/2a2277a9-b0ded155-c0de8eb9-c124d10e-82c5caab.jpg",
                             "p11/p11000011/s51029426/5c7c6e95-0a4b7d6d-ef45a5ae-7c6b2b54-9aef6c29.jpg"]):
        (mm / rel).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(mm / rel), _film(i + 1, (400, 330)))  # taller than wide
    trees["mimic"] = mm
    pc = root / "padchest"
    for i, rel in enumerate(["0/216840111366964012283393834152009033102258826_00-015-130.png",
                             "1/216840111366964013590140476722013071144231366_02-055-193.png"]):
        (pc / rel).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(pc / rel), (_film(i + 2, (360, 300)).astype(np.uint16) * 257))  # 16-bit
    trees["padchest"] = pc
    vd = root / "vindr" / "train"
    vd.mkdir(parents=True)
    _dicom(vd / "5780e843511eb33150ad2d151aeed276.dicom", _film(3, (380, 320)))
    _dicom(vd / "b4d9fcbd83e33396cf8178e6b755acd8.dicom", 255 - _film(4, (330, 380)), photometric="MONOCHROME1")
    trees["vindr"] = vd.parent
    nih = root / "nih"
    for i, rel in enumerate(["images_001/images/00000001_000.png", "images_002/images/00001336_000.png"]):
        (nih / rel).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(nih / rel), _film(i, (256, 256)))
    trees["nih"] = nih
    return trees


@pytest.fixture(scope="module")
def trees(tmp_path_factory):
    return build_trees(tmp_path_factory.mktemp("datasets"))


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_collect_images_identity_rules(tmp_path):
    for rel in ("dup/p1/img.png", "dup/p2/img.png", "flat/a.png", "flat/b.jpg"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    root, got = collect_images([tmp_path / "dup"])
    assert root == tmp_path / "dup" and [i.id for i in got] == ["p1/img.png", "p2/img.png"]
    _, got = collect_images([tmp_path / "dup/p1/img.png", tmp_path / "dup/p2/img.png"])  # files: common parent
    assert [i.id for i in got] == ["p1/img.png", "p2/img.png"]
    _, got = collect_images([tmp_path / "flat/a.png", tmp_path / "flat/b.jpg", tmp_path / "flat/a.png"])
    assert [i.id for i in got] == ["a.png", "b.jpg"]  # a flat folder: file names, as before; duplicates once
    _, got = collect_images([tmp_path / "dup", tmp_path / "flat"])  # several folders: their common parent
    assert [i.id for i in got] == ["dup/p1/img.png", "dup/p2/img.png", "flat/a.png", "flat/b.jpg"]
    stems = output_stems(["chest.png", "chest.jpg", "chest.dcm", "p1/img.png", "p2/img.png", "other.png"])
    assert stems == {"chest.png": "chest.png", "chest.jpg": "chest.jpg", "chest.dcm": "chest.dcm",
                     "p1/img.png": "p1/img", "p2/img.png": "p2/img", "other.png": "other"}


@pytest.mark.parametrize("dataset, style, column, expected", [
    ("chexpert", "chexpert", "Path", {"train/patient00001/study1/view1_frontal.jpg",
                                      "train/patient00002/study1/view1_frontal.jpg",
                                      "train/patient00002/study2/view1_frontal.jpg",
                                      "valid/patient64541/study1/view1_frontal.jpg"}),
    ("mimic", "mimic", "dicom_id", {"02aa804e-bde0afdd-112c0b34-7bc16630-4e384014",
                                    "2a2277a9-b0ded155-c0de8eb9-c124d10e-82c5caab",
                                    "5c7c6e95-0a4b7d6d-ef45a5ae-7c6b2b54-9aef6c29"}),
    ("padchest", "padchest", "ImageID", {"216840111366964012283393834152009033102258826_00-015-130.png",
                                         "216840111366964013590140476722013071144231366_02-055-193.png"}),
    ("vindr", "vindr", "image_id", {"5780e843511eb33150ad2d151aeed276", "b4d9fcbd83e33396cf8178e6b755acd8"}),
    ("nih", "nih", "Image Index", {"00000001_000.png", "00001336_000.png"}),
])
def test_segment_id_styles_match_chexmask_and_read_back(trees, tmp_path, capsys, dataset, style, column, expected):
    from cxrkit.data.chexmask import iter_records, read_columns

    out = tmp_path / "seg.csv"
    assert main(["segment", str(trees[dataset]), "--out", str(out), "--id-style", style, "--quiet",
                 "--device", "cpu"]) == 0
    assert f"{len(expected)} segmented" in capsys.readouterr().out
    rows = _rows(out)
    assert list(rows[0])[0] == column and {r[column] for r in rows} == expected
    # the column is spelled as the released CheXmask file of that dataset
    released = {"chexpert": "CheXpert.csv", "mimic": "MIMIC-CXR-JPG.csv", "padchest": "Padchest.csv",
                "vindr": "VinDr-CXR.csv", "nih": "ChestX-Ray8.csv"}[dataset]
    shared = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "chexmask" / "subsets" / released
    if shared.is_file():
        assert read_columns(shared).id_name == column
    # cxrkit's readers take it back: records, measure, to-parquet, and masks at the original size
    recs = list(iter_records(out))
    assert {r.image_id for r in recs} == expected
    for rec, row in zip(recs, rows):
        assert rec.mask("heart").shape == (int(row["Height"]), int(row["Width"]))
    assert main(["measure", "--masks-from", str(out), "--out", str(tmp_path / "m.csv")]) == 0
    assert {r["ImageID"] for r in _rows(tmp_path / "m.csv")} == expected
    pytest.importorskip("pyarrow")
    assert main(["chexmask", "to-parquet", str(out), "--out", str(tmp_path / "pq"), "--quiet"]) == 0
    # resume: nothing is redone
    assert main(["segment", str(trees[dataset]), "--out", str(out), "--id-style", style, "--quiet"]) == 0
    assert f"0 segmented, {len(expected)} already there" in capsys.readouterr().out


def test_segment_keeps_repeated_file_names_and_refuses_a_lossy_style(tmp_path, trees, capsys):
    out = tmp_path / "seg.csv"
    assert main(["segment", str(trees["chexpert"]), "--out", str(out), "--quiet"]) == 0
    ids = [r["ImageID"] for r in _rows(out)]
    assert ids == ["train/patient00001/study1/view1_frontal.jpg", "train/patient00002/study1/view1_frontal.jpg",
                   "train/patient00002/study2/view1_frontal.jpg", "valid/patient64541/study1/view1_frontal.jpg"]
    # file names alone would drop 3 of the 4 images: refused per image, never silently
    assert main(["segment", str(trees["chexpert"]), "--out", str(tmp_path / "nih.csv"), "--id-style", "nih",
                 "--quiet"]) == 1
    assert len(_rows(tmp_path / "nih.csv")) == 1
    errors = _rows(tmp_path / "nih.errors.csv")
    assert len(errors) == 3 and all("same Image Index 'view1_frontal.jpg'" in e["error"] for e in errors)
    # resuming with another ID style is refused, naming the flag
    capsys.readouterr()
    assert main(["segment", str(trees["chexpert"]), "--out", str(out), "--id-style", "chexpert"]) == 2
    assert "--id-style" in capsys.readouterr().err


def test_analyze_and_predict_mirror_the_tree(tmp_path, trees):
    out = tmp_path / "a"
    assert main(["analyze", str(trees["mimic"]), "--out", str(out), "--no-qc", "--quiet", "--device", "cpu"]) == 0
    got = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.json"))
    assert got == ["p10/p10000032/s50414267/02aa804e-bde0afdd-112c0b34-7bc16630-4e384014.json",
                   "p10/p10000032/s53189527/2a2277a9-b0ded155-c0de8eb9-c124d10e-82c5caab.json",
                   "p11/p11000011/s51029426/5c7c6e95-0a4b7d6d-ef45a5ae-7c6b2b54-9aef6c29.json"]
    doc = json.loads((out / got[0]).read_text())
    assert doc["image"] == got[0][:-5] + ".jpg" and (doc["width"], doc["height"]) == (330, 400)
    assert main(["predict", str(trees["chexpert"]), "--model", "resnet_lite_lesions", "--out", str(tmp_path / "p"),
                 "--device", "cpu"]) == 0
    assert len(list((tmp_path / "p").rglob("view1_frontal.json"))) == 4
    assert len(list((tmp_path / "p").rglob("view1_frontal_overlay.png"))) == 4


def test_same_stem_inputs_never_share_an_output(tmp_path, capsys):
    img = _film(0, (300, 260))
    cv2.imwrite(str(tmp_path / "chest.png"), img)
    cv2.imwrite(str(tmp_path / "chest.jpg"), img)
    _dicom(tmp_path / "chest.dcm", img)
    out = tmp_path / "out"
    assert main(["analyze", str(tmp_path / "chest.png"), str(tmp_path / "chest.jpg"), str(tmp_path / "chest.dcm"),
                 "--out", str(out), "--no-qc", "--quiet", "--no-preview"]) == 0
    assert sorted(p.name for p in out.glob("*.json")) == ["chest.dcm.json", "chest.jpg.json", "chest.png.json"]
    # an earlier output of another image is never overwritten: that input fails instead
    other = tmp_path / "elsewhere"
    other.mkdir()
    cv2.imwrite(str(other / "chest.png"), 255 - img)
    (out / "x.json").write_text(json.dumps({"image": "not-x.png"}))
    cv2.imwrite(str(other / "x.png"), img)
    capsys.readouterr()
    assert main(["analyze", str(other), "--out", str(out), "--no-qc", "--quiet", "--no-preview"]) == 1
    err = capsys.readouterr().err
    assert "belongs to 'not-x.png'" in err and json.loads((out / "x.json").read_text()) == {"image": "not-x.png"}


def test_qc_matches_masks_by_identity(tmp_path, trees, monkeypatch):
    """Two different images with one file name: each is scored with its own row (not the first one found)."""
    from test_qc_rca import make_reference

    dup = tmp_path / "dup"
    for k, sub in enumerate(("p1", "p2")):
        (dup / sub).mkdir(parents=True)
        cv2.imwrite(str(dup / sub / "img.png"), _film(k, (256, 256)))
    seg = tmp_path / "seg.csv"
    assert main(["segment", str(dup), "--out", str(seg), "--quiet"]) == 0
    rows = _rows(seg)
    assert [r["ImageID"] for r in rows] == ["p1/img.png", "p2/img.png"] and rows[0]["Heart"] != rows[1]["Heart"]
    ref = make_reference(tmp_path / "ref")
    assert main(["qc", str(dup), "--masks-from", str(seg), "--out", str(tmp_path / "qc.csv"), "--reference", str(ref),
                 "--quiet"]) == 0
    qc = _rows(tmp_path / "qc.csv")
    assert [r["ImageID"] for r in qc] == ["p1/img.png", "p2/img.png"] and not any(r["error"] for r in qc)
    # swapping the rows' IDs changes the scores: the match follows the ID, not the file name
    swapped = tmp_path / "swapped.csv"
    with open(swapped, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerow({**rows[0], "ImageID": "p2/img.png"})
        w.writerow({**rows[1], "ImageID": "p1/img.png"})
    assert main(["qc", str(dup), "--masks-from", str(swapped), "--out", str(tmp_path / "qc2.csv"), "--reference",
                 str(ref), "--quiet"]) == 0
    qc2 = _rows(tmp_path / "qc2.csv")
    assert [r["Dice RCA (Mean)"] for r in qc2] != [r["Dice RCA (Mean)"] for r in qc]


def test_batch_manifest_identity_is_the_relative_path(tmp_path, trees):
    pytest.importorskip("pyarrow")
    from cxrkit.batch import read_manifest, write_manifest

    _, inputs = collect_images([trees["chexpert"]])
    m = write_manifest([i.path for i in inputs], tmp_path / "m.csv")
    assert [r.image_id for r in read_manifest(m).rows] == [i.id for i in inputs]

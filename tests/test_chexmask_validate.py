"""``cxrkit chexmask validate``: CheXmask's technical validation (HybridGNet vs physicians, RCA vs true Dice)."""

from __future__ import annotations

import csv
import io
import logging
import math
from pathlib import Path

import numpy as np
import pytest
from conftest import shared_path

from cxrkit.benchmarks.chexmask_validation import (
    AVERAGE,
    compare_masks,
    discover_subsets,
    format_summary,
    id_keys,
    to_square_space,
    validate_chexmask,
)
from cxrkit.cli.main import main
from cxrkit.errors import CxrkitError
from cxrkit.io.geometry import SquareResize
from cxrkit.io.rle import decode, encode
from cxrkit.metrics.segmentation import dice
from cxrkit.metrics.stats import pearson, spearman

HG_HEADER = ["ImageID", "Dice RCA (Mean)", "Dice RCA (Max)", "Landmarks", "Left Lung", "Right Lung", "Heart", "Height", "Width"]
PHYS_HEADER = ["ImageID", "Dataset", "Landmarks", "Right Lung", "Left Lung", "Heart"]
N = 1024
LANDMARKS = ",".join(["10"] * 240)  # the validation never parses the landmarks


def rect(r0: int, r1: int, c0: int, c1: int, h: int = N, w: int = N) -> np.ndarray:
    m = np.zeros((h, w), bool)
    m[r0:r1, c0:c1] = True
    return m


def base_masks() -> dict[str, np.ndarray]:
    """Right lung on the image left, left lung on the right, heart between (1024 space)."""
    return {
        "right_lung": rect(100, 300, 100, 300),
        "left_lung": rect(100, 300, 600, 800),
        "heart": rect(500, 700, 400, 600),
    }


def write(path: Path, header: list[str], rows: list[dict[str, str]]) -> Path:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    for r in rows:
        w.writerow([r.get(h, "") for h in header])
    path.write_text(buf.getvalue())
    return path


def hg_row(image_id: str, masks: dict[str, np.ndarray], mean: str = "0.85", mx: str = "0.9", **cells: str) -> dict[str, str]:
    h, w = next(iter(masks.values())).shape
    row = {"ImageID": image_id, "Dice RCA (Mean)": mean, "Dice RCA (Max)": mx, "Landmarks": LANDMARKS,
           "Right Lung": encode(masks["right_lung"]), "Left Lung": encode(masks["left_lung"]),
           "Heart": encode(masks["heart"]), "Height": str(h), "Width": str(w)}
    row.update(cells)
    return row


def phys_row(image_id: str, masks: dict[str, np.ndarray], dataset: str = "Synth") -> dict[str, str]:
    return {"ImageID": image_id, "Dataset": dataset, "Landmarks": LANDMARKS,
            "Right Lung": encode(masks["right_lung"]), "Left Lung": encode(masks["left_lung"]), "Heart": encode(masks["heart"])}


def shifted(masks: dict[str, np.ndarray], organ: str, dx: int) -> dict[str, np.ndarray]:
    out = dict(masks)
    out[organ] = np.roll(masks[organ], dx, axis=1)
    return out


@pytest.fixture
def synth(tmp_path) -> Path:
    """Four images; A equals HybridGNet except a halved left lung in image 0; B shifts the heart by
    20 px per image index (true heart Dice vs B = 1 - 0.1 k); Dice RCA (Mean) = 0.9 - 0.05 k."""
    folder = tmp_path / "subsets"
    folder.mkdir()
    hg, a, b = [], [], []
    for k in range(4):
        m = base_masks()
        hg.append(hg_row(f"img{k}.png", m, mean=f"{0.9 - 0.05 * k:.2f}", mx="0.95"))
        ma = dict(m)
        if k == 0:
            ma["left_lung"] = rect(100, 200, 600, 800)  # half of HybridGNet's: Dice 2/3
        a.append(phys_row(f"img{k}.png", ma))
        b.append(phys_row(f"img{k}.png", shifted(m, "heart", 20 * k)))
    write(folder / "Synth.csv", HG_HEADER, hg)
    write(folder / "Synth_ann1_annotations.csv", PHYS_HEADER, list(reversed(a)))  # order differs
    write(folder / "Synth_ann2_annotations.csv", PHYS_HEADER, b)
    return folder


# --- arrays -------------------------------------------------------------------------------------
def test_pearson_and_spearman_known_values():
    assert pearson([1, 2, 3, 4], [2, 4, 6, 8]) == pytest.approx(1.0)
    assert pearson([1, 2, 3, 4], [8, 6, 4, 2]) == pytest.approx(-1.0)
    assert pearson([1, 2, 3, 4, np.nan], [2, 4, 6, 8, 0]) == pytest.approx(1.0)  # non-finite pairs dropped
    assert math.isnan(pearson([1, 2], [3, 4]))  # fewer than 3 pairs
    assert math.isnan(pearson([1, 1, 1], [1, 2, 3]))  # constant side
    assert spearman([1, 2, 3, 4], [1, 4, 9, 100]) == pytest.approx(1.0)
    # ties: ranks x = [1, 2.5, 2.5, 4], y = [1, 2, 3, 4] -> 4.5 / sqrt(4.5 * 5)
    assert spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(4.5 / math.sqrt(22.5))
    with pytest.raises(CxrkitError, match="same length"):
        pearson([1, 2, 3], [1, 2])


def test_compare_masks_known_dice_and_missing_physician():
    hg = base_masks()
    a = dict(hg, left_lung=rect(100, 200, 600, 800))
    b = shifted(hg, "right_lung", 100)
    s = compare_masks(hg, a, b)
    assert s["right_lung"] == pytest.approx({"dice_vs_a": 1.0, "dice_vs_b": 0.5, "dice_a_vs_b": 0.5, "dice_vs_ab_mean": 0.75})
    assert s["left_lung"]["dice_vs_a"] == pytest.approx(2 / 3) and s["left_lung"]["dice_vs_b"] == 1.0
    assert s["heart"]["dice_a_vs_b"] == 1.0
    assert s[AVERAGE]["dice_vs_a"] == pytest.approx((1 + 2 / 3 + 1) / 3)
    only_a = compare_masks(hg, a, None)
    assert math.isnan(only_a["heart"]["dice_vs_b"]) and math.isnan(only_a["heart"]["dice_a_vs_b"])
    assert only_a["left_lung"]["dice_vs_ab_mean"] == pytest.approx(2 / 3)  # the one that exists


def test_to_square_space_pads_centred_and_resizes_nearest():
    # 512 x 256 (h x w): side 512, pad_left 128, scale 2
    m = rect(100, 200, 50, 150, h=512, w=256)
    sq = to_square_space(m)
    assert sq.shape == (N, N) and sq.dtype == bool
    assert dice(sq, rect(200, 400, 356, 556)) == 1.0
    # wide image: pad on top
    sq = to_square_space(rect(0, 256, 0, 512, h=256, w=512))
    assert dice(sq, rect(256, 768, 0, 1024)) == 1.0
    square = rect(1, 5, 1, 5)
    assert to_square_space(square) is square or (to_square_space(square) == square).all()


def test_id_keys():
    assert id_keys("train/patient1/study2/view1_frontal.jpg") == {
        "id": "train/patient1/study2/view1_frontal.jpg", "basename": "view1_frontal.jpg", "stem": "view1_frontal"}
    assert id_keys("4.1.46.958.1.jpg")["stem"] == "4.1.46.958.1"  # only an image extension is removed
    assert id_keys("66049acc-ee1e6b29")["stem"] == "66049acc-ee1e6b29"
    assert id_keys(r"a\b\c.png")["basename"] == "c.png"


# --- files --------------------------------------------------------------------------------------
def test_known_dice_values_and_correlation(synth, tmp_path):
    res = validate_chexmask(synth, out=tmp_path / "out", progress=False)
    inputs = res.inputs[0]
    assert (inputs.dataset, inputs.physicians) == ("Synth", ("ann1", "ann2"))
    assert res.matched_images() == {"Synth": 4} and res.unmatched.empty
    pi = res.per_image.set_index(["image_id", "structure"])
    assert len(pi) == 4 * 4
    assert pi.loc[("img0.png", "left_lung"), "dice_vs_a"] == pytest.approx(2 / 3)
    assert pi.loc[("img0.png", "left_lung"), "dice_a_vs_b"] == pytest.approx(2 / 3)
    for k in range(4):
        assert pi.loc[(f"img{k}.png", "heart"), "dice_vs_b"] == pytest.approx(1 - 0.1 * k)
        assert pi.loc[(f"img{k}.png", "heart"), "dice_vs_ab_mean"] == pytest.approx(1 - 0.05 * k)
        assert pi.loc[(f"img{k}.png", "heart"), "match_a"] == "id"
    assert set(pi["line_a"]) == {2, 3, 4, 5} and (pi["physician_a"] == "ann1").all()
    summ = res.summary.set_index(["dataset", "structure"])
    assert list(res.summary["dataset"].unique()) == ["Synth", "all"]
    heart = summ.loc[("Synth", "heart")]
    assert heart["n"] == 4 and heart["dice_vs_a_mean"] == 1.0
    assert heart["pearson_rca_vs_b"] == pytest.approx(1.0) and heart["spearman_rca_vs_ab_mean"] == pytest.approx(1.0)
    assert heart["pearson_rca_vs_ab_mean"] == pytest.approx(1.0)
    assert math.isnan(heart["pearson_rca_vs_a"])  # true Dice vs A is constant
    assert heart["mae_rca_vs_ab_mean"] == pytest.approx(np.mean([abs((0.9 - 0.05 * k) - (1 - 0.05 * k)) for k in range(4)]))
    assert summ.loc[("all", "heart"), "n"] == 4
    out = tmp_path / "out"
    for name in ("per_image.csv", "summary.csv", "unmatched.csv", "rca_vs_true_dice.png", "dice_boxplots.png"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "rca_vs_true_dice.png").read_bytes()[:4] == b"\x89PNG"
    assert "Synth" in format_summary(res.summary) and "A = ann1, B = ann2" in format_summary(res.summary)


def test_non_square_original_resolution_row_is_mapped_to_1024(tmp_path):
    """A CheXmask row stored at 512 x 256 (h x w) and one at 600 x 450: padded to a centred square and
    resized to 1024 (nearest) before the comparison with the physicians' 1024 x 1024 masks."""
    orig = {"right_lung": rect(100, 200, 50, 120, 512, 256), "left_lung": rect(100, 200, 140, 210, 512, 256),
            "heart": rect(250, 350, 90, 170, 512, 256)}
    tf = SquareResize(512, 256, N)
    # the same rectangles drawn directly in the 1024 space: rows x2, cols (c + 128) x2
    in_1024 = {k: rect(2 * r0, 2 * r1, 2 * (c0 + 128), 2 * (c1 + 128))
               for k, (r0, r1, c0, c1) in {"right_lung": (100, 200, 50, 120), "left_lung": (100, 200, 140, 210),
                                           "heart": (250, 350, 90, 170)}.items()}
    assert tf.pad_left == 128 and tf.scale == 2
    orig2 = {k: rect(100, 300, 100 + 110 * i, 200 + 110 * i, 600, 450) for i, k in enumerate(("right_lung", "left_lung", "heart"))}
    s = N / 600  # side 600, pad_left 75
    in_1024_2 = {k: rect(round(100 * s), round(300 * s), round((100 + 110 * i + 75) * s), round((200 + 110 * i + 75) * s))
                 for i, k in enumerate(("right_lung", "left_lung", "heart"))}
    write(tmp_path / "D.csv", HG_HEADER, [hg_row("wide.png", orig), hg_row("odd.png", orig2)])
    write(tmp_path / "D_a_annotations.csv", PHYS_HEADER, [phys_row("wide.png", in_1024), phys_row("odd.png", in_1024_2)])
    res = validate_chexmask(tmp_path / "D.csv", annotations=[tmp_path / "D_a_annotations.csv"], progress=False)
    pi = res.per_image.set_index(["image_id", "structure"])
    assert pi.loc[("wide.png", "heart"), "resized"] and (pi.loc[("wide.png", "heart"), ["height", "width"]] == [512, 256]).all()
    for organ in ("right_lung", "left_lung", "heart"):
        assert pi.loc[("wide.png", organ), "dice_vs_a"] == 1.0
        assert pi.loc[("odd.png", organ), "dice_vs_a"] > 0.98
    assert math.isnan(pi.loc[("wide.png", "heart"), "dice_vs_b"]) and res.inputs[0].physicians == ("a",)
    # without the centred padding (a plain stretch to 1024) the masks would not line up
    import cv2

    stretched = cv2.resize(orig["heart"].astype(np.uint8), (N, N), interpolation=cv2.INTER_NEAREST) > 0
    assert dice(stretched, in_1024["heart"]) < 0.7


def test_unmatched_physician_row_is_reported_not_dropped(synth, tmp_path, caplog, capsys):
    extra = write(synth / "Synth_ann1_annotations.csv", PHYS_HEADER,
                  [phys_row(f"img{k}.png", base_masks()) for k in range(4)] + [phys_row("nowhere.png", base_masks())])
    with caplog.at_level(logging.WARNING):
        res = validate_chexmask(synth, progress=False)
    assert res.matched_images() == {"Synth": 4}
    (u,) = res.unmatched.itertuples(index=False)
    assert (u.physician, u.line, u.image_id, u.file) == ("ann1", 6, "nowhere.png", str(extra))
    assert "no CheXmask row matches" in u.reason
    assert "nowhere.png" in caplog.text and f"{extra}:6" in caplog.text
    out = tmp_path / "o"
    rc = main(["chexmask", "validate", "--subsets", str(synth), "--out", str(out), "--quiet", "--no-plots"])
    printed = capsys.readouterr().out
    assert rc == 0 and f"unmatched   {extra}:6: physician ann1's row 'nowhere.png'" in printed
    assert "nowhere.png" in (out / "unmatched.csv").read_text() and not (out / "dice_boxplots.png").exists()
    rc = main(["chexmask", "validate", "--subsets", str(synth), "--out", str(out), "--quiet", "--strict"])
    assert rc == 1


def test_matching_by_path_basename_stem_mapping_and_ambiguity(tmp_path):
    m = base_masks()
    hg = [hg_row("train/p1/s1/view1_frontal.jpg", m), hg_row("train/p2/s1/view1_frontal.jpg", m),
          hg_row("images_001/images/00000001_000.png", m), hg_row("00000002_000.png", m), hg_row("5780e843", m)]
    phys = [phys_row("train/p2/s1/view1_frontal.jpg", m), phys_row("00000001_000.png", m), phys_row("image_1.png", m),
            phys_row("5780e843.png", m), phys_row("view1_frontal.jpg", m)]
    write(tmp_path / "D.csv", HG_HEADER, hg)
    write(tmp_path / "D_x_annotations.csv", PHYS_HEADER, phys)
    (tmp_path / "D_name_mapping.csv").write_text("Original,New\nDatasets/Chest8/images_002/images/00000002_000.png,image_1.png\n")
    (inputs,) = discover_subsets(tmp_path)
    assert inputs.name_mapping == tmp_path / "D_name_mapping.csv"
    res = validate_chexmask(inputs)
    got = dict(zip(res.per_image.image_id, res.per_image.match_a))
    assert got == {"train/p2/s1/view1_frontal.jpg": "id", "images_001/images/00000001_000.png": "basename",
                   "00000002_000.png": "id+name_mapping", "5780e843": "stem"}
    (u,) = res.unmatched.itertuples(index=False)
    assert u.image_id == "view1_frontal.jpg" and u.reason.startswith("ambiguous: 2 CheXmask rows") and "lines 2, 3" in u.reason


def test_discovery_and_bad_inputs(synth, tmp_path, capsys):
    (synth / "Other.csv").write_text("x\n")  # no annotation siblings: not a dataset
    (inputs,) = discover_subsets(synth)
    assert inputs.csv.name == "Synth.csv" and [p.name for p in inputs.annotations] == [
        "Synth_ann1_annotations.csv", "Synth_ann2_annotations.csv"]
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "D.csv").write_text("x\n")
    with pytest.raises(CxrkitError, match="no <name>.csv with"):
        discover_subsets(tmp_path / "empty")
    with pytest.raises(CxrkitError, match="not a folder"):
        discover_subsets(tmp_path / "missing")
    # explicit form: single CSV with its annotations; missing file; --csv without --annotations
    out = tmp_path / "out"
    rc = main(["chexmask", "validate", "--csv", str(synth / "Synth.csv"), "--annotations",
               str(synth / "Synth_ann1_annotations.csv"), str(synth / "Synth_ann2_annotations.csv"),
               "--dataset", "S", "--out", str(out), "--quiet"])
    printed = capsys.readouterr().out
    assert rc == 0 and "matched images: S 4 (total 4)" in printed and "S               heart" in printed
    rc = main(["chexmask", "validate", "--csv", str(synth / "Synth.csv"), "--annotations", str(synth / "nope.csv"), "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and "nope.csv: annotation CSV not found" in err
    rc = main(["chexmask", "validate", "--csv", str(synth / "Synth.csv"), "--out", str(out)])
    assert rc == 2 and "--annotations" in capsys.readouterr().err
    three = [str(synth / "Synth_ann1_annotations.csv")] * 3
    with pytest.raises(CxrkitError, match="given twice"):
        validate_chexmask(synth / "Synth.csv", annotations=three)


def test_bad_physician_row_names_file_and_line(synth, tmp_path, capsys):
    rows = [phys_row(f"img{k}.png", base_masks()) for k in range(4)]
    rows[2]["Heart"] = "5 10 3"  # odd number of RLE values
    bad = write(synth / "Synth_ann2_annotations.csv", PHYS_HEADER, rows)
    rc = main(["chexmask", "validate", "--subsets", str(synth), "--out", str(tmp_path / "o"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 1 and f"{bad}:4" in err and "Heart" in err and "img2.png" in err
    # the same image twice in one physician file is bad input too
    write(synth / "Synth_ann2_annotations.csv", PHYS_HEADER, [phys_row("img1.png", base_masks())] * 2)
    with pytest.raises(CxrkitError, match=r"_ann2_annotations\.csv:3: row 'img1\.png': the same image id is on line 2"):
        validate_chexmask(synth)


def test_padchest_style_swapped_dice_is_repaired(tmp_path):
    m = base_masks()
    write(tmp_path / "P.csv", HG_HEADER, [hg_row("p.png", m, mean="0.92", mx="0.88", Height="", Width="")])
    write(tmp_path / "P_a_annotations.csv", PHYS_HEADER, [phys_row("p.png", m)])
    res = validate_chexmask(tmp_path)
    row = res.per_image.iloc[0]
    assert row.dice_rca_mean == 0.88 and row.dice_rca_max == 0.92 and row.dice_swapped and not row.resized


# --- real data ----------------------------------------------------------------------------------
REAL_COUNTS = {"CANDID-PTX": 50, "CheXpert": 56, "ChestX-Ray8": 50, "MIMIC-CXR-JPG": 49, "Padchest": 50, "VinDr-CXR": 50}


@pytest.mark.realdata
def test_real_subsets_validation(tmp_path):
    folder = shared_path("chexmask", "subsets")
    res = validate_chexmask(folder, out=tmp_path / "out", plots=False)
    assert res.matched_images() == REAL_COUNTS
    assert res.unmatched.empty  # every physician row of both physicians matches its CheXmask row
    pi = res.per_image
    assert set(pi.match_a) == {"id"} and set(pi.match_b) == {"id"}  # by the exact id (no mapping needed)
    assert {i.dataset: i.physicians for i in res.inputs} == {k: ("julia", "martina") for k in REAL_COUNTS}
    assert next(i for i in res.inputs if i.dataset == "ChestX-Ray8").name_mapping is not None
    assert not pi.resized.any() and pi[pi.structure == AVERAGE].dice_swapped.sum() == 30  # Padchest's swapped rows
    s = res.summary.set_index(["dataset", "structure"])
    for name in [*REAL_COUNTS, "all"]:
        for structure in ("right_lung", "left_lung", "heart", AVERAGE):
            row = s.loc[(name, structure)]
            # the physicians corrected HybridGNet's masks: high agreement everywhere
            assert row.dice_a_vs_b_mean > 0.9 and row.dice_vs_a_mean > 0.9 and row.dice_vs_b_mean > 0.9, (name, structure)
            # RCA is a conservative (under-)estimate that still tracks the true Dice
            assert np.isfinite([row.pearson_rca_vs_a, row.pearson_rca_vs_b, row.pearson_rca_vs_ab_mean,
                                row.spearman_rca_vs_ab_mean]).all(), (name, structure)
            assert row.pearson_rca_vs_ab_mean > 0.3, (name, structure)
            assert row.dice_rca_mean_mean < row.dice_vs_ab_mean_mean, (name, structure)
    allavg = s.loc[("all", AVERAGE)]
    assert allavg.n == 305
    assert allavg.dice_a_vs_b_mean == pytest.approx(0.961, abs=0.001)
    assert allavg.dice_vs_a_mean == pytest.approx(0.951, abs=0.001) and allavg.dice_vs_b_mean == pytest.approx(0.968, abs=0.001)
    assert allavg.pearson_rca_vs_ab_mean == pytest.approx(0.67, abs=0.01)
    # the lungs agree better than the heart (the heart's lower border is guessed)
    assert s.loc[("all", "heart"), "dice_a_vs_b_mean"] < s.loc[("all", "left_lung"), "dice_a_vs_b_mean"]
    # cross-check one value against a direct decode of the two files
    rec = pi[(pi.dataset == "VinDr-CXR") & (pi.structure == "heart")].iloc[0]
    hg = _real_row(folder / "VinDr-CXR.csv", "image_id", rec.image_id)
    ann = _real_row(folder / "VinDr-CXR_martina_annotations.csv", "ImageID", rec.image_id)
    assert rec.dice_vs_b == pytest.approx(dice(decode(hg["Heart"], N, N), decode(ann["Heart"], N, N)))
    assert (tmp_path / "out" / "summary.csv").exists() and (tmp_path / "out" / "per_image.csv").exists()


def _real_row(path: Path, id_column: str, image_id: str) -> dict[str, str]:
    csv.field_size_limit(2**31 - 1)
    with open(path, newline="") as fh:
        return next(r for r in csv.DictReader(fh) if r[id_column] == image_id)

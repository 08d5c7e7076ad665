import gzip

import numpy as np
import pytest
from conftest import shared_path

from cxrkit.data.nih import parse_age, patient_of, read_boxes, read_metadata
from cxrkit.errors import CxrkitError
from cxrkit.findings import FINDINGS

H2017 = "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y],\n"
H2020 = "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]\n"
HKAG = "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,OriginalImageWidth,OriginalImageHeight,OriginalImagePixelSpacing_x,OriginalImagePixelSpacing_y\n"


def _write(tmp_path, name, text, gz=False):
    p = tmp_path / name
    if gz:
        with gzip.open(p, "wt") as fh:
            fh.write(text)
    else:
        p.write_text(text)
    return p


def test_2017_format_ages_and_trailing_comma(tmp_path):
    p = _write(tmp_path, "d.csv", H2017
               + "00000001_000.png,Cardiomegaly,000,00000001,058Y,M,PA,2682,2749,0.143,0.143\n"
               + "00000002_000.png,No Finding,000,00000002,011M,F,AP,2500,2048,0.171,0.171\n"
               + "00000003_000.png,Infiltration|Effusion,000,00000003,001D,F,AP,2500,2048,0.168,0.168\n")
    df = read_metadata(p)
    assert df.attrs["format"] == "2017"
    assert df["Patient Age"].tolist() == pytest.approx([58.0, 11 / 12, 1 / 365.25])
    assert df["Patient ID"].tolist() == [1, 2, 3]
    assert df["Finding Labels"].tolist() == ["Cardiomegaly", "No Finding", "Infiltration|Effusion"]
    assert df["Cardiomegaly"].tolist() == [1, 0, 0]
    assert df.loc[2, ["Effusion", "Infiltration"]].tolist() == [1, 1]
    assert df[list(FINDINGS)].to_numpy()[1].sum() == 0


def test_v2020_and_kaggle_formats_detected(tmp_path):
    p = _write(tmp_path, "v.csv.gz", H2020 + "00000001_000.png,Cardiomegaly,0,1,57,M,PA,2682,2749,0.14300000000000002,0.14300000000000002\n", gz=True)
    df = read_metadata(p)
    assert df.attrs["format"] == "v2020"
    assert df["Patient Age"][0] == 57.0 and df["PixelSpacing_x"][0] == 0.143
    k = _write(tmp_path, "k.csv", HKAG + "00000013_005.png,Emphysema|No_Finding,005,00000013,060Y,M,AP,3056,2544,0.139,0.139\n")
    dk = read_metadata(k)
    assert dk.attrs["format"] == "kaggle" and dk["Finding Labels"][0] == "Emphysema"


@pytest.mark.parametrize(
    "row,match",
    [("00000001_000.png,Cardiomegaly,000,00000001,abcY,M,PA,2682,2749,0.143,0.143", r"line 3: Patient Age 'abcY'"),
     ("00000001_000.png,Fracture,000,00000001,058Y,M,PA,2682,2749,0.143,0.143", r"line 3: .*'Fracture'"),
     ("00000001_000.png,Cardiomegaly,000,00000001,058Y,X,PA,2682,2749,0.143,0.143", r"line 3: Patient Gender 'X'"),
     ("00000001_000.png,Cardiomegaly,000,00000001,058Y,M,PA,wide,2749,0.143,0.143", r"line 3: Width 'wide'"),
     ("00000001_000.png,Cardiomegaly,000", r"line 3: expected 11 fields")],
)
def test_bad_row_names_file_line_value(tmp_path, row, match):
    good = "00000001_000.png,Cardiomegaly,000,00000001,058Y,M,PA,2682,2749,0.143,0.143\n"
    p = _write(tmp_path, "bad.csv", H2017 + good + row + "\n")
    with pytest.raises(CxrkitError, match="bad.csv: " + match):
        read_metadata(p)


def test_unknown_header(tmp_path):
    with pytest.raises(CxrkitError, match="unrecognised NIH metadata header"):
        read_metadata(_write(tmp_path, "x.csv", "a,b,c\n1,2,3\n"))


def test_parse_age_and_patient():
    assert parse_age("058Y") == 58 and parse_age("12") == 12 and parse_age("006M") == 0.5
    with pytest.raises(ValueError):
        parse_age("")
    assert patient_of("00000013_005.png") == 13
    with pytest.raises(CxrkitError):
        patient_of("image_1.png")


def test_boxes_infiltrate_alias_and_trailing_columns(tmp_path):
    p = _write(tmp_path, "b.csv", "Image Index,Finding Label,Bbox [x,y,w,h],,,\n"
               "00013118_008.png,Infiltrate,225.08,547.01,86.77,79.18,,,\n"
               "00014716_007.png,Atelectasis,686.1,131.5,185.4,313.4\n")
    b = read_boxes(p)
    assert b["Finding"].tolist() == ["Infiltration", "Atelectasis"]
    assert b.loc[0, ["x", "y", "w", "h"]].tolist() == pytest.approx([225.08, 547.01, 86.77, 79.18])
    bad = _write(tmp_path, "bb.csv", "Image Index,Finding Label,Bbox [x,y,w,h],,,\n00013118_008.png,Mass,1,2,three,4\n")
    with pytest.raises(CxrkitError, match="bb.csv: line 2"):
        read_boxes(bad)


@pytest.mark.realdata
def test_real_2017_and_v2020_agree():
    old = read_metadata(shared_path("nih", "Data_Entry_2017.csv.gz"))
    new = read_metadata(shared_path("nih", "Data_Entry_2017_v2020.csv.gz"))
    assert (old.attrs["format"], new.attrs["format"]) == ("2017", "v2020")
    assert len(old) == len(new) == 112_120
    new = new.set_index("Image Index").loc[old["Image Index"]].reset_index()
    for col in ("Patient Gender", "View Position", "Width", "Height", "PixelSpacing_x", "PixelSpacing_y", "Patient ID"):
        assert (old[col].to_numpy() == new[col].to_numpy()).all(), col
    differ = (old["Finding Labels"].to_numpy() != new["Finding Labels"].to_numpy()).sum()
    assert differ == 181  # the 2020 relabel, as documented in ../shared/data/README.md


@pytest.mark.realdata
def test_real_kaggle_sample_and_boxes():
    k = read_metadata(shared_path("nih", "sample_labels.csv"))
    assert k.attrs["format"] == "kaggle" and len(k) == 5606
    b = read_boxes(shared_path("nih", "BBox_List_2017.csv.gz"))
    assert len(b) == 984 and b["Image Index"].nunique() == 880
    assert set(b["Finding"]) <= set(FINDINGS) and b["Finding"].nunique() == 8
    assert np.isfinite(b[["x", "y", "w", "h"]].to_numpy()).all()

import pytest
from conftest import shared_path

from cxrkit.data.splits import (
    check_patient_disjoint,
    official_split,
    patient_split,
    read_image_list,
)
from cxrkit.errors import CxrkitError

IMAGES = [f"{p:08d}_{k:03d}.png" for p in range(1, 41) for k in range(3)]


def test_patient_split_is_seeded_and_disjoint():
    a = patient_split(IMAGES, 0.25, seed=1)
    b = patient_split(IMAGES, 0.25, seed=1)
    c = patient_split(IMAGES, 0.25, seed=2)
    assert a == b and a != c
    assert len(a["val"]) == 30 and len(a["train"]) == 90
    assert {x[:8] for x in a["train"]}.isdisjoint({x[:8] for x in a["val"]})


def test_leak_is_reported_with_patient():
    with pytest.raises(CxrkitError, match=r"patient 7 in \['test', 'train'\]"):
        check_patient_disjoint({"train": ["00000007_000.png"], "test": ["00000007_001.png"]})


def test_bad_fraction_and_list(tmp_path):
    with pytest.raises(CxrkitError, match="val_fraction"):
        patient_split(IMAGES, 1.5)
    p = tmp_path / "l.txt"
    p.write_text("00000001_000.png\nhello\n")
    with pytest.raises(CxrkitError, match="line 2: 'hello'"):
        read_image_list(p)


@pytest.mark.realdata
def test_official_split_sizes_no_overlap():
    s = official_split(shared_path("nih"))
    assert (len(s["train_val"]), len(s["test"])) == (86_524, 25_596)
    tv = patient_split(s["train_val"], 0.1, seed=0)
    check_patient_disjoint({"train": tv["train"], "val": tv["val"], "test": s["test"]})
    assert len(tv["train"]) + len(tv["val"]) == 86_524

import pytest

from cxrkit.errors import CxrkitError
from cxrkit.findings import (
    FINDINGS,
    NO_FINDING,
    canonical_finding,
    label_vector,
    parse_finding_labels,
)


def test_order_is_nih():
    assert FINDINGS[:3] == ("Atelectasis", "Cardiomegaly", "Effusion")
    assert FINDINGS[-2:] == ("Pleural_Thickening", "Hernia")
    assert len(FINDINGS) == 14


@pytest.mark.parametrize(
    "raw,canon",
    [("Infiltrate", "Infiltration"), ("No_Finding", NO_FINDING), ("no finding", NO_FINDING),
     ("Pleural Thickening", "Pleural_Thickening"), (" Effusion ", "Effusion"), ("HERNIA", "Hernia")],
)
def test_aliases(raw, canon):
    assert canonical_finding(raw) == canon


def test_unknown_finding_names_value_and_choices():
    with pytest.raises(CxrkitError, match=r"'Fracture'.*Atelectasis"):
        canonical_finding("Fracture")


def test_parse_and_vector():
    assert parse_finding_labels("Cardiomegaly|Infiltrate") == ["Cardiomegaly", "Infiltration"]
    assert parse_finding_labels("No Finding") == []
    v = label_vector(["Hernia", "Atelectasis"])
    assert v[0] == 1 and v[13] == 1 and sum(v) == 2

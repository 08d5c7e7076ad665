"""The 14 NIH ChestX-ray14 findings, their canonical order, and the aliases real files use.

The order is the NIH README's and every label vector, table column and CLI output in cxrkit uses it.
"""

from __future__ import annotations

import re
from typing import Iterable

from cxrkit.errors import InputError

FINDINGS: tuple[str, ...] = (
    "Atelectasis",
    "Cardiomegaly",
    "Effusion",
    "Infiltration",
    "Mass",
    "Nodule",
    "Pneumonia",
    "Pneumothorax",
    "Consolidation",
    "Edema",
    "Emphysema",
    "Fibrosis",
    "Pleural_Thickening",
    "Hernia",
)
NO_FINDING = "No Finding"
FINDING_INDEX: dict[str, int] = {name: i for i, name in enumerate(FINDINGS)}


def _key(name: str) -> str:
    return re.sub(r"[\s_\-]+", "", name.strip().lower())


# Spellings seen in real files: BBox_List_2017 writes "Infiltrate", the Kaggle sample "No_Finding",
# other tools "Pleural Thickening", "Effusions", CheXpert "Pleural Effusion".
_ALIASES: dict[str, str] = {_key(n): n for n in FINDINGS}
_ALIASES.update(
    {
        _key("Infiltrate"): "Infiltration",
        _key("Infiltrates"): "Infiltration",
        _key("Effusions"): "Effusion",
        _key("Pleural Effusion"): "Effusion",
        _key("Pleural Thickening"): "Pleural_Thickening",
        _key("Nodules"): "Nodule",
        _key("No Finding"): NO_FINDING,
        _key("No_Finding"): NO_FINDING,
        _key("NoFinding"): NO_FINDING,
        _key("Normal"): NO_FINDING,
    }
)


def canonical_finding(name: str) -> str:
    """Map a finding name as written in a real file to its canonical spelling.

    Returns one of :data:`FINDINGS` or :data:`NO_FINDING`; raises :class:`CxrkitError` naming the
    value and the valid choices otherwise.
    """
    try:
        return _ALIASES[_key(name)]
    except KeyError:
        raise InputError(
            f"unknown finding {name!r}; expected one of {', '.join(FINDINGS)} or {NO_FINDING!r}"
        ) from None


def parse_finding_labels(text: str) -> list[str]:
    """Split an NIH ``Finding Labels`` cell (``A|B``) into canonical names (``No Finding`` -> [])."""
    names = [canonical_finding(t) for t in str(text).split("|") if t.strip()]
    return [n for n in names if n != NO_FINDING]


def label_vector(labels: Iterable[str]) -> list[int]:
    """14-element 0/1 vector in :data:`FINDINGS` order for canonical finding names."""
    vec = [0] * len(FINDINGS)
    for name in labels:
        vec[FINDING_INDEX[canonical_finding(name)]] = 1
    return vec

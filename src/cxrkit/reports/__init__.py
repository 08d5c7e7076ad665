"""Report label mining: find the 14 NIH findings in radiology report text, with negation and
uncertainty, and the evidence for every decision.

>>> from cxrkit.reports import label_text
>>> r = label_text("Mild cardiomegaly. No pleural effusion. Cannot exclude pneumonia.")
>>> r.labels["Cardiomegaly"], r.labels["Effusion"], r.labels["Pneumonia"]
(1, 0, -1)

Offsets in evidence are 0-based character offsets into the labeled text, end exclusive.
The rules are data files (``cxrkit/reports/rules/*.toml``), see :mod:`cxrkit.reports.rules`.
"""

from cxrkit.reports.labeler import (
    NEGATIVE,
    POSITIVE,
    UNCERTAIN,
    Evidence,
    Labeler,
    ReportLabels,
    label_text,
)
from cxrkit.reports.rules import RuleSet, default_rules_dir, load_rules

__all__ = [
    "Evidence",
    "Labeler",
    "ReportLabels",
    "RuleSet",
    "label_text",
    "load_rules",
    "default_rules_dir",
    "POSITIVE",
    "NEGATIVE",
    "UNCERTAIN",
]

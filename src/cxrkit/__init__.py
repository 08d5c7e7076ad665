"""cxrkit: a toolkit for NIH ChestX-ray14 and CheXmask.

The everyday functions are available from the top level, imported on first use (``import cxrkit`` stays light):

======================  =============================================================================
``read_image``          a PNG / JPEG / DICOM radiograph at full fidelity (:mod:`cxrkit.io.images`)
``read_metadata``       any NIH ChestX-ray14 metadata format as one canonical table (:mod:`cxrkit.data.nih`)
``iter_chexmask``       stream a CheXmask CSV (plain or gzip) as records (:mod:`cxrkit.data.chexmask`)
``create_model``        build a registered model, optionally with its shipped weights (:mod:`cxrkit.models`)
``load_model``          a registry name or checkpoint, checked for task and outputs, on a device
``list_models``         the registry's names
``segment``             lungs and heart landmarks, masks, CTR (and RCA) per image (:mod:`cxrkit.api`)
``predict``             a classifier's probabilities, heatmaps and boxes per image
``analyze``             the ``cxrkit analyze`` JSON document of one image
``estimate_rca``        RCA estimate of a segmentation's Dice
``label_reports``       radiology report texts to the 14 findings (1 / 0 / -1 / None)
======================  =============================================================================

Layers (lower never imports higher; ``tests/test_architecture.py`` checks it): ``io`` -> ``data``, ``metrics``,
``viz`` -> ``models``, ``engine``, ``training`` -> the tasks (``classification``, ``segmentation``, ``qc``,
``anatomy``, ``reports``, ``stats``, ``warehouse``) -> ``benchmarks`` -> the apps (``analysis``, ``batch``,
``service``, ``demo``, ``cli``, ``api``). See CONTRIBUTING.md.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

from cxrkit.findings import FINDINGS, NO_FINDING

__version__ = "0.1.0"

# name -> module that defines it (imported on first access, PEP 562).
_LAZY: dict[str, str] = {
    "read_image": "cxrkit.io.images",
    "read_metadata": "cxrkit.data.nih",
    "create_model": "cxrkit.models",
    "load_model": "cxrkit.models",
    "list_models": "cxrkit.models",
    "segment": "cxrkit.api",
    "predict": "cxrkit.api",
    "analyze": "cxrkit.api",
    "estimate_rca": "cxrkit.api",
    "label_reports": "cxrkit.api",
    "Segmentation": "cxrkit.api",
}
_ALIASES: dict[str, tuple[str, str]] = {"iter_chexmask": ("cxrkit.data.chexmask", "iter_records")}

__all__ = ["FINDINGS", "NO_FINDING", "__version__", *_LAZY, *_ALIASES]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name in _ALIASES:
        module, attr = _ALIASES[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'cxrkit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)


logging.getLogger(__name__).addHandler(logging.NullHandler())

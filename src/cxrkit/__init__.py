"""cxrkit: a toolkit for NIH ChestX-ray14 and CheXmask.

Layers (lower never imports higher): ``io`` -> ``data`` -> ``stats`` / ``reports`` -> ``cli``.
``io`` and ``data`` import without torch; torch enters at ``models``.
"""

from __future__ import annotations

import logging

from cxrkit.findings import FINDINGS, NO_FINDING

__version__ = "0.1.0"
__all__ = ["FINDINGS", "NO_FINDING", "__version__"]

logging.getLogger(__name__).addHandler(logging.NullHandler())

"""Locating the shared real-data folder (``../shared/data`` in a development checkout), for the CLI's defaults only.

Library code never reads it: commands whose inputs default to real data (``bench``, ``segmentation train``,
``registration train``, ``reports eval``) resolve those defaults here and pass explicit paths on.

Commands that default to real data look, in order, under ``$CXRKIT_SHARED_DATA``, ``../shared/data``
relative to the working directory, and ``../shared/data`` relative to the source checkout.
"""

from __future__ import annotations

import os
from pathlib import Path

from cxrkit.errors import InputError


def shared_candidates() -> list[Path]:
    out: list[Path] = []
    env = os.environ.get("CXRKIT_SHARED_DATA")
    if env:
        out.append(Path(env))
    out.append(Path.cwd().parent / "shared" / "data")
    out.append(Path(__file__).resolve().parents[3].parent / "shared" / "data")
    return out


def find_shared(relative: str, hint: str) -> Path:
    """First existing ``<shared>/<relative>``; otherwise a :class:`CxrkitError` listing where it looked
    and ``hint`` (which option to pass instead)."""
    tried = [c / relative for c in shared_candidates()]
    for p in tried:
        if p.exists():
            return p
    raise InputError(f"{relative} not found (looked in {', '.join(map(str, tried))}); {hint}")

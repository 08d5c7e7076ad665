"""Shared fixtures: the path to ../shared/data and the `realdata` skip."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("CXRKIT_SHARED_DATA", REPO.parent / "shared" / "data"))


def shared_path(*parts: str) -> Path:
    """Path under ../shared/data; skips the calling test with a clear reason when it is absent."""
    p = SHARED_DATA.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"real data not available: {p} is missing (set CXRKIT_SHARED_DATA or place ../shared/data)")
    return p


@pytest.fixture
def shared() -> "type[shared_path]":
    return shared_path

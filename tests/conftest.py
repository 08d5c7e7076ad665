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


# --- Hypothesis profiles for the fuzz tests (tests/test_fuzz_*.py; see docs/testing.md) -------------------
# `default`: modest example counts and a generous per-example deadline (the machine may be loaded), so the
# fuzz tests stay fast in the normal suite; `long` (HYPOTHESIS_PROFILE=long): 20x the examples, no deadline,
# for a fuzz campaign. Tests scale their own counts from settings().max_examples. Failures are saved in
# .hypothesis/ (it ignores itself for git) and replayed first on the next run.
try:
    from hypothesis import HealthCheck, settings as _hypothesis_settings
except ImportError:  # hypothesis is in the `test` extra; without it only tests/test_fuzz_*.py fail to import
    pass
else:
    _fuzz_common = dict(suppress_health_check=[HealthCheck.too_slow], print_blob=True)
    _hypothesis_settings.register_profile("default", max_examples=50, deadline=2000, **_fuzz_common)
    _hypothesis_settings.register_profile("long", max_examples=1000, deadline=None, **_fuzz_common)
    _hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

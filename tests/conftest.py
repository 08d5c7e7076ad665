"""Shared fixtures: the path to ../shared/data and the `realdata` skip; CI's no-skip rule.

In a user's clone a test that needs ``../shared/data``, Chromium or an optional extra skips with the reason.
With ``CXRKIT_REQUIRE_REALDATA=1`` (set by ``.ci/run``) every skip is a failure instead, whatever raised it
(``shared_path``, ``pytest.importorskip`` at module level or in a test, ``pytest.skip``): a green CI means
every real-data, browser and Ray test ran. The summary prints the skip count either way.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("CXRKIT_SHARED_DATA", REPO.parent / "shared" / "data"))
REQUIRE_ALL = os.environ.get("CXRKIT_REQUIRE_REALDATA", "") not in ("", "0")
_SKIPS: list[str] = []


def _no_skip(report) -> None:
    """Record a skip; under CXRKIT_REQUIRE_REALDATA=1 turn it into a failure naming the reason."""
    if not report.skipped or getattr(report, "wasxfail", None) is not None:
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    _SKIPS.append(f"{report.nodeid}: {reason}")
    if REQUIRE_ALL:
        report.outcome = "failed"
        report.longrepr = f"skipped, but CXRKIT_REQUIRE_REALDATA=1 requires every test to run: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _no_skip(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    _no_skip(outcome.get_result())


def pytest_terminal_summary(terminalreporter):
    mode = "CXRKIT_REQUIRE_REALDATA=1: skips are failures" if REQUIRE_ALL else "skips allowed (user mode)"
    terminalreporter.write_line(f"cxrkit: {len(_SKIPS)} skipped ({mode})")
    for line in _SKIPS[:20]:
        terminalreporter.write_line(f"  skipped {line}")


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
    from hypothesis import HealthCheck
    from hypothesis import settings as _hypothesis_settings
except ImportError:  # hypothesis is in the `test` extra; without it only tests/test_fuzz_*.py fail to import
    pass
else:
    _fuzz_common = dict(suppress_health_check=[HealthCheck.too_slow], print_blob=True)
    _hypothesis_settings.register_profile("default", max_examples=50, deadline=2000, **_fuzz_common)
    _hypothesis_settings.register_profile("long", max_examples=1000, deadline=None, **_fuzz_common)
    _hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

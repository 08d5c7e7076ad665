"""Every benchmark script in bench/ still runs: each ``bench/bench_*.py`` with ``--tiny`` (a few items, one
repeat, seconds) in a subprocess. No figure is asserted (timings are not tests); the script must exit 0 and
print something. Scripts are found by globbing, so a new bench script is covered automatically and must
accept ``--tiny``.

Scripts that fall back to the bundled sample (``src/cxrkit/demo/sample``) run everywhere; the ones that
need ``../shared/data`` (:data:`NEEDS_SHARED`) are marked ``realdata`` and skip with a reason without it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SHARED_DATA, shared_path

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(p.name for p in (REPO / "bench").glob("bench_*.py"))

#: script -> the path under ../shared/data it cannot run without (the others fall back to the bundled sample)
NEEDS_SHARED = {"bench_rca.py": ("segmentation", "jsrt"), "bench_precision.py": ("segmentation", "jsrt")}
#: script -> module it imports that only an optional extra provides (in the ``test`` extra, so CI runs it)
NEEDS_MODULE = {"bench_batch.py": "ray", "bench_service.py": "httpx", "bench_service_soak.py": "httpx", "bench_warehouse.py": "duckdb"}
TIMEOUT_S = 900  # generous: a loaded 2-core machine; each script takes seconds on an idle one


def _params():
    for name in SCRIPTS:
        marks = [pytest.mark.realdata] if name in NEEDS_SHARED else []
        yield pytest.param(name, marks=marks, id=name)


def test_bench_scripts_found():
    assert "bench_pipeline.py" in SCRIPTS and "bench_rle.py" in SCRIPTS and len(SCRIPTS) >= 12, SCRIPTS


@pytest.mark.slow
@pytest.mark.parametrize("name", list(_params()))
def test_bench_script_runs_tiny(name):
    if name in NEEDS_SHARED:
        shared_path(*NEEDS_SHARED[name])
    if name in NEEDS_MODULE:
        pytest.importorskip(NEEDS_MODULE[name])
    # (TMPDIR stays the system's: Ray's socket paths under a pytest tmp_path exceed the AF_UNIX limit)
    env = dict(os.environ, CXRKIT_SHARED_DATA=str(SHARED_DATA), RAY_USAGE_STATS_ENABLED="0")
    proc = subprocess.run([sys.executable, str(REPO / "bench" / name), "--tiny"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{name} --tiny exited {proc.returncode}:\n{out[-4000:]}"
    assert proc.stdout.strip(), f"{name} --tiny printed nothing:\n{out[-2000:]}"


#: the other scripts in bench/ and the test that runs each (``_*.py`` are helper modules the scripts import)
OTHER_SCRIPTS = {
    "lesion_seeds_table.py": "tests/test_lesion_bench_cli.py::test_bench_lesions_seeds_summary",
    "render_docs.py": "tests/test_docs_figures.py",
    "select_rca_reference.py": "test_select_rca_reference_tiny (here)",
    "lesion_sweep.sh": "test_lesion_sweep_tiny (here)",
}


def test_every_bench_script_is_run_by_a_test():
    found = {p.name for p in (REPO / "bench").iterdir() if p.suffix in (".py", ".sh") and not p.name.startswith("_")}
    assert found - set(SCRIPTS) - set(OTHER_SCRIPTS) == set(), "a bench script no test runs"


@pytest.mark.slow
@pytest.mark.realdata
def test_select_rca_reference_tiny():
    nih, jsrt = shared_path("nih", "images"), shared_path("segmentation", "jsrt")
    meta = shared_path("nih", "Data_Entry_2017_v2020.csv.gz")
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "select_rca_reference.py"), "--tiny", "--images",
                           str(nih), "--metadata", str(meta), "--jsrt", str(jsrt)],
                          cwd=REPO, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "screen: images 40" in proc.stdout and '"ids": [' in proc.stdout.splitlines()[-1], proc.stdout[-2000:]


@pytest.mark.slow
def test_lesion_sweep_tiny(tmp_path):
    sample = REPO / "src" / "cxrkit" / "demo" / "sample" / "nih" / "images"
    env = dict(os.environ, CACHE=str(tmp_path / "c.npz"), WORK=str(tmp_path / "w"), NAMES="hv", SEEDS="0",
               IMAGES=str(sample), PY=sys.executable,
               EXTRA="--epochs 1 --repeats 1 --input-size 64 --workers 0 --batch-size 4")
    proc = subprocess.run(["bash", str(REPO / "bench" / "lesion_sweep.sh")], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=TIMEOUT_S, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "| hv |" in proc.stdout and (tmp_path / "w" / "hv" / "summary.json").is_file(), proc.stdout[-2000:]

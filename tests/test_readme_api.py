"""The README's Python API block runs as written and prints what it says it computes."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def _api_block() -> str:
    text = README.read_text()
    assert "## Python API" in text, "the README lost its Python API section"
    return text.split("## Python API", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]


def test_readme_python_api_block_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(_api_block(), str(README), "exec"), {"__name__": "readme"})
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("(1024, 1024) 0.")                     # heart mask shape, CTR, RCA mean
    ctr, rca = (float(v) for v in lines[0].split()[-2:])
    assert 0.3 < ctr < 0.7 and 0.5 < rca <= 1.0
    assert lines[1].startswith("['Effusion', 'Mass', 'Nodule']")
    assert lines[2] == "1.2 None 120"                                  # schema, no default classifier, landmarks
    assert lines[3] == "[{'Effusion': 0, 'Cardiomegaly': 1}]"
    assert "hybridgnet" in lines[4] and "resnet_lite_lesions" in lines[4]

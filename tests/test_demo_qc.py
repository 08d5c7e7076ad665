"""The demo's QC section: RCA beside each overlay, the deliberately broken mask flagged; without a
reference set the section explains itself instead of failing."""

from __future__ import annotations

import re

import pytest

from cxrkit.cli.main import main


@pytest.mark.realdata
def test_demo_qc_section_flags_the_broken_mask(tmp_path, shared, monkeypatch):
    monkeypatch.setenv("CXRKIT_RCA_REFERENCE", str(shared("segmentation", "jsrt")))
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--sections", "qc"]) == 0
    index = (out / "index.html").read_text()
    assert "failed" not in index
    pngs = re.findall(r'src="(qc/[^"]+\.png)"', index)
    assert len(pngs) == 7 and all((out / p).is_file() for p in pngs)
    rows = re.findall(r"<td>(model output|deliberately broken[^<]*)</td><td>([0-9.]+)</td>.*?<td>(ok|FLAGGED for review)</td></tr>",
                      index)
    assert len(rows) == 7 and rows[-1][0].startswith("deliberately broken") and rows[-1][2] == "FLAGGED for review"
    assert float(rows[-1][1]) < min(float(r[1]) for r in rows[:-1]) - 0.3  # far below every model output
    assert sum(r[2] == "ok" for r in rows[:-1]) >= 5  # the real model outputs pass (one is an AP portable film)


def test_demo_qc_section_without_reference_is_skipped_not_failed(tmp_path, monkeypatch):
    monkeypatch.setenv("CXRKIT_RCA_REFERENCE", str(tmp_path / "nowhere"))
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--sections", "qc"]) == 0
    index = (out / "index.html").read_text()
    assert "Skipped" in index and "not a reference set" in index and "failed" not in index

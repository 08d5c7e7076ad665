"""The demo's warehouse section: the bundled CheXmask rows to Parquet, the README's example query joined with the
bundled NIH metadata, and the result checked against the CSV and metadata directly."""

from __future__ import annotations

import re

from cxrkit.cli.main import main


def test_demo_warehouse_section_runs_the_example_query(tmp_path):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--sections", "warehouse"]) == 0
    index = (out / "index.html").read_text()
    assert "failed" not in index and "Skipped" not in index
    assert list((out / "chexmask_parquet").rglob("*.parquet"))
    # the example: exactly the sample's one Cardiomegaly image, whose CTR (0.528) and Dice (0.895) pass
    example = index.split("Images labelled Cardiomegaly")[1].split("</table>")[0]
    assert re.findall(r"<td>(\d{8}_\d{3}\.png)</td>", example) == ["00016037_000.png"]
    overview = index.split("Every converted row")[1].split("</table>")[0]
    assert len(re.findall(r"<tr><td>", overview)) == 4 and "Cardiomegaly|Effusion|Nodule" in overview


def test_demo_warehouse_section_without_the_scale_extra_says_how_to_install(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow -> ImportError, as when not installed
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--sections", "warehouse"]) == 0
    index = (out / "index.html").read_text()
    assert "Skipped" in index and "cxrkit[scale]" in index and "failed" not in index

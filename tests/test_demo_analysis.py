"""The demo's analysis section: `cxrkit analyze --heatmaps` output for the bundled images, linked from the page,
browsable by `cxrkit serve --results` (the folder it writes is exactly what browse mode lists)."""

from __future__ import annotations

import json
import re

from cxrkit.cli.main import main


def test_demo_analysis_section_writes_browsable_results(tmp_path, monkeypatch):
    monkeypatch.setenv("CXRKIT_RCA_REFERENCE", str(tmp_path / "nowhere"))  # QC off: the section says so
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--sections", "analysis"]) == 0
    index = (out / "index.html").read_text()
    assert "failed" not in index and "Quality control skipped" in index
    reports = re.findall(r'href="(analysis/[^"]+\.html)"', index)
    assert len(reports) == 3 and all((out / r).is_file() for r in reports)
    assert f"cxrkit serve --results {out / 'analysis'}" in index
    for report in reports:
        doc = json.loads((out / report.replace(".html", ".json")).read_text())
        assert doc["schema_version"].startswith("1.")
        assert set(doc["heatmaps"]["maps"]) == set(doc["probabilities"])
        assert len(doc["segmentation"]["landmarks"]) == 120 and 0.3 < doc["measurements"]["ctr"] < 0.8
        assert (out / report.replace(".html", ".preview.png")).is_file()

    from fastapi.testclient import TestClient

    from cxrkit.service.app import create_app

    class NoModels:  # browse mode only reads the folder; it never needs to analyze
        def analyze(self, *a, **k):
            raise AssertionError("browse mode must not analyze")

    app = create_app(lambda: NoModels(), results_dir=out / "analysis")
    with TestClient(app) as client:
        listing = client.get("/v1/results").json()
        assert listing["count"] == 3
        assert client.get(f"/v1/results/{listing['results'][0]['stem']}/image").status_code == 200

"""`cxrkit serve`: health, model cards, analyze JSON as `cxrkit analyze` (with optional heatmaps), the viewer
page, browse mode over a `cxrkit analyze` folder (no path traversal), and bounded, clear 4xx/503 answers to
bad uploads with the server staying healthy."""

from __future__ import annotations

import json
import struct
import threading
import zlib
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the service needs fastapi: pip install 'cxrkit[serve]'")
from fastapi.testclient import TestClient  # noqa: E402

from cxrkit.service.app import create_app  # noqa: E402

SAMPLES = Path(str(resources.files("cxrkit.demo") / "sample" / "nih" / "images"))
SAMPLE = SAMPLES / "00009745_000.png"


CLASSIFIER = "resnet_lite_lesions"  # the shipped benchmark model, named explicitly (no classifier is a default)


def _analyzer():
    from cxrkit.analysis.analyze import Analyzer
    from cxrkit.models import load_model

    return Analyzer(load_model(CLASSIFIER, device="cpu"), qc=None, qc_note="quality control not run in tests")


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """A folder written by `cxrkit analyze --heatmaps` (two sample images), plus files browse mode must skip."""
    from cxrkit.cli.main import main

    out = tmp_path_factory.mktemp("results")
    second = min(p for p in SAMPLES.glob("*.png") if p != SAMPLE)
    assert main(["analyze", str(SAMPLE), str(second), "--out", str(out), "--no-qc", "--quiet", "--heatmaps",
                 "--model", CLASSIFIER, "--device", "cpu"]) == 0
    outside = tmp_path_factory.mktemp("outside")
    (outside / "secret.json").write_text((out / f"{SAMPLE.stem}.json").read_text())
    (out / "link.json").symlink_to(outside / "secret.json")
    (out / "linkdir").symlink_to(outside, target_is_directory=True)  # a folder link out of the results folder
    (out / "other.json").write_text(json.dumps({"not": "an analysis"}))
    (out / "broken.json").write_text("{ not json")
    (out / ".hidden.json").write_text((out / f"{SAMPLE.stem}.json").read_text())
    (out / "sub").mkdir()
    (out / "sub" / "nested.json").write_text((out / f"{SAMPLE.stem}.json").read_text())
    (out / "nopreview.json").write_text((out / f"{SAMPLE.stem}.json").read_text())
    return out


@pytest.fixture(scope="module")
def client(results):
    with TestClient(create_app(_analyzer, max_upload_bytes=3_000_000, max_pixels=5_000_000, results_dir=results)) as c:
        yield c


def _png_header(w, h):
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk))


def test_health_models_viewer(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    body = client.get("/v1/models").json()
    names = [m["name"] for m in body["models"]]
    assert names == ["resnet_lite_lesions", "hybridgnet"] and body["classifier"] == CLASSIFIER
    cards = {m["name"]: m for m in body["models"]}
    assert cards["resnet_lite_lesions"]["provenance"]["synthetic"] is True
    assert "JSRT" in cards["hybridgnet"]["provenance"]["training_data"]
    assert cards["hybridgnet"]["provenance"]["intended_use"] and cards["hybridgnet"]["role"] == "segmenter"
    page = client.get("/")
    assert page.status_code == 200 and "cxrkit viewer" in page.text and "/v1/analyze" in page.text
    assert client.get("/openapi.json").status_code == 200


def test_analyze_returns_the_analyze_json(client, results):
    r = client.post("/v1/analyze", files={"file": ("../../etc/x ray.png", SAMPLE.read_bytes(), "image/png")})
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["schema_version"] == "1.2" and doc["image"] == "x ray.png"  # only the last path component
    assert (doc["width"], doc["height"]) == (1024, 1024) and len(doc["segmentation"]["landmarks"]) == 120
    assert "heatmaps" not in doc  # opt-in
    cli = json.loads((results / f"{SAMPLE.stem}.json").read_text())
    for k in ("probabilities", "boxes", "segmentation", "measurements"):
        assert doc[k] == cli[k], k
    r = client.post("/v1/analyze?heatmaps=true", files={"file": ("x.png", SAMPLE.read_bytes(), "image/png")})
    assert r.status_code == 200, r.text
    assert r.json()["heatmaps"] == cli["heatmaps"]


def test_heatmaps_are_compact_low_res_pngs(client, results):
    from cxrkit.analysis.document import decode_heatmap

    doc = json.loads((results / f"{SAMPLE.stem}.json").read_text())
    hm = doc["heatmaps"]
    assert set(hm["maps"]) == set(doc["classifier"]["labels"]) and (hm["width"], hm["height"]) == (128, 128)
    assert len(json.dumps(hm)) < 40_000 * len(hm["maps"])
    for entry in hm["maps"].values():
        assert entry["png"].startswith("data:image/png;base64,") and entry["max"] > entry["min"]
        heat = decode_heatmap(entry)
        assert heat.shape == (128, 128) and heat.max() == pytest.approx(entry["max"], rel=0.01, abs=1e-6)
        assert heat.min() == pytest.approx(entry["min"], rel=0.01, abs=1e-6)
        # min-max over the map's own range: visible for any image, whatever the sign of the CAM values
        import base64

        import cv2

        q = cv2.imdecode(np.frombuffer(base64.b64decode(entry["png"].split(",", 1)[1]), np.uint8), 0)
        assert q.min() == 0 and q.max() == 255
    assert client.post("/v1/analyze?heatmaps=maybe", files={"file": ("x.png", b"x", "image/png")}).status_code == 422


def test_browse_lists_serves_json_and_preview(client, results):
    import cv2

    r = client.get("/v1/results")
    assert r.status_code == 200, r.text
    body = r.json()
    stems = [it["stem"] for it in body["results"]]
    assert SAMPLE.stem in stems and "nopreview" in stems and "sub/nested" in stems and body["count"] == len(stems) == 4
    assert not {"link", "other", "broken", ".hidden", "nested", "sub", "linkdir/secret"} & set(stems)
    assert client.get("/v1/results/sub/nested").status_code == 200  # analyze mirrors input trees
    it = body["results"][stems.index(SAMPLE.stem)]
    assert it["image"] == SAMPLE.name and it["has_image"] and it["heatmaps"] and len(it["top_findings"]) == 3
    assert 0.3 < it["ctr"] < 0.8 and it["qc"] is None
    probs = [t["probability"] for t in it["top_findings"]]
    assert probs == sorted(probs, reverse=True)
    doc = client.get(f"/v1/results/{SAMPLE.stem}")
    assert doc.status_code == 200 and doc.json() == json.loads((results / f"{SAMPLE.stem}.json").read_text())
    img = client.get(f"/v1/results/{SAMPLE.stem}/image")
    assert img.status_code == 200 and img.headers["content-type"] == "image/png"
    px = cv2.imdecode(np.frombuffer(img.content, np.uint8), cv2.IMREAD_UNCHANGED)
    assert px.dtype == np.uint8 and px.ndim == 2 and max(px.shape) <= 1024
    r = client.get("/v1/results/nopreview/image")
    assert r.status_code == 404 and "no preview image" in r.json()["detail"]
    assert client.get("/v1/results?limit=1").json()["results"] == body["results"][:1]


@pytest.mark.parametrize("path", [
    "/v1/results/..%2F..%2Fetc%2Fpasswd", "/v1/results/..%2Foutside%2Fsecret", "/v1/results/%2E%2E",
    "/v1/results/..%2F..%2Fetc%2Fpasswd/image", "/v1/results/%2Fetc%2Fpasswd", "/v1/results/..%5C..%5Cx",
    "/v1/results/link", "/v1/results/other", "/v1/results/broken", "/v1/results/.hidden", "/v1/results/linkdir/secret",
    "/v1/results/linkdir%2Fsecret", "/v1/results/sub/..%2F..%2Fx",
    "/v1/results/00009745_000.preview", "/v1/results/00009745_000.json", "/v1/results/link/image",
    "/v1/results/nosuch", "/v1/results/nosuch/image",
])
def test_browse_rejects_anything_not_listed(client, path):
    r = client.get(path)
    assert r.status_code == 404, (path, r.status_code, r.text[:200])
    assert "detail" in r.json() and "root:" not in r.text


def test_browse_mode_off_says_how_to_turn_it_on(tmp_path):
    with TestClient(create_app(lambda: object())) as c:
        r = c.get("/v1/results")
        assert r.status_code == 404 and "--results DIR" in r.json()["detail"]
        assert c.get("/v1/results/x/image").status_code == 404
    from cxrkit.errors import CxrkitError

    with pytest.raises(CxrkitError, match="nope"):
        create_app(lambda: object(), results_dir=tmp_path / "nope")


@pytest.mark.parametrize("name,payload,status,words", [
    ("truncated.png", SAMPLE.read_bytes()[:3000], 400, "cannot analyze"),
    ("text.png", b"this is not an image at all", 415, "not a PNG, JPEG or DICOM"),
    ("tiny.png", None, 400, "at least 32x32"),
    ("huge.png", _png_header(20000, 20000) + b"\0" * 100, 413, "limit is 5000000"),
    ("empty.png", b"", 400, "empty upload"),
    ("big.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 3_100_000, 413, "larger than"),
])
def test_bad_uploads_get_clear_4xx_and_server_stays_healthy(client, name, payload, status, words):
    if payload is None:
        import cv2

        payload = cv2.imencode(".png", np.zeros((1, 1), np.uint8))[1].tobytes()
    r = client.post("/v1/analyze", files={"file": (name, payload, "image/png")})
    assert r.status_code == status and words in r.json()["detail"], r.text
    assert "cxrkit-upload" not in r.text and "/tmp" not in r.text  # no server paths in the answer
    assert client.get("/healthz").status_code == 200


def test_dicom_without_pixels_is_a_4xx(client, tmp_path):
    from test_images import _dicom

    _dicom(tmp_path / "x.dcm", np.zeros((64, 64)), with_pixels=False)
    r = client.post("/v1/analyze", files={"file": ("x.dcm", (tmp_path / "x.dcm").read_bytes(), "application/dicom")})
    assert 400 <= r.status_code < 500 and "no pixel data" in r.json()["detail"] and "cxrkit-upload" not in r.text
    assert client.get("/healthz").status_code == 200


def test_full_queue_answers_503():
    gate = threading.Event()

    class Slow:
        def __init__(self):
            from cxrkit.analysis.analyze import Analyzer

            self.inner = Analyzer(qc=None)
            self.classifier, self.segmenter, self.qc = self.inner.classifier, self.inner.segmenter, None

        def analyze(self, *a, **k):
            gate.wait(30)
            return self.inner.analyze(*a, **k)

    with TestClient(create_app(Slow, max_concurrent=1, max_queue=0)) as c:
        results = []
        t = threading.Thread(target=lambda: results.append(
            c.post("/v1/analyze", files={"file": ("a.png", SAMPLE.read_bytes(), "image/png")}).status_code))
        t.start()
        import time

        for _ in range(100):  # wait until the first request holds the only slot
            time.sleep(0.05)
            r = c.post("/v1/analyze", files={"file": ("b.png", SAMPLE.read_bytes(), "image/png")})
            if r.status_code == 503:
                break
        assert r.status_code == 503 and "queue is full" in r.json()["detail"] and r.headers["retry-after"] == "1"
        gate.set()
        t.join(60)
        assert results == [200]


def test_serve_cli_passes_its_limits_and_rejects_bad_ones(monkeypatch, capsys):
    import uvicorn

    from cxrkit.cli.main import main

    seen = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, host, port: seen.update(app=app, host=host, port=port))
    assert main(["serve", "--port", "8123", "--max-upload-mb", "1", "--max-queue", "2"]) == 0
    assert seen["port"] == 8123 and seen["host"] == "127.0.0.1" and seen["app"].title == "cxrkit"
    assert main(["serve", "--max-concurrent", "0"]) == 2
    assert "--max-concurrent: expected a whole number >= 1, got 0" in capsys.readouterr().err
    assert main(["serve", "--results", "/nonexistent/results"]) == 2
    assert "'/nonexistent/results' does not exist" in capsys.readouterr().err


def test_default_app_runs_no_classifier():
    """No classifier trained on real labels ships, so the default service runs none and says so."""
    app = create_app(lambda: __import__("cxrkit.analysis.analyze", fromlist=["Analyzer"]).Analyzer(qc=None))
    with TestClient(app) as c:
        body = c.get("/v1/models").json()
        assert [m["name"] for m in body["models"]] == ["hybridgnet"] and body["classifier"] is None
        doc = c.post("/v1/analyze", files={"file": ("a.png", SAMPLE.read_bytes(), "image/png")}).json()
        assert doc["classifier"] is None and doc["probabilities"] == {} and doc["boxes"] == []
        assert len(doc["segmentation"]["landmarks"]) == 120


def test_internal_errors_are_500_not_400():
    """Only cxrkit's input errors become 4xx; a bug inside the analysis is a 500 (and logged)."""

    class Broken:
        classifier = None
        qc = None

        class segmenter:  # noqa: N801 - a stand-in with a card
            card = type("C", (), {"to_dict": staticmethod(lambda: {"name": "x"})})()

        def analyze(self, *a, **k):
            raise TypeError("a bug")

    with TestClient(create_app(Broken), raise_server_exceptions=False) as c:
        r = c.post("/v1/analyze", files={"file": ("a.png", SAMPLE.read_bytes(), "image/png")})
        assert r.status_code == 500 and "internal error" in r.json()["detail"]
        assert c.get("/healthz").status_code == 200

"""`cxrkit serve`: health, model cards, analyze JSON as `cxrkit analyze`, the viewer page, and bounded,
clear 4xx/503 answers to bad uploads with the server staying healthy."""

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

SAMPLE = Path(str(resources.files("cxrkit.demo") / "sample" / "nih" / "images")) / "00009745_000.png"


def _analyzer():
    from cxrkit.analysis.analyze import Analyzer

    return Analyzer(qc=None, qc_note="quality control not run in tests")


@pytest.fixture(scope="module")
def client():
    with TestClient(create_app(_analyzer, max_upload_bytes=3_000_000, max_pixels=5_000_000)) as c:
        yield c


def _png_header(w, h):
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk))


def test_health_models_viewer(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    names = [m["name"] for m in client.get("/v1/models").json()["models"]]
    assert names == ["resnet_lite_lesions", "hybridgnet"]
    page = client.get("/")
    assert page.status_code == 200 and "cxrkit viewer" in page.text and "/v1/analyze" in page.text
    assert client.get("/openapi.json").status_code == 200


def test_analyze_returns_the_analyze_json(client, tmp_path):
    r = client.post("/v1/analyze", files={"file": ("../../etc/x ray.png", SAMPLE.read_bytes(), "image/png")})
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["schema_version"] == "1.0" and doc["image"] == "x ray.png"  # only the last path component
    assert (doc["width"], doc["height"]) == (1024, 1024) and len(doc["segmentation"]["landmarks"]) == 120
    from cxrkit.cli.main import main

    assert main(["analyze", str(SAMPLE), "--out", str(tmp_path), "--no-qc", "--quiet"]) == 0
    cli = json.loads((tmp_path / "00009745_000.json").read_text())
    for k in ("probabilities", "boxes", "segmentation", "measurements"):
        assert doc[k] == cli[k], k


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
    assert client.get("/healthz").status_code == 200


def test_dicom_without_pixels_is_a_4xx(client, tmp_path):
    from test_images import _dicom

    _dicom(tmp_path / "x.dcm", np.zeros((64, 64)), with_pixels=False)
    r = client.post("/v1/analyze", files={"file": ("x.dcm", (tmp_path / "x.dcm").read_bytes(), "application/dicom")})
    assert 400 <= r.status_code < 500 and r.json()["detail"]
    assert client.get("/healthz").status_code == 200


def test_full_queue_answers_503():
    gate = threading.Event()

    class Slow:
        def __init__(self):
            from cxrkit.analysis.analyze import Analyzer

            self.inner = Analyzer(qc=None)
            self.classifier, self.segmenter, self.qc = self.inner.classifier, self.inner.segmenter, None

        def analyze(self, *a):
            gate.wait(30)
            return self.inner.analyze(*a)

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
        assert r.status_code == 503 and "queue is full" in r.json()["detail"]
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
    assert "serve limits must be positive" in capsys.readouterr().err

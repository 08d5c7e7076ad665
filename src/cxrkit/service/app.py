"""The REST service (``cxrkit serve``): FastAPI app around :class:`cxrkit.analysis.analyze.Analyzer`.

Endpoints: ``GET /healthz`` (200 once the models are loaded), ``GET /v1/models`` (their cards),
``POST /v1/analyze`` (multipart field ``file``: PNG, JPEG or DICOM; returns the ``cxrkit analyze`` JSON),
``GET /`` (the web viewer), OpenAPI docs at ``/docs``.

Bounds: the upload size (``max_upload_bytes``; 413), the pixel count read from the header before decoding
(``max_pixels``; 413), the content type sniffed from the bytes, never the file name (415), a concurrency
limit with a bounded wait queue (``max_concurrent`` analyses, ``max_queue`` waiting; 503 when full).
Uploads go to a private temporary directory under a generated name; the client's file name is only
echoed (as its last path component) in the result. Every error is JSON ``{"detail": ...}``.
"""


import asyncio
import logging
import os
import tempfile
from importlib import resources
from pathlib import Path
from typing import Callable

log = logging.getLogger(__name__)

MAX_UPLOAD_BYTES = 50 * 1024 * 1024
MAX_PIXELS = 40_000_000


def create_app(analyzer_factory: Callable[[], object] | None = None, *, max_upload_bytes: int = MAX_UPLOAD_BYTES,
               max_pixels: int = MAX_PIXELS, max_concurrent: int = 1, max_queue: int = 8):
    """Build the app; ``analyzer_factory`` (default: :class:`Analyzer` with the shipped models and RCA when a
    reference set is found) runs once at startup."""
    try:
        from fastapi import FastAPI, File, HTTPException, UploadFile
        from fastapi.responses import HTMLResponse, JSONResponse
    except ImportError as exc:  # pragma: no cover - fastapi is a dependency
        from cxrkit.errors import CxrkitError

        raise CxrkitError(f"cxrkit serve needs fastapi and uvicorn ({exc}); pip install 'cxrkit[serve]'") from None
    from contextlib import asynccontextmanager

    from cxrkit.errors import CxrkitError

    if max_concurrent < 1 or max_queue < 0 or max_upload_bytes < 1 or max_pixels < 1:
        raise CxrkitError(f"serve limits must be positive (max_concurrent {max_concurrent}, max_queue {max_queue} "
                          f">= 0, max_upload_bytes {max_upload_bytes}, max_pixels {max_pixels})")
    state: dict = {"analyzer": None, "waiting": 0}
    slots = asyncio.Semaphore(max_concurrent)

    def default_factory():
        from cxrkit.analysis.analyze import Analyzer
        from cxrkit.qc.rca import optional_estimator

        qc, note = optional_estimator()
        return Analyzer(qc=qc, qc_note=note)

    @asynccontextmanager
    async def lifespan(app):
        state["analyzer"] = await asyncio.to_thread(analyzer_factory or default_factory)
        log.info("cxrkit service ready")
        yield

    app = FastAPI(title="cxrkit", version="1", lifespan=lifespan,
                  description="Chest X-ray analysis: findings, lungs and heart, quality control, CTR")

    @app.get("/healthz")
    async def healthz():
        if state["analyzer"] is None:
            raise HTTPException(503, "models are loading")
        return {"status": "ok"}

    @app.get("/v1/models")
    async def models():
        a = state["analyzer"]
        if a is None:
            raise HTTPException(503, "models are loading")
        cards = [a.classifier.card.to_dict(), a.segmenter.card.to_dict()]
        if a.qc is not None and a.qc.model is not None:
            cards.append(a.qc.model.card.to_dict())
        return {"models": cards}

    @app.post("/v1/analyze")
    async def analyze(file: UploadFile = File(...)):
        from cxrkit.io.images import header_size, sniff_kind

        a = state["analyzer"]
        if a is None:
            raise HTTPException(503, "models are loading")
        data = await file.read(max_upload_bytes + 1)
        if len(data) > max_upload_bytes:
            raise HTTPException(413, f"upload larger than {max_upload_bytes} bytes")
        if not data:
            raise HTTPException(400, "empty upload")
        kind = sniff_kind(data[:512])
        if kind is None:
            raise HTTPException(415, "not a PNG, JPEG or DICOM file (content checked, not the file name)")
        size = header_size(data[:65536])
        pixels = None if size is None else size[0] * size[1]
        if pixels is not None and pixels > max_pixels:
            raise HTTPException(413, f"image has {pixels} pixels; the limit is {max_pixels}")
        name = Path((file.filename or "upload").replace("\\", "/")).name or "upload"
        if slots.locked() and state["waiting"] >= max_queue:  # every slot busy and the queue full
            raise HTTPException(503, "server busy: analysis queue is full, retry later")
        state["waiting"] += 1
        try:
            async with slots:
                state["waiting"] -= 1
                return await asyncio.to_thread(_run, a, data, kind, name, max_pixels)
        except _BadImage as exc:
            raise HTTPException(400, str(exc)) from None

    def _run(a, data: bytes, kind: str, name: str, limit: int) -> dict:
        from cxrkit.io.images import read_image

        suffix = {"png": ".png", "jpeg": ".jpg", "dicom": ".dcm"}[kind]
        with tempfile.TemporaryDirectory(prefix="cxrkit-upload-") as tmp:
            path = Path(tmp) / f"upload{suffix}"
            path.write_bytes(data)
            try:
                xray = read_image(path)
                if xray.pixels.size > limit:
                    raise _BadImage(f"image has {xray.pixels.size} pixels; the limit is {limit}")
                if min(xray.pixels.shape) < 32:
                    raise _BadImage(f"image is {xray.pixels.shape[1]}x{xray.pixels.shape[0]} px; at least 32x32 needed")
                doc, _ = a.analyze(xray.pixels, name, xray.spacing)
            except (CxrkitError, OSError, ValueError) as exc:
                raise _BadImage(f"cannot analyze {name!r}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
        return doc

    @app.get("/", response_class=HTMLResponse)
    async def viewer():
        return resources.files("cxrkit.service").joinpath("viewer.html").read_text(encoding="utf-8")

    @app.exception_handler(Exception)
    async def unexpected(request, exc):  # the server stays up and says what happened
        log.exception("unexpected error on %s", request.url.path)
        return JSONResponse(status_code=500, content={"detail": f"internal error: {type(exc).__name__}"})

    return app


class _BadImage(Exception):
    pass


def serve(host: str = "127.0.0.1", port: int = 8000, workers: int = 1, **kwargs) -> None:
    """Run the app with uvicorn (one process per worker, each loading the models once)."""
    import uvicorn

    if workers > 1:
        os.environ["CXRKIT_SERVE_OPTIONS"] = repr(kwargs)
        uvicorn.run("cxrkit.service.app:app_from_env", factory=True, host=host, port=port, workers=workers)
    else:
        uvicorn.run(create_app(**kwargs), host=host, port=port)


def app_from_env():
    import ast

    return create_app(**ast.literal_eval(os.environ.get("CXRKIT_SERVE_OPTIONS", "{}")))

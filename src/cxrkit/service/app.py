"""The REST service (``cxrkit serve``): FastAPI app around :class:`cxrkit.analysis.analyze.Analyzer`.

Endpoints: ``GET /healthz`` (200 once the models are loaded), ``GET /v1/models`` (their cards, with
provenance), ``POST /v1/analyze`` (multipart field ``file``: PNG, JPEG or DICOM; returns the ``cxrkit analyze``
JSON; ``?heatmaps=true`` adds the optional ``heatmaps`` object), ``GET /`` (the web viewer), OpenAPI docs at
``/docs``. No classifier runs unless one is named (``create_app(classifier=...)``, ``cxrkit serve --model``).

Browse mode (``results_dir``, ``cxrkit serve --results DIR`` over a folder written by ``cxrkit analyze``):
``GET /v1/results`` (one summary per ``<stem>.json``: stem, image name, top findings, CTR, QC),
``GET /v1/results/{stem}`` (that JSON as written) and ``GET /v1/results/{stem}/image`` (its
``<stem>.preview.png``). ``stem`` is the JSON's path relative to the folder without ``.json`` (``p1/img``: analyze
mirrors the input tree); it is looked up in the listing, never joined to a path, and the listing never follows a
symbolic link (file or folder), so ``..``, encoded slashes or links out of the folder get 404. Without a results
folder these answer 404 saying how to turn browse mode on.

Errors: a bad upload (:class:`~cxrkit.errors.InputError` and other cxrkit input errors) is a 4xx with JSON
``{"detail": ...}``; anything else (a model problem, a bug) is a 500 with a log line, never a 4xx.

Bounds: the upload size (``max_upload_bytes``; 413), the pixel count read from the header before decoding
(``max_pixels``; 413), the content type sniffed from the bytes, never the file name (415), a concurrency
limit with a bounded wait queue (``max_concurrent`` analyses, ``max_queue`` waiting; 503 with ``Retry-After``
when full).
Uploads go to a private temporary directory under a generated name; the client's file name is only
echoed (as its last path component) in the result. Every error is JSON ``{"detail": ...}``.
"""


import asyncio
import json
import logging
import os
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from pathlib import Path
from typing import Callable

from cxrkit.analysis.analyze import Analyzer
from cxrkit.analysis.document import PREVIEW_SUFFIX
from cxrkit.errors import (
    CxrkitError,
    InputError,
    MissingDependencyError,
    ModelError,
    UsageError,
)
from cxrkit.io.images import header_size, read_image, sniff_kind
from cxrkit.models import load_model
from cxrkit.qc.rca import optional_estimator

log = logging.getLogger(__name__)

MAX_UPLOAD_BYTES = 50 * 1024 * 1024
MAX_PIXELS = 40_000_000
MAX_RESULT_JSON_BYTES = 64 * 1024 * 1024
MAX_LISTING = 5000


def create_app(analyzer_factory: Callable[[], object] | None = None, *, max_upload_bytes: int = MAX_UPLOAD_BYTES,
               max_pixels: int = MAX_PIXELS, max_concurrent: int = 1, max_queue: int = 8,
               results_dir: str | os.PathLike | None = None, classifier: str | None = None,
               segmenter: str | None = None, device: str = "auto"):
    """Build the app; ``analyzer_factory`` (default: :class:`Analyzer` with the ``segmenter`` (default the
    shipped hybridgnet), the ``classifier`` when one is named (a registry name or checkpoint; none by default)
    and RCA quality control) runs once at startup, its models on ``device``. ``results_dir``: a ``cxrkit
    analyze`` output folder to browse (``/v1/results``); it must exist."""

    try:
        from fastapi import FastAPI, File, HTTPException, Query, UploadFile
        from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
    except ImportError as exc:  # pragma: no cover - fastapi is a dependency
        raise MissingDependencyError(f"cxrkit serve needs fastapi and uvicorn ({exc}); "
                                     "pip install 'cxrkit[serve]'") from None
    from contextlib import asynccontextmanager

    if max_concurrent < 1 or max_queue < 0 or max_upload_bytes < 1 or max_pixels < 1:
        raise UsageError(f"serve limits must be positive (max_concurrent {max_concurrent}, max_queue {max_queue} "
                          f">= 0, max_upload_bytes {max_upload_bytes}, max_pixels {max_pixels})")
    results = ResultsIndex(results_dir) if results_dir is not None else None
    state: dict = {"analyzer": None, "waiting": 0}
    slots = asyncio.Semaphore(max_concurrent)

    def default_factory():
        qc, note = optional_estimator()
        clf = load_model(classifier, task="classification", needs="logits", device=device) if classifier else None
        seg = load_model(segmenter, default="hybridgnet", task="segmentation", needs="landmarks", device=device)
        return Analyzer(clf, seg, qc=qc, qc_note=note)

    @asynccontextmanager
    async def lifespan(app):
        state["analyzer"] = await asyncio.to_thread(analyzer_factory or default_factory)
        # Analyses run on max_concurrent long-lived threads (not the default pool): the same threads, hence
        # the same allocator arenas and torch thread state, serve every request, which keeps memory flat.
        state["pool"] = ThreadPoolExecutor(max_concurrent, thread_name_prefix="cxrkit-analyze")
        log.info("cxrkit service ready")
        try:
            yield
        finally:
            state["pool"].shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="cxrkit", version="1", lifespan=lifespan,
                  description="Chest X-ray analysis: findings, lungs and heart, quality control, CTR")

    @app.get("/healthz")
    async def healthz():
        if state["analyzer"] is None:
            raise HTTPException(503, "models are loading", headers={"Retry-After": "5"})
        return {"status": "ok"}

    @app.get("/v1/models")
    async def models():
        a = state["analyzer"]
        if a is None:
            raise HTTPException(503, "models are loading", headers={"Retry-After": "5"})
        roles = [("classifier", a.classifier), ("segmenter", a.segmenter),
                 ("registration", a.qc.model if a.qc is not None else None)]
        cards = [dict(m.card.to_dict(), role=role) for role, m in roles if m is not None]
        return {"models": cards, "classifier": None if a.classifier is None else a.classifier.card.name}

    @app.post("/v1/analyze")
    async def analyze(file: UploadFile = File(...),
                      heatmaps: bool = Query(False, description="add each finding's low-resolution heatmap "
                                                                "(the optional `heatmaps` object of schema 1.1)")):

        a = state["analyzer"]
        if a is None:
            raise HTTPException(503, "models are loading", headers={"Retry-After": "5"})
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
            raise HTTPException(503, "server busy: analysis queue is full, retry later", headers={"Retry-After": "1"})
        state["waiting"] += 1
        try:
            async with slots:
                state["waiting"] -= 1
                return await asyncio.get_running_loop().run_in_executor(
                    state["pool"], _run, a, data, kind, name, max_pixels, heatmaps)
        except _BadImage as exc:
            raise HTTPException(400, str(exc)) from None

    def _run(a, data: bytes, kind: str, name: str, limit: int, heatmaps: bool = False) -> dict:
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
                doc, _ = a.analyze(xray.pixels, name, xray.spacing, heatmaps=heatmaps, overlays=False)
            except (ModelError, MissingDependencyError):
                raise  # the server's problem: 500 with a log line
            except CxrkitError as exc:  # the upload's problem: 400
                why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                why = why.removeprefix(f"{path}: ").replace(str(path), name)  # never show the server's temp path
                raise _BadImage(f"cannot analyze {name!r}: {why}") from None
        return doc

    def _results() -> ResultsIndex:
        if results is None:
            raise HTTPException(404, "browse mode is off: start the service with `cxrkit serve --results DIR` "
                                     "(DIR written by `cxrkit analyze`)")
        return results

    def _entry(stem: str) -> dict:
        entry = _results().scan().get(stem)
        if entry is None:
            raise HTTPException(404, f"no result {stem[:200]!r} in the results folder")
        return entry

    @app.get("/v1/results")
    async def list_results(offset: int = Query(0, ge=0), limit: int = Query(MAX_LISTING, ge=1, le=MAX_LISTING)):
        entries = await asyncio.to_thread(_results().scan)
        items = [e["item"] for e in entries.values()]
        return {"folder": _results().root.name, "count": len(items), "offset": offset,
                "results": items[offset:offset + limit]}

    @app.get("/v1/results/{stem:path}/image")
    async def get_result_image(stem: str):
        entry = await asyncio.to_thread(_entry, stem)
        if entry["preview"] is None:
            raise HTTPException(404, f"result {stem!r} has no preview image ({stem}.preview.png); re-run "
                                     "`cxrkit analyze` without --no-preview to write one")
        return FileResponse(entry["preview"], media_type="image/png")

    @app.get("/v1/results/{stem:path}")
    async def get_result(stem: str):
        entry = await asyncio.to_thread(_entry, stem)
        try:
            data = await asyncio.to_thread(entry["json"].read_bytes)
        except OSError as exc:
            raise HTTPException(404, f"result {stem!r} is no longer readable: {type(exc).__name__}") from None
        return Response(content=data, media_type="application/json")

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


class ResultsIndex:
    """The analyses in a ``cxrkit analyze`` output folder: ``<stem>.json`` (+ ``<stem>.preview.png``).

    :meth:`scan` re-lists the folder and its sub-folders (``cxrkit analyze`` mirrors the input tree; the stem
    of ``p1/img.json`` is ``p1/img``) when the last listing is older than ``ttl`` seconds, and re-reads only the
    JSON files whose size or modification time changed. Hidden files and folders, symbolic links (files and
    folders: nothing outside the results folder is ever reached) and files that are not an analysis JSON
    (``schema_version`` 1.x with ``probabilities``) are skipped.
    """

    def __init__(self, root: str | os.PathLike, ttl: float = 1.0) -> None:
        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise InputError(f"results folder {str(root)!r} does not exist or is not a folder")
        self.ttl = ttl
        self._cache: dict[str, tuple[tuple[int, int], dict | None]] = {}
        self._listing: tuple[float, dict[str, dict]] = (float("-inf"), {})
        self._lock = threading.Lock()

    def scan(self) -> dict[str, dict]:
        """``{stem: {"json": Path, "preview": Path | None, "item": summary}}``, sorted by stem."""
        with self._lock:
            if time.monotonic() - self._listing[0] < self.ttl:
                return self._listing[1]
            found: dict[str, dict] = {}
            names = set()
            files = _walk_files(self.root)
            for name in sorted(files):
                if not name.endswith(".json"):
                    continue
                names.add(name)
                st = files[name].stat(follow_symlinks=False)
                key = (st.st_size, st.st_mtime_ns)
                cached = self._cache.get(name)
                if cached is None or cached[0] != key:
                    cached = (key, self._summary(self.root / name, st.st_size))
                    self._cache[name] = cached
                if cached[1] is None:
                    continue
                stem = name[:-len(".json")]
                preview = files.get(stem + PREVIEW_SUFFIX)
                item = dict(cached[1], stem=stem, has_image=preview is not None)
                found[stem] = {"json": self.root / name, "item": item,
                               "preview": None if preview is None else self.root / stem_preview(stem)}
            for gone in set(self._cache) - names:
                del self._cache[gone]
            self._listing = (time.monotonic(), found)
            return found

    @staticmethod
    def _summary(path: Path, size: int) -> dict | None:
        if size > MAX_RESULT_JSON_BYTES:
            log.warning("skipping %s: %d bytes is more than %d", path, size, MAX_RESULT_JSON_BYTES)
            return None
        try:
            doc = json.loads(path.read_bytes())
            if not (isinstance(doc, dict) and str(doc.get("schema_version", "")).startswith("1.")
                    and isinstance(doc.get("probabilities"), dict)):
                log.info("skipping %s: not a cxrkit analyze JSON (schema 1.x)", path)
                return None
            probs = sorted(((str(k), float(v)) for k, v in doc["probabilities"].items()), key=lambda kv: -kv[1])
            m = doc.get("measurements") or {}
            q = doc.get("qc") or {}
            return {"image": str(doc.get("image", path.stem)), "width": doc.get("width"), "height": doc.get("height"),
                    "schema_version": doc["schema_version"],
                    "top_findings": [{"finding": k, "probability": round(v, 6)} for k, v in probs[:3]],
                    "ctr": m.get("ctr"), "qc": q.get("dice_rca_mean"),
                    "boxes": len(doc.get("boxes") or []), "heatmaps": isinstance(doc.get("heatmaps"), dict)}
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            log.warning("skipping %s: %s", path, exc)
            return None


def stem_preview(stem: str) -> str:
    return stem + PREVIEW_SUFFIX


def _walk_files(root: Path, max_files: int = 200_000) -> dict[str, os.DirEntry]:
    """``{relative path with '/': entry}`` of the regular files below ``root``; hidden entries and symbolic
    links (files or folders) are skipped, so the listing never leaves ``root``."""
    out: dict[str, os.DirEntry] = {}
    stack = [("", root)]
    while stack and len(out) < max_files:
        prefix, folder = stack.pop()
        try:
            with os.scandir(folder) as it:
                for d in it:
                    if d.name.startswith(".") or d.is_symlink():
                        continue
                    rel = prefix + d.name
                    if d.is_dir(follow_symlinks=False):
                        stack.append((rel + "/", Path(d.path)))
                    elif d.is_file(follow_symlinks=False):
                        out[rel] = d
        except OSError as exc:
            log.warning("skipping %s: %s", folder, exc)
    return out


def serve(host: str = "127.0.0.1", port: int = 8000, workers: int = 1, **kwargs) -> None:
    """Run the app with uvicorn (one process per worker, each loading the models once)."""
    import uvicorn

    if kwargs.get("results_dir") is not None:
        kwargs["results_dir"] = str(Path(kwargs["results_dir"]).resolve())  # a literal for the workers
    if workers > 1:
        os.environ["CXRKIT_SERVE_OPTIONS"] = repr(kwargs)
        uvicorn.run("cxrkit.service.app:app_from_env", factory=True, host=host, port=port, workers=workers)
    else:
        uvicorn.run(create_app(**kwargs), host=host, port=port)


def app_from_env():
    import ast

    return create_app(**ast.literal_eval(os.environ.get("CXRKIT_SERVE_OPTIONS", "{}")))

"""Bounded loopback load test of `cxrkit serve`: latency, throughput, errors, memory, malformed inputs.

Usage: python bench/bench_service.py [--images DIR] [-n 40] [-c 4] [--baseline-n 8] [--heatmaps] [--tiny]
Default images: ../shared/data/nih/images (real 1024x1024 NIH PNGs), else the bundled sample.

1. Baseline (same run): the same analysis in-process, without HTTP (`Analyzer.analyze` on the decoded
   bytes, the same models and QC setting as the server), `--baseline-n` images one after the other.
2. `cxrkit serve` as a subprocess on a free 127.0.0.1 port; waits for /healthz, sends 2 warm-up requests,
   then N `POST /v1/analyze` requests at client concurrency C (httpx, asyncio), cycling through the images.
   Reports p50/p95 latency, throughput, errors (any non-200), and the server's RSS (psutil) sampled every
   0.1 s: before, peak, after, and the growth between the first and the second half of the load (flat memory).
3. A malformed-input sweep (truncated PNG, a text file named .png, a 1x1 image, a 20000x20000 PNG header,
   a DICOM without pixels, an empty file): each must get a 4xx with a JSON `detail` naming the problem, and
   /healthz plus one good request must still succeed afterwards.
Precision: the server and the baseline both run ``--precision auto``, i.e. each model card's
``inference_precision`` (printed; fp32 for the shipped models).
``--tiny``: 3 requests at concurrency 2, 1 baseline image (a smoke run for the test suite; no figure is
asserted, the checks still apply).
Exits 1 when any check fails (errors, memory growth above --max-growth-mb, a non-4xx or unclear answer,
an unhealthy server), 0 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
MB = 1024 * 1024


def percentile(values, q: float) -> float:
    """The q-th percentile (0-100, linear interpolation) of ``values``."""
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_analyzer(qc: bool):
    """The analyzer the server builds by default (shipped models; RCA QC when a reference set is found)."""
    from cxrkit.analysis.analyze import Analyzer
    from cxrkit.qc.rca import optional_estimator

    est, note = optional_estimator() if qc else (None, "quality control skipped")
    return Analyzer(qc=est, qc_note=note), est is not None


def baseline(payloads: list[tuple[str, bytes]], n: int, heatmaps: bool) -> dict:
    """In-process analysis of ``n`` images (bytes -> temporary file -> read_image -> analyze), as the server does.

    Like the server (``asyncio.to_thread``), the analyses run in a worker thread, not the main thread: torch's
    intra-op thread pool behaves differently there, which on a loaded machine changes the time several-fold.
    """
    from concurrent.futures import ThreadPoolExecutor

    from cxrkit.io.images import read_image

    analyzer, has_qc = make_analyzer(True)
    lat = []

    def one(tmp: str, name: str, data: bytes) -> None:
        path = Path(tmp) / "upload.png"
        path.write_bytes(data)
        x = read_image(path)
        analyzer.analyze(x.pixels, name, x.spacing, heatmaps=heatmaps, overlays=False)  # as the server does

    with tempfile.TemporaryDirectory(prefix="cxrkit-bench-") as tmp, ThreadPoolExecutor(1) as pool:
        for i in range(n + 1):  # the first one is a warm-up
            name, data = payloads[i % len(payloads)]
            t = time.perf_counter()
            pool.submit(one, tmp, name, data).result()
            if i:
                lat.append(time.perf_counter() - t)
    from cxrkit.models.device import resolve_precision

    models = [m for m in (analyzer.segmenter, analyzer.classifier, getattr(analyzer.qc, "model", None)) if m is not None]
    precision = ", ".join(f"{m.card.name} {resolve_precision('auto', m.card, 'cpu')}" for m in models)
    return {"lat": lat, "wall": sum(lat), "qc": has_qc, "precision": precision}


class RssSampler(threading.Thread):
    """Samples a process's resident memory (with its children) every ``interval`` seconds."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        super().__init__(daemon=True)
        import psutil

        self.proc = psutil.Process(pid)
        self.interval = interval
        self.samples: list[tuple[float, int]] = []
        self.stop = threading.Event()

    def rss(self) -> int:
        import psutil

        total = self.proc.memory_info().rss
        for c in self.proc.children(recursive=True):
            with contextlib.suppress(psutil.NoSuchProcess):  # a child that just exited
                total += c.memory_info().rss
        return total

    def run(self) -> None:
        while not self.stop.is_set():
            self.samples.append((time.perf_counter(), self.rss()))
            self.stop.wait(self.interval)


async def load(url: str, payloads: list[tuple[str, bytes]], n: int, c: int, heatmaps: bool):
    import httpx

    sem = asyncio.Semaphore(c)
    lat: list[float] = []
    errors: list[str] = []
    q = "?heatmaps=true" if heatmaps else ""

    async def one(client, i):
        name, data = payloads[i % len(payloads)]
        async with sem:
            t = time.perf_counter()
            try:
                r = await client.post(f"{url}/v1/analyze{q}", files={"file": (name, data, "image/png")})
                ok = r.status_code == 200 and "probabilities" in r.json()
                if not ok:
                    errors.append(f"{name}: HTTP {r.status_code} {r.text[:120]}")
            except httpx.HTTPError as exc:
                errors.append(f"{name}: {type(exc).__name__} {exc}")
            lat.append(time.perf_counter() - t)

    async with httpx.AsyncClient(timeout=300) as client:
        t0 = time.perf_counter()
        await asyncio.gather(*(one(client, i) for i in range(n)))
        wall = time.perf_counter() - t0
    return lat, errors, wall


def malformed_inputs(sample: bytes) -> list[tuple[str, bytes, str, str]]:
    """(file name, bytes, content type, words the 4xx detail must contain)."""
    import struct
    import zlib

    import cv2

    ihdr = b"IHDR" + struct.pack(">IIBBBBB", 20000, 20000, 8, 0, 0, 0, 0)
    huge = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + ihdr + struct.pack(">I", zlib.crc32(ihdr)) + b"\0" * 64
    one = cv2.imencode(".png", np.zeros((1, 1), np.uint8))[1].tobytes()
    return [
        ("truncated.png", sample[: len(sample) // 3], "image/png", "cannot analyze"),
        ("text.png", b"hello, this is a text file named .png\n" * 10, "image/png", "not a PNG, JPEG or DICOM"),
        ("one_pixel.png", one, "image/png", "at least 32x32"),
        ("huge_header.png", huge, "image/png", "pixels; the limit is"),
        ("no_pixels.dcm", dicom_without_pixels(), "application/dicom", "cannot analyze"),
        ("empty.png", b"", "image/png", "empty upload"),
    ]


def dicom_without_pixels() -> bytes:
    """A valid DICOM file (DX, 512x512 declared) whose PixelData element is missing."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.Rows, ds.Columns, ds.SamplesPerPixel = "DX", 512, 512, 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def start_server(port: int, max_concurrent: int, max_queue: int, log_path: Path,
                 tmpdir: Path | None = None) -> subprocess.Popen:
    """``cxrkit serve`` on 127.0.0.1:``port`` in a subprocess, its output in ``log_path`` (``tmpdir``: its TMPDIR)."""
    code = "import sys; from cxrkit.cli.main import main; sys.exit(main(sys.argv[1:]))"
    cmd = [sys.executable, "-c", code, "serve", "--host", "127.0.0.1", "--port", str(port),
           "--max-concurrent", str(max_concurrent), "--max-queue", str(max_queue)]
    env = dict(os.environ, TMPDIR=str(tmpdir)) if tmpdir is not None else None
    return subprocess.Popen(cmd, stdout=log_path.open("wb"), stderr=subprocess.STDOUT, cwd=REPO, env=env)


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 180) -> float:
    import httpx

    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"cxrkit serve exited with status {proc.returncode}")
        try:
            if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                return time.perf_counter() - t0
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"cxrkit serve on {url} not healthy after {timeout:.0f} s")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default = Path(os.environ.get("CXRKIT_SHARED_DATA", REPO.parent / "shared" / "data")) / "nih" / "images"
    if not default.is_dir():
        default = REPO / "src" / "cxrkit" / "demo" / "sample" / "nih" / "images"
    ap.add_argument("--images", type=Path, default=default)
    ap.add_argument("-n", "--requests", type=int, default=40, help="requests in the load phase")
    ap.add_argument("-c", "--concurrency", type=int, default=4, help="requests in flight at once")
    ap.add_argument("--baseline-n", type=int, default=8, help="in-process analyses for the baseline")
    ap.add_argument("--max-concurrent", type=int, default=1, help="server: analyses at once")
    ap.add_argument("--max-queue", type=int, default=8, help="server: waiting requests before 503")
    ap.add_argument("--heatmaps", action="store_true", help="ask for heatmaps (?heatmaps=true) and in the baseline")
    ap.add_argument("--max-growth-mb", type=float, default=64.0,
                    help="fail when server RSS grows more than this between the load's halves")
    ap.add_argument("--tiny", action="store_true", help="3 requests, concurrency 2, 1 baseline image: a smoke run")
    args = ap.parse_args()
    if args.tiny:
        args.requests, args.concurrency, args.baseline_n = 3, 2, 1
    if args.requests < 1 or args.concurrency < 1 or args.baseline_n < 1:
        ap.error(f"-n ({args.requests}), -c ({args.concurrency}) and --baseline-n ({args.baseline_n}) must be >= 1")
    if args.concurrency > args.max_concurrent + args.max_queue:
        ap.error(f"-c {args.concurrency} exceeds the server's max-concurrent + max-queue "
                 f"({args.max_concurrent + args.max_queue}): the extra requests would get 503")
    import httpx

    files = sorted(args.images.glob("*.png"))[: max(args.requests, args.baseline_n)]
    if not files:
        ap.error(f"no PNG images in {args.images}")
    payloads = [(f.name, f.read_bytes()) for f in files]
    failures: list[str] = []
    print(f"images: {len(files)} PNGs from {args.images}; N={args.requests} requests at concurrency "
          f"C={args.concurrency}; server max-concurrent {args.max_concurrent}, max-queue {args.max_queue}; "
          f"heatmaps {'on' if args.heatmaps else 'off'}; CPU cores {os.cpu_count()}")

    base = baseline(payloads, args.baseline_n, args.heatmaps)
    b50 = percentile(base["lat"], 50)
    print(f"precision: --precision auto = the cards' inference_precision: {base['precision']}")
    print(f"\nbaseline (in-process Analyzer.analyze, no HTTP, QC {'on' if base['qc'] else 'off'}): "
          f"{args.baseline_n} images, p50 {b50 * 1e3:.0f} ms, p95 {percentile(base['lat'], 95) * 1e3:.0f} ms, "
          f"{args.baseline_n / base['wall']:.2f} images/s")

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="cxrkit-bench-serve-") as tmp:
        log_path = Path(tmp) / "serve.log"
        proc = start_server(port, args.max_concurrent, args.max_queue, log_path)
        try:
            ready = wait_healthy(url, proc)
            sampler = RssSampler(proc.pid)
            rss_idle = sampler.rss()
            for name, data in payloads[:2]:  # warm-up: lazy imports, first allocations
                r = httpx.post(f"{url}/v1/analyze", files={"file": (name, data, "image/png")}, timeout=300)
                if r.status_code != 200:
                    failures.append(f"warm-up {name}: HTTP {r.status_code} {r.text[:200]}")
            rss_before = sampler.rss()
            sampler.start()
            lat, errors, wall = asyncio.run(load(url, payloads, args.requests, args.concurrency, args.heatmaps))
            sampler.stop.set()
            sampler.join()
            rss_after = sampler.rss()
            rss = [r for _, r in sampler.samples]
            half = len(rss) // 2
            first, second = statistics.mean(rss[:half] or rss), statistics.mean(rss[half:])
            growth = (second - first) / MB
            p50, p95 = percentile(lat, 50), percentile(lat, 95)
            print(f"\nserver: healthy {ready:.1f} s after start (models loaded), pid {proc.pid}")
            print(f"load: {args.requests} requests, {len(errors)} errors, wall {wall:.1f} s, "
                  f"{args.requests / wall:.2f} requests/s")
            print(f"latency: p50 {p50 * 1e3:.0f} ms, p95 {p95 * 1e3:.0f} ms, max {max(lat) * 1e3:.0f} ms "
                  f"(includes queueing: C={args.concurrency} requests share {args.max_concurrent} analysis slot(s))")
            service = wall / args.requests * args.max_concurrent  # seconds one analysis slot spends per request
            print(f"vs baseline: throughput {args.requests / wall / (args.baseline_n / base['wall']):.2f}x of "
                  f"in-process; per-request service time ~ wall/N*slots = {service * 1e3:.0f} ms vs in-process "
                  f"p50 {b50 * 1e3:.0f} ms (HTTP + upload + decode overhead {(service - b50) * 1e3:+.0f} ms)")
            print(f"server RSS: idle {rss_idle / MB:.0f} MB, after warm-up {rss_before / MB:.0f} MB, "
                  f"peak {max(rss) / MB:.0f} MB, after {rss_after / MB:.0f} MB; mean first half "
                  f"{first / MB:.0f} MB -> second half {second / MB:.0f} MB ({growth:+.1f} MB, {len(rss)} samples)")
            for e in errors[:5]:
                print(f"  error: {e}")
            if errors:
                failures.append(f"{len(errors)} of {args.requests} requests failed")
            if growth > args.max_growth_mb:
                failures.append(f"server RSS grew {growth:.1f} MB between the load's halves "
                                f"(limit {args.max_growth_mb} MB)")

            print("\nmalformed inputs (each must be a 4xx with a clear JSON detail):")
            for name, data, ctype, words in malformed_inputs(payloads[0][1]):
                r = httpx.post(f"{url}/v1/analyze", files={"file": (name, data, ctype)}, timeout=60)
                try:
                    detail = r.json().get("detail")
                except ValueError:
                    detail = None
                ok = 400 <= r.status_code < 500 and isinstance(detail, str) and words in detail
                print(f"  {'ok  ' if ok else 'FAIL'} {name:16s} {len(data):7d} B -> {r.status_code} {detail!r}")
                if not ok:
                    failures.append(f"{name}: HTTP {r.status_code} {r.text[:200]} (wanted 4xx mentioning {words!r})")
            h = httpx.get(url + "/healthz", timeout=10)
            good = httpx.post(f"{url}/v1/analyze", files={"file": payloads[0][:1] + (payloads[0][1], "image/png")},
                              timeout=300)
            print(f"after the sweep: /healthz {h.status_code}, a good image {good.status_code}, "
                  f"server RSS {sampler.rss() / MB:.0f} MB")
            if h.status_code != 200 or good.status_code != 200 or proc.poll() is not None:
                failures.append(f"server unhealthy after the sweep (healthz {h.status_code}, "
                                f"analyze {good.status_code})")
        except (RuntimeError, OSError, ValueError, httpx.HTTPError) as exc:  # report, show the server's log, fail
            failures.append(f"{type(exc).__name__}: {exc}")
            print(log_path.read_text(errors="replace")[-3000:] if log_path.exists() else "(no server log)")
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
    print("\nresult: " + ("PASS (zero errors, flat memory, every malformed input a clear 4xx, server healthy)"
                          if not failures else "FAIL\n  " + "\n  ".join(failures)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

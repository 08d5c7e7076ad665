"""Bounded loopback soak of `cxrkit serve`: mixed good, malformed, slow and abandoned uploads for minutes.

Usage: python bench/bench_service_soak.py [--duration 300] [-c 8] [--images DIR] [--seed 0] [--tiny]
Default images: ../shared/data/nih/images (real 1024x1024 NIH PNGs), else the bundled sample.

`cxrkit serve` runs as a subprocess on a free 127.0.0.1 port with a private TMPDIR. After 2 x C warm-up
requests (C at a time), C clients loop until --duration seconds have passed, each request drawn (seeded) from:
  good        a real PNG, posted normally                      must be 200 (never 5xx, never 503)
  malformed   one of bench_service.malformed_inputs            must be a 4xx whose JSON detail names the problem
  slow        a real PNG whose request trickles in ~40 chunks  must be 200
  abandoned   the request is cut mid-body and the socket closed (no answer to check; the server must carry on)
Meanwhile /healthz is polled every second (each must be 200 within 5 s) and the server's RSS is sampled every
0.2 s. C must not exceed the server's max-concurrent + max-queue, so no good request should ever be refused.

Then an overload burst: max-concurrent + max-queue + 8 good requests at once; the ones beyond the queue must
get 503 with a Retry-After header, all others 200. At the end the server's TMPDIR must be empty (every upload's
temporary folder removed) and its open file descriptors back to the count after warm-up.

Checks (exit 1 when any fails): zero 5xx and zero non-200 on good and slow uploads, every malformed upload a
clear 4xx, /healthz always 200, memory flat (mean RSS of the soak's last quarter within --max-growth (5%) of
its first quarter), TMPDIR empty, no descriptor leak, the burst answered as above.
``--tiny``: 8 s at concurrency 3 (a smoke run for the test suite; the checks still apply).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_service import (  # noqa: E402
    MB,
    REPO,
    RssSampler,
    free_port,
    malformed_inputs,
    percentile,
    start_server,
    wait_healthy,
)

KINDS = ("good", "malformed", "slow", "abandoned")
WEIGHTS = (0.5, 0.25, 0.15, 0.10)


def multipart(name: str, data: bytes, ctype: str, port: int) -> tuple[bytes, bytes]:
    """(request head, body) of a ``POST /v1/analyze`` with one multipart field ``file``."""
    boundary = "cxrkit-soak-" + os.urandom(8).hex()
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            f"Content-Type: {ctype}\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    head = (f"POST /v1/analyze HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n").encode()
    return head, body


async def raw_post(port: int, name: str, data: bytes, *, chunks: int = 40, pause: float = 0.1,
                   cut: float | None = None) -> int | None:
    """Post over a raw socket: the body in ``chunks`` pieces ``pause`` seconds apart; with ``cut`` (0-1) stop after
    that fraction of the body and close the connection (returns None). Otherwise returns the HTTP status."""
    head, body = multipart(name, data, "image/png", port)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head)
        end = len(body) if cut is None else int(len(body) * cut)
        step = max(1, -(-end // chunks))
        for i in range(0, end, step):
            writer.write(body[i:i + step])
            await writer.drain()
            await asyncio.sleep(pause)
        if cut is not None:
            writer.transport.abort()  # the client goes away mid-upload
            return None
        status_line = await asyncio.wait_for(reader.readline(), 600)
        await reader.read()  # the rest of the answer (Connection: close)
        return int(status_line.split()[1])
    finally:
        writer.close()


class Soak:
    def __init__(self, url: str, port: int, payloads, bad, seed: int) -> None:
        self.url, self.port, self.payloads, self.bad = url, port, payloads, bad
        self.rng = random.Random(seed)
        self.records: list[tuple[str, float, int | None, float, str]] = []  # kind, start, status, seconds, problem
        self.health: list[tuple[float, int | None, float]] = []

    async def one(self, client, kind: str) -> None:
        import httpx

        t = time.perf_counter()
        status, problem = None, ""
        try:
            if kind == "good":
                name, data = self.rng.choice(self.payloads)
                r = await client.post(f"{self.url}/v1/analyze", files={"file": (name, data, "image/png")})
                status = r.status_code
                if status != 200 or "segmentation" not in r.json():
                    problem = f"good {name}: HTTP {status} {r.text[:160]}"
            elif kind == "malformed":
                name, data, ctype, words = self.rng.choice(self.bad)
                r = await client.post(f"{self.url}/v1/analyze", files={"file": (name, data, ctype)})
                status = r.status_code
                try:
                    detail = r.json().get("detail")
                except ValueError:
                    detail = None
                if not (400 <= status < 500 and isinstance(detail, str) and words in detail):
                    problem = f"malformed {name}: HTTP {status} {r.text[:160]} (wanted a 4xx naming {words!r})"
            elif kind == "slow":
                name, data = self.rng.choice(self.payloads)
                status = await raw_post(self.port, name, data)
                if status != 200:
                    problem = f"slow {name}: HTTP {status}"
            else:
                name, data = self.rng.choice(self.payloads)
                await raw_post(self.port, name, data, chunks=10, pause=0.05, cut=self.rng.uniform(0.1, 0.9))
        except (httpx.HTTPError, OSError, asyncio.TimeoutError, ValueError, IndexError) as exc:
            if kind != "abandoned":
                problem = f"{kind}: {type(exc).__name__} {exc}"
        self.records.append((kind, t, status, time.perf_counter() - t, problem))

    async def client_loop(self, client, deadline: float) -> None:
        while time.perf_counter() < deadline:
            await self.one(client, self.rng.choices(KINDS, WEIGHTS)[0])

    async def health_loop(self, client, deadline: float) -> None:
        import httpx

        while time.perf_counter() < deadline:
            t = time.perf_counter()
            try:
                status = (await client.get(f"{self.url}/healthz", timeout=5)).status_code
            except httpx.HTTPError:
                status = None
            self.health.append((t, status, time.perf_counter() - t))
            await asyncio.sleep(max(0.0, 1.0 - (time.perf_counter() - t)))

    async def run(self, concurrency: int, duration: float) -> float:
        import httpx

        limits = httpx.Limits(max_connections=concurrency + 4)
        async with httpx.AsyncClient(timeout=600, limits=limits) as client, \
                httpx.AsyncClient(timeout=5) as hclient:
            t0 = time.perf_counter()
            deadline = t0 + duration
            await asyncio.gather(self.health_loop(hclient, deadline),
                                 *(self.client_loop(client, deadline) for _ in range(concurrency)))
            return time.perf_counter() - t0


async def burst(url: str, payload: tuple[str, bytes], n: int) -> list[tuple[int, str | None]]:
    """``n`` good requests at once; (status, Retry-After header) of each."""
    import httpx

    async with httpx.AsyncClient(timeout=600, limits=httpx.Limits(max_connections=n)) as client:
        async def one():
            r = await client.post(f"{url}/v1/analyze", files={"file": (payload[0], payload[1], "image/png")})
            return r.status_code, r.headers.get("retry-after")

        return await asyncio.gather(*(one() for _ in range(n)))


def quarter_means(samples: list[tuple[float, int]], t0: float, t1: float) -> tuple[float, float]:
    """Mean RSS over the first and the last quarter of [t0, t1] (by time, not by sample count)."""
    q = (t1 - t0) / 4
    first = [r for t, r in samples if t0 <= t < t0 + q]
    last = [r for t, r in samples if t1 - q <= t <= t1]
    return statistics.mean(first), statistics.mean(last)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default = REPO.parent / "shared" / "data" / "nih" / "images"
    if not default.is_dir():
        default = REPO / "src" / "cxrkit" / "demo" / "sample" / "nih" / "images"
    ap.add_argument("--images", type=Path, default=default)
    ap.add_argument("--duration", type=float, default=300.0, help="soak seconds (default 300)")
    ap.add_argument("-c", "--concurrency", type=int, default=8, help="clients at once (default 8)")
    ap.add_argument("--max-concurrent", type=int, default=1, help="server: analyses at once")
    ap.add_argument("--max-queue", type=int, default=8, help="server: waiting requests before 503")
    ap.add_argument("--max-growth", type=float, default=0.05,
                    help="fail when mean RSS of the last quarter exceeds the first quarter's by this fraction")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tiny", action="store_true", help="8 s at concurrency 3: a smoke run")
    args = ap.parse_args()
    if args.tiny:
        args.duration, args.concurrency = 8.0, 3
    if args.duration <= 0 or args.concurrency < 1:
        ap.error(f"--duration ({args.duration}) must be > 0 and -c ({args.concurrency}) >= 1")
    if args.concurrency > args.max_concurrent + args.max_queue:
        ap.error(f"-c {args.concurrency} exceeds the server's max-concurrent + max-queue "
                 f"({args.max_concurrent + args.max_queue}): good requests would get 503")
    import httpx
    import psutil

    files = sorted(args.images.glob("*.png"))[:40]
    if not files:
        ap.error(f"no PNG images in {args.images}")
    payloads = [(f.name, f.read_bytes()) for f in files]
    bad = malformed_inputs(payloads[0][1])
    failures: list[str] = []
    print(f"images: {len(files)} PNGs from {args.images}; {args.duration:.0f} s soak at concurrency "
          f"{args.concurrency}; mix {dict(zip(KINDS, WEIGHTS))}; server max-concurrent {args.max_concurrent}, "
          f"max-queue {args.max_queue}; seed {args.seed}; CPU cores {os.cpu_count()}")

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="cxrkit-soak-") as tmp:
        server_tmp = Path(tmp) / "server-tmp"
        server_tmp.mkdir()
        log_path = Path(tmp) / "serve.log"
        proc = start_server(port, args.max_concurrent, args.max_queue, log_path, tmpdir=server_tmp)
        try:
            ready = wait_healthy(url, proc)
            # Warm-up: lazy imports and first allocations, at the soak's concurrency, so that what C uploads in
            # flight allocate (the server's per-thread memory arenas, upload buffers, the models' inference copies)
            # appears here and not in the soak's first quarter, which the memory check compares against.
            warm = [payloads[k % len(payloads)] for k in range(2 * args.concurrency)]

            def warm_post(item: tuple[str, bytes]):
                return httpx.post(f"{url}/v1/analyze", files={"file": (item[0], item[1], "image/png")}, timeout=600)

            with ThreadPoolExecutor(args.concurrency) as pool:
                for (name, _), r in zip(warm, pool.map(warm_post, warm)):
                    if r.status_code != 200:
                        failures.append(f"warm-up {name}: HTTP {r.status_code} {r.text[:200]}")
            server = psutil.Process(proc.pid)
            fds_before = server.num_fds()
            sampler = RssSampler(proc.pid, interval=0.2)
            rss_before = sampler.rss()
            sampler.start()
            soak = Soak(url, port, payloads, bad, args.seed)
            t0 = time.perf_counter()
            wall = asyncio.run(soak.run(args.concurrency, args.duration))
            t1 = time.perf_counter()
            sampler.stop.set()
            sampler.join()
            print(f"\nserver: healthy {ready:.1f} s after start, pid {proc.pid}; soak wall {wall:.1f} s "
                  f"(the last requests finish after the deadline)")

            by_kind = collections.defaultdict(list)
            for rec in soak.records:
                by_kind[rec[0]].append(rec)
            print(f"{'kind':10s} {'requests':>8s} {'statuses':30s} {'p50 s':>7s} {'p95 s':>7s} problems")
            for kind in KINDS:
                recs = by_kind.get(kind, [])
                statuses = collections.Counter("cut" if s is None else s for _, _, s, _, _ in recs)
                lat = [d for _, _, _, d, _ in recs] or [0.0]
                probs = [p for *_, p in recs if p]
                print(f"{kind:10s} {len(recs):8d} {str(dict(statuses)):30s} {percentile(lat, 50):7.2f} "
                      f"{percentile(lat, 95):7.2f} {len(probs)}")
                for p in probs[:3]:
                    print(f"    {p}")
                failures += probs
            fivexx = sum(1 for k, _, s, _, _ in soak.records if k in ("good", "slow") and s is not None and s >= 500)
            good_ok = sum(1 for k, _, s, _, _ in soak.records if k in ("good", "slow") and s == 200)
            print(f"good+slow uploads: {good_ok} answered 200, {fivexx} 5xx")

            hs = collections.Counter(s for _, s, _ in soak.health)
            hlat = [d for _, _, d in soak.health] or [0.0]
            print(f"/healthz: {len(soak.health)} polls, statuses {dict(hs)}, p50 {percentile(hlat, 50) * 1e3:.0f} ms, "
                  f"max {max(hlat) * 1e3:.0f} ms")
            if set(hs) != {200}:
                failures.append(f"/healthz did not always answer 200: {dict(hs)}")

            first, last = quarter_means(sampler.samples, t0, t1)
            growth = (last - first) / first
            peak = max(r for _, r in sampler.samples)
            print(f"server RSS: after warm-up {rss_before / MB:.0f} MB, peak {peak / MB:.0f} MB; mean first quarter "
                  f"{first / MB:.1f} MB -> last quarter {last / MB:.1f} MB ({growth * 100:+.2f}%, limit "
                  f"{args.max_growth * 100:.0f}%; {len(sampler.samples)} samples)")
            if growth > args.max_growth:
                failures.append(f"server RSS grew {growth * 100:.2f}% from the first to the last quarter")

            n_burst = args.max_concurrent + args.max_queue + 8
            answers = asyncio.run(burst(url, payloads[0], n_burst))
            codes = collections.Counter(s for s, _ in answers)
            refused = [(s, ra) for s, ra in answers if s == 503]
            print(f"\noverload burst: {n_burst} good requests at once -> {dict(codes)}; Retry-After on the 503s: "
                  f"{sorted({ra for _, ra in refused}) or '-'}")
            if not refused or any(ra is None for _, ra in refused) or set(codes) - {200, 503}:
                failures.append(f"burst: wanted some 503 with Retry-After and the rest 200, got {answers}")

            time.sleep(1.0)  # the last temporary folders are removed as their answers are sent
            left = sorted(p.name for p in server_tmp.iterdir())
            fds_after = server.num_fds()
            print(f"server TMPDIR after the run: {len(left)} entries {left[:5]}; open descriptors {fds_before} "
                  f"after warm-up -> {fds_after} at the end")
            if left:
                failures.append(f"{len(left)} temporary files or folders left in the server's TMPDIR: {left[:5]}")
            if fds_after > fds_before + 2:
                failures.append(f"descriptor leak: {fds_before} -> {fds_after}")
            if proc.poll() is not None:
                failures.append(f"cxrkit serve exited with status {proc.returncode}")
        except (RuntimeError, OSError, ValueError, httpx.HTTPError, statistics.StatisticsError) as exc:
            failures.append(f"{type(exc).__name__}: {exc}")
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
            if failures:
                print(log_path.read_text(errors="replace")[-3000:] if log_path.exists() else "(no server log)")
    print("\nresult: " + ("PASS (zero 5xx on good uploads, every bad one a clear 4xx, /healthz always 200, flat "
                          "memory, 503 + Retry-After beyond the queue, temporary files gone)"
                          if not failures else "FAIL\n  " + "\n  ".join(failures[:20])))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

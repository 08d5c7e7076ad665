"""``cxrkit serve``: the REST service and web viewer."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="REST service (POST /v1/analyze, GET /v1/models, /healthz, "
                                          "/v1/results) and web viewer (GET /)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--workers", type=int, default=1, help="processes, each loading the models once")
    p.add_argument("--max-upload-mb", type=float, default=50.0)
    p.add_argument("--max-pixels", type=int, default=40_000_000)
    p.add_argument("--max-concurrent", type=int, default=1, help="analyses run at once per worker")
    p.add_argument("--max-queue", type=int, default=8, help="requests waiting per worker before 503")
    p.add_argument("--results", metavar="DIR",
                   help="browse mode: a folder written by `cxrkit analyze` (GET /v1/results, the viewer's Browse tab)")
    p.set_defaults(func=_serve)


def _serve(args: argparse.Namespace) -> int:
    from cxrkit.service.app import serve

    serve(args.host, args.port, args.workers, max_upload_bytes=int(args.max_upload_mb * 1024 * 1024),
          max_pixels=args.max_pixels, max_concurrent=args.max_concurrent, max_queue=args.max_queue,
          results_dir=args.results)
    return 0

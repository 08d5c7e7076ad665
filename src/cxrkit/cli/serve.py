"""``cxrkit serve``: the REST service and web viewer."""

from __future__ import annotations

import argparse

from cxrkit.cli.options import (
    add_device_options,
    add_model_option,
    nonneg_int,
    positive_float,
    positive_int,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="REST service (POST /v1/analyze, GET /v1/models, /healthz, "
                                          "/v1/results) and web viewer (GET /)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=nonneg_int, default=8000)
    p.add_argument("--workers", type=positive_int, default=1, help="processes, each loading the models once")
    add_model_option(p, "classifier (none runs unless named: cxrkit ships no classifier trained on real labels)", None)
    add_model_option(p, "landmark model", "hybridgnet (shipped)", flag="--segmentation-model")
    add_device_options(p, workers=False)
    p.add_argument("--max-upload-mb", type=positive_float, default=50.0)
    p.add_argument("--max-pixels", type=positive_int, default=40_000_000)
    p.add_argument("--max-concurrent", type=positive_int, default=1, help="analyses run at once per worker")
    p.add_argument("--max-queue", type=nonneg_int, default=8, help="requests waiting per worker before 503")
    p.add_argument("--results", metavar="DIR",
                   help="browse mode: a folder written by `cxrkit analyze` (GET /v1/results, the viewer's Browse tab)")
    p.set_defaults(func=_serve)


def _serve(args: argparse.Namespace) -> int:
    from cxrkit.errors import UsageError
    from cxrkit.models import load_model
    from cxrkit.service.app import ResultsIndex, serve

    if args.results is not None:
        try:
            ResultsIndex(args.results)
        except Exception as exc:  # noqa: BLE001 - reported as the usage error it is
            raise UsageError(f"--results {args.results}: {exc}") from None
    for spec, task, need in ((args.model, "classification", "logits"),
                             (args.segmentation_model, "segmentation", "landmarks")):
        if spec:  # check the models before the server starts (the workers load their own copies)
            load_model(spec, task=task, needs=need, device="cpu")
    serve(args.host, args.port, args.workers, max_upload_bytes=int(args.max_upload_mb * 1024 * 1024),
          max_pixels=args.max_pixels, max_concurrent=args.max_concurrent, max_queue=args.max_queue,
          results_dir=args.results, classifier=args.model, segmenter=args.segmentation_model, device=args.device)
    return 0

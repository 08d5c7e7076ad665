"""The engine against its limit and the old serial path, in one run, on the same images and processes.

For each job -- ``segment``, ``segment --qc`` and ``analyze`` (no classifier, QC on, JSON + HTML + preview) --
three rates (images/s, best of ``--repeats``, wall time of the whole call):
  (a) decode only: the images read and converted to 8-bit gray by ``--workers`` processes (the CPU-side limit
      of any job over PNG files on this machine);
  (b) the old serial path: one process, the per-image loop cxrkit had before the engine (decode, model on a
      batch, masks + RLE + row; QC and analysis per image), torch using ``--workers`` threads;
  (c) the engine: ``segment_files`` / ``analyze_files`` with ``--workers`` worker processes.

Then the per-stage costs, measured on the same images in this process: decode+preprocess (``prepare``),
model stage per image at the batch size (``forward``; for --qc including the batched registration) and
post-processing (``finish``), each in ms/image, and what they imply for a machine with ``C`` cores and the
model stage on a device: engine rate ~ min(C / (prepare + finish), 1 / forward). Targets on a 2-core CPU:
segment >= 0.6x decode-only, segment --qc >= 0.4x. ``--scaling`` also times the engine with 1..N workers.

Usage: python bench/bench_pipeline.py [--images DIR] [--n 96] [--workers N] [--batch 16] [--repeats 2]
           [--device auto] [--precision auto] [--scaling] [--tiny]
Default images: ../shared/data/nih/images (200 real 1024x1024 NIH PNGs), else the bundled sample.
``--tiny``: 4 images, one repeat, the segment and analyze jobs (the test suite runs it so this script keeps
working; no figure is asserted). ``--omp-wait passive|active`` (default passive, as the ``cxrkit`` command sets
it): OpenMP's wait policy for torch in this process; run both to see what spinning threads cost on busy cores.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _decode(path: str) -> int:
    from cxrkit.io.images import read_image, to_uint8

    return int(to_uint8(read_image(path).pixels).shape[0])


def decode_only(paths: list[Path], workers: int) -> float:
    t = time.perf_counter()
    if workers <= 1:
        for p in paths:
            _decode(str(p))
    else:
        with ProcessPoolExecutor(workers) as pool:
            list(pool.map(_decode, map(str, paths), chunksize=4))
    return len(paths) / (time.perf_counter() - t)


def old_segment(model, inputs, out_csv: Path, qc=None, batch: int = 16, precision: str = "fp32") -> None:
    """The pre-engine ``segment_files`` loop (one process): decode a batch, predict it, then per image fill the
    masks, RLE-encode, (RCA on the full-size masks) and write the row. Same model code and precision as the
    engine, so the comparison measures the pipeline."""
    import csv

    from cxrkit.io.images import read_image
    from cxrkit.segmentation.infer import predict_landmarks
    from cxrkit.segmentation.rows import COLUMNS, segmentation_row

    with open(out_csv, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS, lineterminator="\n")
        w.writeheader()
        for start in range(0, len(inputs), batch):
            xs = [(i, read_image(i.path)) for i in inputs[start:start + batch]]
            pts = predict_landmarks(model, [x.pixels for _, x in xs], precision)
            for (i, x), p in zip(xs, pts):
                w.writerow(segmentation_row(i.id, p, x.height, x.width, x.pixels, qc))


def old_analyze(analyzer, inputs, out: Path) -> None:
    """The pre-engine ``analyze_files`` loop: per image decode, every model, JSON + HTML + preview."""
    from cxrkit.analysis.document import PREVIEW_SUFFIX, preview_png
    from cxrkit.analysis.report import render_html
    from cxrkit.io.atomic import write_bytes, write_text
    from cxrkit.io.images import read_image

    for i in inputs:
        x = read_image(i.path)
        doc, overlays = analyzer.analyze(x.pixels, i.id, x.spacing)
        stem = out / Path(i.id).stem
        write_bytes(stem.with_name(stem.name + PREVIEW_SUFFIX), preview_png(x.pixels))
        write_text(stem.with_name(stem.name + ".json"), json.dumps(doc) + "\n")
        write_text(stem.with_name(stem.name + ".html"), render_html(doc, overlays))


def best_rate(fn, n: int, repeats: int) -> float:
    best = 0.0
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = max(best, n / (time.perf_counter() - t))
    return best


def stage_costs(job, items, batch: int) -> dict[str, float]:
    """ms/image of prepare, forward (per image at this batch size) and finish, in this process."""
    t = time.perf_counter()
    prepared = [job.work.prepare(i) for i in items]
    t_prep = (time.perf_counter() - t) / len(items)
    outputs, t = [], time.perf_counter()
    for s in range(0, len(items), batch):
        chunk = prepared[s:s + batch]
        outputs += job.forward([x for _, x in chunk], [m for m, _ in chunk])
    t_fwd = (time.perf_counter() - t) / len(items)
    t = time.perf_counter()
    for i, (m, _), o in zip(items, prepared, outputs):
        job.work.finish(i, m, o)
    t_fin = (time.perf_counter() - t) / len(items)
    return {"prepare": 1000 * t_prep, "forward": 1000 * t_fwd, "finish": 1000 * t_fin}


CHEXMASK_IMAGES = 660_000  # CheXmask's images over its five datasets (Gaggion et al., 2023)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images")
    ap.add_argument("--n", type=int, default=96, help="images to use (default 96)")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--jobs", default="segment,segment-qc,analyze")
    ap.add_argument("--scaling", action="store_true", help="also time the engine's segment with 1..--workers workers")
    ap.add_argument("--tiny", action="store_true", help="4 images, 1 repeat, segment and analyze: a smoke run")
    ap.add_argument("--json", help="also write the figures to this JSON file")
    ap.add_argument("--omp-wait", choices=("passive", "active"), default="passive",
                    help="OMP_WAIT_POLICY for torch here (default passive, as the cxrkit command sets it)")
    args = ap.parse_args()
    os.environ["OMP_WAIT_POLICY"] = args.omp_wait.upper()  # before torch is imported
    if args.tiny:  # every code path once (segment, analyze with QC), as little as possible
        args.n, args.repeats, args.batch, args.jobs = 4, 1, 2, "segment,analyze"
        args.workers = min(args.workers, 2)

    import torch

    from cxrkit.analysis.analyze import Analyzer, analyze_files
    from cxrkit.analysis.job import AnalyzeItem
    from cxrkit.io.inputs import collect_images
    from cxrkit.models import load_model
    from cxrkit.models.device import resolve_precision
    from cxrkit.qc.rca import make_estimator
    from cxrkit.segmentation.infer import segment_files
    from cxrkit.segmentation.job import SegmentItem, SegmentJob

    shared = REPO.parent / "shared" / "data" / "nih" / "images"
    folder = Path(args.images) if args.images else (shared if shared.is_dir() else REPO / "src/cxrkit/demo/sample/nih/images")
    _, inputs = collect_images([folder])
    inputs = (inputs * (1 + args.n // max(1, len(inputs))))[:args.n] if args.n > len(inputs) else inputs[:args.n]
    seen: dict[str, int] = {}  # repeated files (a small sample) get distinct identities
    for k, inp in enumerate(inputs):
        seen[inp.id] = seen.get(inp.id, 0) + 1
        if seen[inp.id] > 1:
            inputs[k] = type(inp)(inp.path, f"r{seen[inp.id]}/{inp.id}")
    paths = [i.path for i in inputs]
    torch.set_num_threads(max(1, args.workers))
    model = load_model("hybridgnet", device=args.device)
    dev = next(model.parameters()).device
    prec = resolve_precision(args.precision, model.card, dev)
    qc = make_estimator(device=dev)
    n = len(inputs)
    print(f"{n} images from {folder}; {args.workers} processes/threads; batch {args.batch}; device {dev}; "
          f"segmentation precision {prec}; RCA: learned registration, {len(qc.reference)} references; "
          f"torch {torch.__version__}, {os.cpu_count()} cores; OMP_WAIT_POLICY {os.environ['OMP_WAIT_POLICY']}")
    results: dict = {"images": n, "workers": args.workers, "batch": args.batch, "device": str(dev),
                     "omp_wait_policy": os.environ["OMP_WAIT_POLICY"],
                     "precision": prec, "references": len(qc.reference)}
    limit = best_rate(lambda: decode_only(paths, args.workers), n, args.repeats)
    results["decode_only"] = limit
    print(f"(a) decode only, {args.workers} processes: {limit:8.1f} images/s")
    jobs = [j.strip() for j in args.jobs.split(",") if j.strip()]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name in jobs:
            with_qc = name in ("segment-qc", "analyze")
            est = qc if with_qc else None
            if name.startswith("segment"):
                def old(k=[0]):  # noqa: B006 - a fresh file per call
                    k[0] += 1
                    old_segment(model, inputs, tmp / f"old_{name}_{k[0]}.csv", est, args.batch, prec)

                def new(k=[0]):  # noqa: B006
                    k[0] += 1
                    segment_files(model, inputs, tmp / f"new_{name}_{k[0]}.csv", progress=False, qc=est,
                                  batch_size=args.batch, workers=args.workers, precision=prec)

                job = SegmentJob(model, est, precision=prec)
                items = [SegmentItem(i, i.id) for i in inputs[: min(n, 2 * args.batch)]]
            else:
                analyzer = Analyzer(None, model, qc, "")

                def old(k=[0]):  # noqa: B006
                    k[0] += 1
                    d = tmp / f"old_an_{k[0]}"
                    for sub in {str(Path(i.id).parent) for i in inputs}:
                        (d / sub).mkdir(parents=True, exist_ok=True)
                    old_analyze(analyzer, inputs, d)

                def new(k=[0]):  # noqa: B006
                    k[0] += 1
                    analyze_files(analyzer, inputs, tmp / f"new_an_{k[0]}", progress=False, preview=True,
                                  workers=args.workers, batch_size=args.batch, precision=prec)

                job = analyzer.job(out_dir=str(tmp / "stage"), preview=True, precision=prec)
                items = [AnalyzeItem(i.path, i.id, f"s{k}") for k, i in enumerate(inputs[: min(n, 2 * args.batch)])]
            r_old = best_rate(old, n, args.repeats)
            r_new = best_rate(new, n, args.repeats)
            costs = stage_costs(job, items, args.batch)
            results[name] = {"old": r_old, "engine": r_new, "ratio_to_decode": r_new / limit, "speedup": r_new / r_old,
                             "stage_ms": costs}
            cpu_side = costs["prepare"] + costs["finish"]
            print(f"{name:<11} (b) old serial {r_old:7.1f} images/s   (c) engine {r_new:7.1f} images/s   "
                  f"= {r_new / limit:4.2f}x decode-only, {r_new / r_old:4.2f}x the old path")
            print(f"{'':<11} stages, ms/image in one process: prepare {costs['prepare']:6.1f}, forward "
                  f"{costs['forward']:6.1f} (batch {args.batch}), finish {costs['finish']:6.1f}; a node with C cores "
                  f"and the model stage on this device: ~min(C x {1000 / cpu_side:.1f}, {1000 / costs['forward']:.0f}) "
                  f"images/s (16 cores: {min(16 * 1000 / cpu_side, 1000 / costs['forward']):.0f})")
            node16 = min(16 * 1000 / cpu_side, 1000 / costs["forward"])
            results[name]["chexmask_660k_hours"] = {"here": CHEXMASK_IMAGES / r_new / 3600,
                                                    "node16_this_device": CHEXMASK_IMAGES / node16 / 3600}
            print(f"{'':<11} CheXmask's {CHEXMASK_IMAGES:,} images at these rates: "
                  f"{CHEXMASK_IMAGES / r_new / 3600:.1f} h here (engine), "
                  f"{CHEXMASK_IMAGES / node16 / 3600:.1f} h on a 16-core node with the model stage on this device; "
                  f"k such nodes (Ray): that / k")
        if args.scaling:
            curve = {}
            for w in range(1, args.workers + 1):
                torch.set_num_threads(w)
                curve[w] = {"decode_only": best_rate(lambda: decode_only(paths, w), n, args.repeats),
                            "engine_segment": best_rate(lambda k=[0]: segment_files(  # noqa: B006
                                model, inputs, tmp / f"scale_{w}_{time.perf_counter_ns()}.csv", progress=False,
                                batch_size=args.batch, workers=w, precision=prec), n, args.repeats)}
                print(f"scaling: {w} process(es): decode only {curve[w]['decode_only']:7.1f}, engine segment "
                      f"{curve[w]['engine_segment']:7.1f} images/s "
                      f"({curve[w]['engine_segment'] / curve[w]['decode_only']:.2f}x decode-only)")
            results["scaling"] = curve
    targets = {"segment": 0.6, "segment-qc": 0.4}
    for name, t in targets.items():
        if name in results:
            r = results[name]["ratio_to_decode"]
            print(f"target {name} >= {t}x decode-only: {r:.2f}x -> {'met' if r >= t else 'NOT met'}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()

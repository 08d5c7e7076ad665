"""One-image analysis (``cxrkit analyze``): every model on one radiograph, one JSON and one HTML report.

:class:`Analyzer` holds the models (loaded once); :func:`analyze_files` runs it over files on the engine. The
JSON's schema and helpers are in :mod:`cxrkit.analysis.document`, the HTML report in :mod:`cxrkit.analysis.report`,
the engine job in :mod:`cxrkit.analysis.job`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from cxrkit.analysis.job import AnalyzeItem, AnalyzeJob
from cxrkit.engine import Failure, run_pipeline, workers_for
from cxrkit.io.inputs import ImageInput, output_stems
from cxrkit.models import load_model

log = logging.getLogger(__name__)

class Analyzer:
    """Models loaded once, applied per image.

    Args:
        classifier: a cxrkit classifier, or None (the default) to run no classification: cxrkit ships no
            classifier trained on real labels (``resnet_lite_lesions`` is a benchmark model for synthetic
            findings); pass one trained with ``cxrkit train`` or imported with ``cxrkit models import``.
        segmenter: a landmark model (default: the shipped ``hybridgnet``).
        qc: an :class:`cxrkit.qc.rca.RcaEstimator`, or None to skip quality control.
    """
    def __init__(self, classifier=None, segmenter=None, qc=None, qc_note: str = "") -> None:
        self.classifier = classifier
        self.segmenter = segmenter if segmenter is not None else load_model(None, default="hybridgnet")
        self.qc = qc
        self.qc_note = qc_note or ("" if qc is not None else "quality control not run")

    def job(self, *, heatmaps: bool = False, out_dir: str | os.PathLike | None = None, preview: bool = False,
            html: bool = True, precision: str = "auto"):
        """This analyzer's models as an engine job (:class:`cxrkit.analysis.job.AnalyzeJob`)."""

        return AnalyzeJob(self.segmenter, self.classifier, self.qc, self.qc_note, heatmaps=heatmaps,
                          out_dir=out_dir, preview=preview, html=html, precision=precision)

    def analyze(self, pixels: np.ndarray, name: str, spacing: tuple[float, float] | None = None, *,
                heatmaps: bool = False, overlays: bool = True) -> tuple[dict, dict | None]:
        """(analysis JSON, overlays {"segmentation", "heatmap"} as BGR arrays) of one image (H, W), in this
        process: the same job halves the engine runs.

        ``heatmaps``: also put each finding's heatmap into the JSON (the optional ``heatmaps`` object, see the
        module docstring). ``overlays=False``: skip drawing them (None is returned in their place), for callers
        that only need the JSON (the service, batch jobs).
        """

        job = self.job(heatmaps=heatmaps, html=overlays)
        item = AnalyzeItem(None, name, pixels=pixels, spacing=spacing)
        meta, inputs = job.work.prepare(item)
        (output,) = job.forward([inputs], [meta])
        return job.work.document(item, meta, output)


def analyze_files(analyzer: Analyzer, inputs: Sequence[ImageInput], out: str | os.PathLike,
                  progress: bool = True, *, heatmaps: bool = False, preview: bool = False,
                  workers: int | None = None, batch_size: int = 8, precision: str = "auto") -> list[tuple[str, str]]:
    """Write ``<stem>.json`` and ``<stem>.html`` per image into ``out``, mirroring the input tree
    (``OUT/<relative folder>/<stem>.json``, stems by :func:`cxrkit.io.inputs.output_stems`); returns the
    (path, error) failures. An existing output of another image (its JSON names another ``image``) is never
    overwritten: that input fails instead. Runs on the engine: decoding and post-processing (masks, RLE,
    heatmaps, boxes, HTML) in ``workers`` processes, the models ``batch_size`` images at a time on their device.

    ``heatmaps``: include the optional ``heatmaps`` object in each JSON. ``preview``: also write
    ``<stem>.preview.png`` (see :func:`preview_png`), the image browse mode shows.
    """
    from tqdm.auto import tqdm


    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stems = output_stems([i.id for i in inputs])
    items = [AnalyzeItem(i.path, i.id, stems[i.id]) for i in inputs]
    failures: list[tuple[str, str]] = []
    bar = tqdm(total=len(items), desc="analyze", disable=not progress)

    def emit(item: AnalyzeItem, result) -> None:
        if isinstance(result, Failure):
            log.error("%s", result.message)
            failures.append((str(item.path), result.message))
        bar.update(1)

    try:
        run_pipeline(analyzer.job(heatmaps=heatmaps, out_dir=out, preview=preview, precision=precision), items, emit,
                     workers=workers_for(workers, len(items)), batch_size=batch_size)
    finally:
        bar.close()
    return failures



"""Batch tasks: one per kind (``segment``, ``predict``, ``analyze``), a thin layer over the one-image APIs.

A :class:`TaskSpec` is a small picklable description (kind, checkpoints, options); :func:`build_task` turns
it into a :class:`BatchTask` that loads its models once (per process, or per Ray actor) and turns a list
of :class:`~cxrkit.batch.manifest.ManifestRow` into result rows. Every row carries ``row_index``,
``path``, ``image_id`` and ``error`` (null when the image was fine); an image that cannot be read or
processed gives a row with the error message and null task columns, never an exception.

The computation is the existing one: :func:`cxrkit.segmentation.infer.predict_landmarks` +
:func:`~cxrkit.segmentation.infer.segmentation_row` (CheXmask layout), :func:`cxrkit.classification.predict.
predict_images` and :meth:`cxrkit.analysis.analyze.Analyzer.analyze`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cxrkit.analysis.job import AnalyzeItem, AnalyzeJob
from cxrkit.batch.manifest import ManifestRow
from cxrkit.classification.job import PredictItem, PredictJob
from cxrkit.engine import Failure, run_to_list
from cxrkit.errors import InputError, UsageError, require
from cxrkit.io.inputs import ImageInput
from cxrkit.models import default_card, load_model, read_checkpoint
from cxrkit.models.registry import is_checkpoint_path
from cxrkit.qc.rca import make_estimator
from cxrkit.segmentation.job import SegmentItem, SegmentJob
from cxrkit.segmentation.rows import COLUMNS

log = logging.getLogger(__name__)

KINDS = ("segment", "predict", "analyze")
BASE_COLUMNS = ("row_index", "path", "image_id", "error")
DEFAULT_SEGMENTER = "hybridgnet"


@dataclass(frozen=True)
class TaskSpec:
    """What to compute; picklable, so it can travel to Ray actors.

    Attributes:
        kind: ``segment``, ``predict`` or ``analyze``.
        model: the task's main model, a registry name with shipped weights or a checkpoint path: the landmark
            model for ``segment`` (None: the shipped ``hybridgnet``), the classifier for ``predict`` (required)
            and ``analyze`` (None: no classification, as ``cxrkit analyze``).
        segmentation_model: landmark checkpoint for ``analyze`` (None: shipped ``hybridgnet``).
        qc: :func:`cxrkit.qc.rca.make_estimator` keyword arguments to fill the Dice RCA columns
            (``segment``) or the ``qc`` object (``analyze``); None: no quality control.
        batch_size: images per forward pass.
        device: ``auto``, ``cpu`` or ``cuda`` (``cuda:N``); preprocessing and post-processing stay on the CPU.
        threads: torch CPU threads in the process running the task (None: leave torch's default).
        workers: engine worker processes for decoding and post-processing in each process running the task
            (the local engine: None = all cores; a Ray actor: 0 = in the actor's process).
        precision: ``auto`` (each model card's measured-safe default), ``fp32`` or ``bf16``.
    """

    kind: str
    model: str | None = None
    segmentation_model: str | None = None
    qc: dict | None = None
    batch_size: int = 8
    device: str = "cpu"
    threads: int | None = None
    box_policy: str = "positive"
    workers: int | None = None
    precision: str = "auto"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise UsageError(f"unknown batch task {self.kind!r}; choose one of {KINDS}")
        if self.batch_size < 1:
            raise UsageError(f"--batch-size must be >= 1, got {self.batch_size}")
        if self.kind == "predict" and not self.model:
            raise UsageError("batch predict needs --model (a classifier checkpoint or registry name)")


def _card(spec: str | None, default: str):
    if spec is None:
        return default_card(default)
    return read_checkpoint(spec)["card"] if is_checkpoint_path(spec) else default_card(spec)


def model_cards(spec: TaskSpec) -> dict[str, Any]:
    """The :class:`~cxrkit.models.ModelCard` of each model the task uses, by role (``segmenter``,
    ``classifier``), read without building the networks (for the plan and the output schema)."""
    if spec.kind == "segment":
        return {"segmenter": _card(spec.model, DEFAULT_SEGMENTER)}
    cards = {"classifier": _card(spec.model, "")} if spec.model else {}
    if spec.kind == "analyze":
        cards["segmenter"] = _card(spec.segmentation_model, DEFAULT_SEGMENTER)
    return cards


def describe(spec: TaskSpec) -> dict:
    """Everything that decides the task's output (recorded in the plan; a rerun must match it)."""
    models = {role: {"name": c.name, "weights_sha256": c.weights_sha256} for role, c in model_cards(spec).items()}
    return {"task": spec.kind, "models": models, "qc": spec.qc,
            "box_policy": spec.box_policy if spec.kind != "segment" else None}


def schema(spec: TaskSpec):
    """The pyarrow schema of the task's result rows (the same for every shard, error rows included)."""
    pa = require("pyarrow", "scale")
    base = [("row_index", pa.int64()), ("path", pa.string()), ("image_id", pa.string()), ("error", pa.string())]
    if spec.kind == "segment":
        types = {"Dice RCA (Mean)": pa.float64(), "Dice RCA (Max)": pa.float64(), "Height": pa.int64(),
                 "Width": pa.int64()}
        return pa.schema(base + [(c, types.get(c, pa.string())) for c in COLUMNS])
    cards = model_cards(spec)
    labels = cards["classifier"].labels if "classifier" in cards else ()
    cols = [("width", pa.int64()), ("height", pa.int64())] + [(f"prob_{k}", pa.float64()) for k in labels]
    if spec.kind == "predict":
        return pa.schema(base + cols + [("boxes", pa.string())])
    return pa.schema(base + cols + [("ctr", pa.float64()), ("dice_rca_mean", pa.float64()), ("analysis", pa.string())])


@dataclass(frozen=True)
class ManifestWork:
    """A job's worker side for manifest rows: an empty path is the row's error, the rest is the job's."""
    inner: Any

    def prepare(self, item):
        if not str(item.path or "").strip() or str(item.path) == ".":
            raise InputError("empty path in the manifest")
        return self.inner.prepare(item)

    def finish(self, item, meta, output):
        return self.inner.finish(item, meta, output)


class _ManifestJob:
    def __init__(self, job) -> None:
        self.job = job
        self.work = ManifestWork(job.work)

    def forward(self, inputs, metas):
        return self.job.forward(inputs, metas)


class BatchTask:
    """Models loaded once; :meth:`run` turns manifest rows into result rows (dicts, schema order) on the engine,
    and :meth:`items` / :meth:`row` let the local engine stream many shards through one pipeline."""

    def __init__(self, spec: TaskSpec) -> None:
        import torch

        if spec.threads:
            torch.set_num_threads(spec.threads)
        self.spec = spec
        self.schema = schema(spec)
        self.columns = list(self.schema.names)
        self._qc = None
        self.job = None

    def _load(self, spec: str | None, default: str | None, task: str, needs: str):
        return load_model(spec, default=default, task=task, needs=needs, device=self.spec.device)

    def _estimator(self, model):
        if self.spec.qc is None:
            return None

        return make_estimator(**self.spec.qc, device=next(model.parameters()).device)

    def item(self, r: ManifestRow):
        raise NotImplementedError

    def values(self, result) -> dict:
        raise NotImplementedError

    def row(self, r: ManifestRow, result) -> dict:
        """The result row of manifest row ``r`` from the engine's result (or :class:`~cxrkit.engine.Failure`)."""
        row = dict.fromkeys(self.columns)
        if isinstance(result, Failure):
            log.error("row %d (%s): %s", r.row_index, r.image_id, result.message)
            row.update(row_index=r.row_index, path=r.path, image_id=r.image_id, error=result.message)
            return row
        row.update(self.values(result))
        row.update(row_index=r.row_index, path=r.path, image_id=r.image_id, error=None)
        return row

    def run(self, rows: Sequence[ManifestRow], workers: int | None = 0) -> list[dict]:
        """Result rows for ``rows`` in the same order; bad images become error rows."""
        results = run_to_list(_ManifestJob(self.job), [self.item(r) for r in rows], workers=workers,
                              batch_size=self.spec.batch_size)
        return [self.row(r, res) for r, res in zip(rows, results)]

    def manifest_job(self):
        return _ManifestJob(self.job)


class SegmentTask(BatchTask):
    """CheXmask-layout rows (landmarks, RLE masks, size; Dice RCA with ``qc``)."""

    def __init__(self, spec: TaskSpec) -> None:
        super().__init__(spec)

        model = self._load(spec.model, DEFAULT_SEGMENTER, "segmentation", "landmarks")
        self.job = SegmentJob(model, self._estimator(model), precision=spec.precision)

    def item(self, r: ManifestRow):
        return SegmentItem(ImageInput(Path(r.path), r.image_id), r.image_id)

    def values(self, row: dict) -> dict:
        row = dict(row)
        for c in ("Dice RCA (Mean)", "Dice RCA (Max)"):
            row[c] = float(row[c]) if row[c] != "" else None
        row["Height"], row["Width"] = int(row["Height"]), int(row["Width"])
        return row


class PredictTask(BatchTask):
    """``prob_<finding>`` per label, the boxes as a JSON string (as ``cxrkit predict``), width, height."""

    def __init__(self, spec: TaskSpec) -> None:
        super().__init__(spec)

        self.job = PredictJob(self._load(spec.model, None, "classification", "logits"), box_policy=spec.box_policy,
                              precision=spec.precision)

    def item(self, r: ManifestRow):
        return PredictItem(Path(r.path), r.image_id)

    def values(self, doc: dict) -> dict:
        row = {"width": doc["width"], "height": doc["height"], "boxes": json.dumps(doc["boxes"])}
        row.update({f"prob_{k}": float(v) for k, v in doc["probabilities"].items()})
        return row


class AnalyzeTask(BatchTask):
    """The full ``cxrkit analyze`` JSON per image as a string, plus flat ``ctr``, ``dice_rca_mean`` and
    probabilities."""

    def __init__(self, spec: TaskSpec) -> None:
        super().__init__(spec)

        segmenter = self._load(spec.segmentation_model, DEFAULT_SEGMENTER, "segmentation", "landmarks")
        classifier = self._load(spec.model, None, "classification", "logits") if spec.model else None
        qc = self._estimator(segmenter)
        note = "" if qc is not None else "quality control not run (cxrkit batch without --qc)"
        self.job = AnalyzeJob(segmenter, classifier, qc, note, html=False, precision=spec.precision)

    def item(self, r: ManifestRow):
        return AnalyzeItem(Path(r.path), r.image_id)

    def values(self, doc: dict) -> dict:
        qc = doc.get("qc") or {}
        row = {"width": doc["width"], "height": doc["height"], "ctr": _float(doc["measurements"].get("ctr")),
               "dice_rca_mean": _float(qc.get("dice_rca_mean")), "analysis": json.dumps(doc)}
        row.update({f"prob_{k}": float(v) for k, v in doc["probabilities"].items()})
        return row


def _float(v) -> float | None:
    return None if v is None or (isinstance(v, float) and np.isnan(v)) else float(v)


_TASKS = {"segment": SegmentTask, "predict": PredictTask, "analyze": AnalyzeTask}


def build_task(spec: TaskSpec) -> BatchTask:
    """Load the models of ``spec`` (once) and return the task."""
    return _TASKS[spec.kind](spec)

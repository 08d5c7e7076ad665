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
from typing import Any

import numpy as np

from cxrkit.batch.manifest import ManifestRow
from cxrkit.errors import CxrkitError, UsageError, require

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
        batch_size: images per forward pass (``segment`` and ``predict``).
        device: ``cpu`` or ``cuda`` (``cuda:N``); preprocessing and post-processing stay on the CPU.
        threads: torch CPU threads in the process running the task (None: leave torch's default).
    """

    kind: str
    model: str | None = None
    segmentation_model: str | None = None
    qc: dict | None = None
    batch_size: int = 8
    device: str = "cpu"
    threads: int | None = None
    box_policy: str = "positive"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise UsageError(f"unknown batch task {self.kind!r}; choose one of {KINDS}")
        if self.batch_size < 1:
            raise UsageError(f"--batch-size must be >= 1, got {self.batch_size}")
        if self.kind == "predict" and not self.model:
            raise UsageError("batch predict needs --model (a classifier checkpoint or registry name)")


def _card(spec: str | None, default: str):
    from cxrkit.models import default_card, read_checkpoint
    from cxrkit.models.registry import is_checkpoint_path

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
        from cxrkit.segmentation.infer import COLUMNS

        types = {"Dice RCA (Mean)": pa.float64(), "Dice RCA (Max)": pa.float64(), "Height": pa.int64(),
                 "Width": pa.int64()}
        return pa.schema(base + [(c, types.get(c, pa.string())) for c in COLUMNS])
    cards = model_cards(spec)
    labels = cards["classifier"].labels if "classifier" in cards else ()
    cols = [("width", pa.int64()), ("height", pa.int64())] + [(f"prob_{k}", pa.float64()) for k in labels]
    if spec.kind == "predict":
        return pa.schema(base + cols + [("boxes", pa.string())])
    return pa.schema(base + cols + [("ctr", pa.float64()), ("dice_rca_mean", pa.float64()), ("analysis", pa.string())])


def _message(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if not isinstance(exc, CxrkitError) else text


class BatchTask:
    """Models loaded once; :meth:`run` turns manifest rows into result rows (dicts, schema order)."""

    def __init__(self, spec: TaskSpec) -> None:
        import torch

        if spec.threads:
            torch.set_num_threads(spec.threads)
        self.spec = spec
        self.schema = schema(spec)
        self.columns = list(self.schema.names)
        self._qc = None
        if spec.qc is not None:
            from cxrkit.qc.rca import make_estimator

            self._qc = make_estimator(**spec.qc)

    def _load(self, spec: str | None, default: str | None, task: str, needs: str):
        from cxrkit.models import load_model

        return load_model(spec, default=default, task=task, needs=needs, device=self.spec.device)

    def run(self, rows: Sequence[ManifestRow]) -> list[dict]:
        """Result rows for ``rows`` in the same order; bad images become error rows."""
        from cxrkit.io.images import read_image

        out: dict[int, dict] = {}
        for start in range(0, len(rows), self.spec.batch_size):
            good = []
            for r in rows[start : start + self.spec.batch_size]:
                try:
                    if not r.path:
                        raise CxrkitError("empty path in the manifest")
                    good.append((r, read_image(r.path)))
                except Exception as exc:  # noqa: BLE001 - a batch job must survive any one image
                    out[r.row_index] = self._error_row(r, exc)
            if not good:
                continue
            try:
                results = self._compute(good)
            except Exception:  # noqa: BLE001 - one odd image must not sink the batch: redo one by one
                results = []
                for item in good:
                    try:
                        results.append(self._compute([item])[0])
                    except Exception as exc:  # noqa: BLE001 - becomes this image's error row
                        results.append(exc)
            for (r, _), res in zip(good, results):
                out[r.row_index] = self._error_row(r, res) if isinstance(res, Exception) else self._row(r, res)
        return [out[r.row_index] for r in rows]

    def _row(self, r: ManifestRow, values: dict) -> dict:
        row = dict.fromkeys(self.columns)
        row.update(values)
        row.update(row_index=r.row_index, path=r.path, image_id=r.image_id, error=None)
        return row

    def _error_row(self, r: ManifestRow, exc: BaseException) -> dict:
        log.error("row %d (%s): %s", r.row_index, r.image_id, _message(exc))
        row = dict.fromkeys(self.columns)
        row.update(row_index=r.row_index, path=r.path, image_id=r.image_id, error=_message(exc) or type(exc).__name__)
        return row

    def _compute(self, items: list[tuple[ManifestRow, Any]]) -> list[dict]:
        raise NotImplementedError


class SegmentTask(BatchTask):
    """CheXmask-layout rows (landmarks, RLE masks, size; Dice RCA with ``qc``)."""

    def __init__(self, spec: TaskSpec) -> None:
        super().__init__(spec)
        self.model = self._load(spec.model, DEFAULT_SEGMENTER, "segmentation", "landmarks")

    def _compute(self, items):
        from cxrkit.segmentation.infer import predict_landmarks, segmentation_row

        points = predict_landmarks(self.model, [x.pixels for _, x in items])
        out = []
        for (r, x), pts in zip(items, points):
            row = segmentation_row(r.image_id, pts, x.height, x.width, x.pixels, self._qc)
            for c in ("Dice RCA (Mean)", "Dice RCA (Max)"):
                row[c] = float(row[c]) if row[c] != "" else None
            row["Height"], row["Width"] = int(row["Height"]), int(row["Width"])
            out.append(row)
        return out


class PredictTask(BatchTask):
    """``prob_<finding>`` per label, the boxes as a JSON string (as ``cxrkit predict``), width, height."""

    def __init__(self, spec: TaskSpec) -> None:
        super().__init__(spec)
        self.model = self._load(spec.model, None, "classification", "logits")

    def _compute(self, items):
        from cxrkit.classification.predict import predict_images

        preds = predict_images(self.model, [x.pixels for _, x in items], [r.image_id for r, _ in items],
                               box_policy=self.spec.box_policy, keep_heatmaps=False,
                               bf16=True)
        out = []
        for p in preds:
            doc = p.to_json()
            row = {"width": p.width, "height": p.height, "boxes": json.dumps(doc["boxes"])}
            row.update({f"prob_{k}": float(v) for k, v in doc["probabilities"].items()})
            out.append(row)
        return out


class AnalyzeTask(BatchTask):
    """The full ``cxrkit analyze`` JSON per image as a string, plus flat ``ctr``, ``dice_rca_mean`` and
    probabilities."""

    def __init__(self, spec: TaskSpec) -> None:
        super().__init__(spec)
        from cxrkit.analysis.analyze import Analyzer

        note = "" if self._qc is not None else "quality control not run (cxrkit batch without --qc)"
        classifier = self._load(spec.model, None, "classification", "logits") if spec.model else None
        self.analyzer = Analyzer(classifier, self._load(spec.segmentation_model, DEFAULT_SEGMENTER, "segmentation",
                                                        "landmarks"), self._qc, note)

    def _compute(self, items):
        out = []
        for r, x in items:
            doc, _ = self.analyzer.analyze(x.pixels, r.image_id, x.spacing, overlays=False)
            qc = doc.get("qc") or {}
            row = {"width": doc["width"], "height": doc["height"], "ctr": _float(doc["measurements"].get("ctr")),
                   "dice_rca_mean": _float(qc.get("dice_rca_mean")), "analysis": json.dumps(doc)}
            row.update({f"prob_{k}": float(v) for k, v in doc["probabilities"].items()})
            out.append(row)
        return out


def _float(v) -> float | None:
    return None if v is None or (isinstance(v, float) and np.isnan(v)) else float(v)


_TASKS = {"segment": SegmentTask, "predict": PredictTask, "analyze": AnalyzeTask}


def build_task(spec: TaskSpec) -> BatchTask:
    """Load the models of ``spec`` (once) and return the task."""
    return _TASKS[spec.kind](spec)

"""Reverse Classification Accuracy (RCA): estimate a segmentation's Dice without its ground truth.

For an image ``I`` with predicted masks ``M`` (right lung, left lung, heart) and a reference set of
images ``R_k`` with expert masks ``G_k``: register ``I`` to each ``R_k`` (transform ``T_k``, fixed
``R_k`` -> moving ``I``), carry ``M`` into ``R_k``'s space (``M o T_k``) and score
``Dice(M o T_k, G_k)`` per structure. A good segmentation of an image that registers well to some
reference scores high there; a wrong one cannot. As in CheXmask (Gaggion et al. 2023):

* per reference, the overall score is the mean of the three structures' Dice;
* ``Dice RCA (Mean)`` is the mean of that score over the references, ``Dice RCA (Max)`` its maximum;
* per structure, the same mean / max over references (``per_structure_mean`` / ``per_structure_max``).

The raw maximum underestimates good segmentations (no reference matches a new patient perfectly; the
heart's faint border limits it most), so an optional :class:`Calibration` maps it to an estimate of the
Dice itself: a per-structure linear map fitted on held-out images (``cxrkit bench rca --split val``)
for one reference set and registration method, written as ``Dice RCA (Calibrated)`` columns. Shipped
ones (``cxrkit/qc/data/calibration_*.json``, fitted on the JSRT validation split) cover the shipped
reference set and the JSRT expert set with each method; the one that fits is found by its reference ids
and registration network.

The reference set (:mod:`cxrkit.qc.reference`) defaults to the one shipped in the package, so quality
control works on a fresh install; ``--reference DIR`` or ``CXRKIT_RCA_REFERENCE`` choose another (JSRT).

Registration is either the learned network ``rca_regnet`` (one forward pass for all references; the
default) or the classical iterative optimization (:func:`cxrkit.qc.register.register_iterative`, the
reference method). Masks are compared at 256 px in CheXmask's square space (pad to a centred square).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Literal

import numpy as np
import torch

from cxrkit.errors import CxrkitError
from cxrkit.io.landmarks import ORGAN_COLUMNS
from cxrkit.models import create_model
from cxrkit.models.device import resolve_device
from cxrkit.models.warp import Transform, standardize
from cxrkit.qc.reference import (
    STRUCTURES,
    ReferenceSet,
    prepare_query,
    query_image,
    query_masks,
    resolve_reference,
)
from cxrkit.qc.register import IterativeConfig, register_iterative

log = logging.getLogger(__name__)

METHODS = ("learned", "iterative")


@dataclass(frozen=True)
class RcaEstimate:
    """RCA result for one segmentation; Dice values in [0, 1]."""

    mean: float
    max: float
    per_structure_mean: dict[str, float]
    per_structure_max: dict[str, float]
    per_reference: np.ndarray = field(repr=False)  # (K, 3) Dice per reference and structure
    calibrated: dict[str, float] | None = None  # keys: the structures and "all"

    def columns(self) -> dict[str, float | str]:
        """CheXmask's two columns plus cxrkit's per-structure and calibrated ones (see :data:`QC_COLUMNS`);
        the calibrated ones are empty strings without a calibration."""
        cal = self.calibrated or {}
        values = {"Mean": (self.mean, self.per_structure_mean), "Max": (self.max, self.per_structure_max),
                  "Calibrated": (cal.get("all", ""), cal)}
        out: dict[str, float | str] = {}
        for family, (overall, per_structure) in values.items():
            out[_column(family)] = overall
            out.update({_column(family, s): per_structure.get(s, "") for s in STRUCTURES})
        return {c: out[c] for c in QC_COLUMNS}  # in the documented column order


def _column(family: str, structure: str | None = None) -> str:
    """``Dice RCA (Mean)``, or per structure ``Dice RCA (Mean) Right Lung`` (CheXmask's organ column names)."""
    return f"Dice RCA ({family})" + ("" if structure is None else f" {ORGAN_COLUMNS[structure]}")


QC_COLUMNS: tuple[str, ...] = ("Dice RCA (Mean)", "Dice RCA (Max)",
                               *(_column(f, s) for f in ("Mean", "Max") for s in STRUCTURES),
                               "Dice RCA (Calibrated)", *(_column("Calibrated", s) for s in STRUCTURES))


@dataclass(frozen=True)
class Calibration:
    """``dice ~= clip(a * rca_max + b, 0, 1)`` per structure (and ``all`` for the overall max).

    ``reference_ids`` and ``registration_sha256`` say what it was fitted for (the shipped weights'
    sha256 for the learned method, None for the iterative one); :meth:`RcaEstimator` refuses a
    calibration fitted for another reference set or network.
    """
    method: str
    coefficients: dict[str, tuple[float, float]]
    reference_ids: tuple[str, ...]
    registration_sha256: str | None = None
    fitted_on: str = ""

    def fits(self, method: str, reference_ids: Sequence[str], registration_sha256: str | None) -> bool:
        """Whether it was fitted for this method, reference set and registration network."""
        return (self.method, self.reference_ids, self.registration_sha256) == \
            (method, tuple(reference_ids), registration_sha256)

    def apply(self, per_structure_max: dict[str, float], overall_max: float) -> dict[str, float]:
        vals = {**per_structure_max, "all": overall_max}
        return {k: float(np.clip(a * vals[k] + b, 0.0, 1.0)) for k, (a, b) in self.coefficients.items()}

    def to_json(self) -> str:
        return json.dumps({"method": self.method, "coefficients": {k: list(v) for k, v in self.coefficients.items()},
                           "reference_ids": list(self.reference_ids), "registration_sha256": self.registration_sha256,
                           "fitted_on": self.fitted_on}, indent=2)

    @classmethod
    def from_json(cls, text: str, source: str = "<json>") -> Calibration:
        try:
            d = json.loads(text)
            return cls(method=d["method"], coefficients={k: (float(v[0]), float(v[1])) for k, v in d["coefficients"].items()},
                       reference_ids=tuple(d["reference_ids"]), registration_sha256=d.get("registration_sha256"),
                       fitted_on=d.get("fitted_on", ""))
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            raise CxrkitError(f"{source}: not an RCA calibration ({exc})") from None

    @classmethod
    def load(cls, path: str | os.PathLike) -> Calibration:
        try:
            text = open(path, encoding="utf-8").read()
        except OSError as exc:
            raise CxrkitError(f"{path}: cannot read the RCA calibration ({exc.strerror})") from None
        return cls.from_json(text, str(path))


def fit_calibration(true: Mapping[str, np.ndarray], rca_max: Mapping[str, np.ndarray], method: str,
                    reference_ids: Sequence[str], registration_sha256: str | None, fitted_on: str) -> Calibration:
    """Least-squares line of true Dice on the RCA max, per key (structures and ``all``)."""
    coef = {}
    for k in true:
        a, b = np.polyfit(np.asarray(rca_max[k], float), np.asarray(true[k], float), 1)
        coef[k] = (float(a), float(b))
    return Calibration(method, coef, tuple(reference_ids), registration_sha256, fitted_on)


def shipped_calibrations() -> list[Calibration]:
    """Every calibration shipped in the package (``cxrkit/qc/data/calibration_*.json``), by file name."""
    folder = resources.files("cxrkit.qc").joinpath("data")
    files = sorted((f for f in folder.iterdir() if f.name.startswith("calibration_") and f.name.endswith(".json")),
                   key=lambda f: f.name)
    return [Calibration.from_json(f.read_text(), str(f)) for f in files]


def shipped_calibration(method: str, reference_ids: Sequence[str] | None = None,
                        registration_sha256: str | None = None) -> Calibration | None:
    """The shipped calibration fitted for this method, reference set and network; None if there is none
    (without ``reference_ids``: the first one shipped for ``method``)."""
    for cal in shipped_calibrations():
        if cal.method == method and (reference_ids is None or cal.fits(method, reference_ids, registration_sha256)):
            return cal
    return None


def dice_batch(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Dice of bool masks (..., H, W) -> (...); 1.0 where both are empty."""
    a, b = a.flatten(-2).float(), b.flatten(-2).float()
    inter = (a * b).sum(-1)
    tot = a.sum(-1) + b.sum(-1)
    return torch.where(tot > 0, 2 * inter / tot.clamp_min(1), torch.ones_like(tot))


def summarize(per_reference: torch.Tensor | np.ndarray, calibration: Calibration | None = None) -> RcaEstimate:
    """Mean / max over references of a (K, 3) Dice table (and the calibrated estimate when given)."""
    d = np.asarray(per_reference, dtype=np.float64)
    overall = d.mean(axis=1)
    ps_max = {s: float(d[:, k].max()) for k, s in enumerate(STRUCTURES)}
    return RcaEstimate(mean=float(overall.mean()), max=float(overall.max()),
                       per_structure_mean={s: float(d[:, k].mean()) for k, s in enumerate(STRUCTURES)},
                       per_structure_max=ps_max, per_reference=d,
                       calibrated=None if calibration is None else calibration.apply(ps_max, float(overall.max())))


class RcaEstimator:
    """Estimate segmentation quality against a reference set.

    Args:
        reference: the :class:`ReferenceSet` (see :mod:`cxrkit.qc.reference`).
        method: ``"learned"`` (``rca_regnet``; ``model`` or the shipped weights) or ``"iterative"``.
        model: a ``rca_regnet`` module (e.g. from ``create_model("rca_regnet", checkpoint=...)``).
        iterative: settings of the classical method.
        calibration: a :class:`Calibration`, ``"shipped"`` (the packaged one when it was fitted for this
            reference set and network, else none) or None.
    """
    def __init__(self, reference: ReferenceSet, method: Literal["learned", "iterative"] = "learned",
                 model: torch.nn.Module | None = None, iterative: IterativeConfig = IterativeConfig(),
                 calibration: Calibration | Literal["shipped"] | None = "shipped") -> None:
        if method not in METHODS:
            raise CxrkitError(f"RCA method {method!r} is not one of {METHODS}")
        self.reference = reference
        self.method = method
        self.iterative = iterative
        self._fixed = standardize(reference.images)
        self.model = None
        if method == "learned":
            if model is None:

                model = create_model("rca_regnet", pretrained=True)
            size = model.card.input_size
            if reference.images.shape[-1] != size:
                raise CxrkitError(f"reference images are {reference.images.shape[-1]} px; rca_regnet takes {size}")
            self.model = model.eval()
        sha = None if self.model is None else self.model.card.weights_sha256
        if calibration == "shipped":
            calibration = shipped_calibration(method, reference.ids, sha)
            if calibration is None:
                log.info("no shipped RCA calibration fits this reference set / network: not used")
        elif calibration is not None:
            if not calibration.fits(method, reference.ids, sha):
                raise CxrkitError(f"RCA calibration ({calibration.method}, {len(calibration.reference_ids)} references, "
                                  f"network {str(calibration.registration_sha256)[:12]}) was fitted for another "
                                  f"method, reference set or registration network than this one ({method}, "
                                  f"{len(reference)} references, network {str(sha)[:12]})")
        self.calibration = calibration

    def register(self, image01: torch.Tensor) -> Transform:
        """Transforms (K references) for one query (1, 1, S, S) float [0, 1] in the square space."""
        moving = standardize(image01.to(self.device))
        if self.method == "iterative":
            return register_iterative(moving, self._fixed, self.iterative)
        return self.model.infer(moving, self._fixed)

    def score(self, transform: Transform, masks: torch.Tensor) -> np.ndarray:
        """(K, 3) Dice of query masks (1, 3, M, M) carried into each reference vs its expert masks."""
        with torch.inference_mode():
            warped = transform.warp(masks.to(self.device).float(), mode="bilinear") > 0.5
            return dice_batch(warped, self.reference.masks).cpu().numpy()

    def estimate(self, image: np.ndarray, masks: Mapping[str, np.ndarray]) -> RcaEstimate:
        """RCA of one image (H, W) and its masks (bool, (H, W), keys right_lung / left_lung / heart)."""
        x, m = prepare_query(image, dict(masks), self.reference.images.shape[-1], self.reference.masks.shape[-1])
        return summarize(self.score(self.register(x), m), self.calibration)

    def estimate_many(self, image: np.ndarray, candidates: Sequence[Mapping[str, np.ndarray]]) -> list[RcaEstimate]:
        """Several segmentations of the same image: one registration, one estimate each."""
        if not candidates:
            return []
        masks = [query_masks(dict(c), image.shape, self.reference.masks.shape[-1]) for c in candidates]
        t = self.register(query_image(image, self.reference.images.shape[-1]))
        return [summarize(self.score(t, m), self.calibration) for m in masks]

    def summarize(self, table: np.ndarray) -> RcaEstimate:
        """The estimate of one (K, 3) Dice table (:func:`summarize` with this estimator's calibration)."""
        return summarize(table, self.calibration)

    @property
    def image_size(self) -> int:
        """Side of the query and reference images in RCA's square space (px)."""
        return int(self.reference.images.shape[-1])

    @property
    def mask_size(self) -> int:
        """Side of the query and reference masks in RCA's square space (px)."""
        return int(self.reference.masks.shape[-1])

    @property
    def device(self) -> torch.device:
        return self._fixed.device

    def to(self, device: str | torch.device) -> RcaEstimator:
        """Move the registration network and the reference set to ``device`` (``auto``, ``cpu``, ``cuda[:N]``)."""
        dev = resolve_device(device)
        self._fixed = self._fixed.to(dev)
        self.reference = ReferenceSet(self.reference.ids, self.reference.images.to(dev), self.reference.masks.to(dev),
                                      self.reference.source)
        if self.model is not None:
            self.model = self.model.to(dev)
        return self

    def score_batch(self, images: np.ndarray, masks: np.ndarray, max_pairs: int | None = None) -> list[np.ndarray]:
        """(K, 3) Dice tables of B queries at once, on the estimator's device: all references x all queries in
        one registration forward (chunked to ``max_pairs`` pairs), the query masks warped into each reference's
        space and compared there.

        Args:
            images: (B, S, S) uint8 queries in RCA's square space (``S`` = :attr:`image_size`).
            masks: (B, 3, M, M) bool masks (right lung, left lung, heart) in that space (``M`` = :attr:`mask_size`).
            max_pairs: (reference, query) pairs per forward; default: 256 on an accelerator, on the CPU one
                query's K pairs (measured faster there: 20 references, 2 threads, 112 ms/image at 20 pairs vs 204
                at 256, as larger batches fall out of the caches; and each query's table then never depends
                on the batch it came in).
        """
        b, k = len(images), len(self.reference)
        if b == 0:
            return []
        dev = self.device
        if max_pairs is None:
            max_pairs = k if dev.type == "cpu" else 256
        x = standardize(torch.from_numpy(np.ascontiguousarray(images)).to(dev).float().div_(255)[:, None])
        m = torch.from_numpy(np.ascontiguousarray(masks)).to(dev)
        if self.method == "iterative":
            return [self.score(register_iterative(x[i:i + 1], self._fixed, self.iterative), m[i:i + 1])
                    for i in range(b)]
        out = []
        step = max(1, max_pairs // k)
        with torch.inference_mode():
            for start in range(0, b, step):
                xs, ms = x[start:start + step], m[start:start + step]
                n = len(xs)
                t = self.model.infer(xs.repeat_interleave(k, 0), self._fixed.repeat(n, 1, 1, 1))
                warped = t.warp(ms.float().repeat_interleave(k, 0), mode="bilinear") > 0.5
                dice = dice_batch(warped, self.reference.masks.repeat(n, 1, 1, 1)).view(n, k, -1)
                out.extend(dice.float().cpu().numpy())
        return out


def make_estimator(reference: ReferenceSet | str | os.PathLike | None = None,
                   method: Literal["learned", "iterative"] = "learned",
                   registration: str | os.PathLike | None = None,
                   calibration: Calibration | Literal["shipped"] | str | os.PathLike | None = "shipped",
                   device: str | torch.device = "cpu") -> RcaEstimator:
    """An :class:`RcaEstimator` from a reference set, ``"shipped"``, a folder or a reference file
    (default: ``$CXRKIT_RCA_REFERENCE``, else the set shipped in the package; see
    :func:`cxrkit.qc.reference.resolve_reference`) and, for the learned method, an optional
    ``rca_regnet`` checkpoint (default: the shipped weights). ``calibration``: a :class:`Calibration`,
    the path of one (JSON), ``"shipped"`` (the packaged one that fits, if any) or None."""
    reference = resolve_reference(reference)
    if calibration is not None and not isinstance(calibration, Calibration) and str(calibration) != "shipped":
        calibration = Calibration.load(calibration)
    model = None
    if method == "learned" and registration:

        model = create_model("rca_regnet", checkpoint=registration)
    return RcaEstimator(reference, method, model=model, calibration=calibration).to(device)


def optional_estimator(**kwargs) -> tuple[RcaEstimator | None, str]:
    """:func:`make_estimator`, or ``(None, why)`` when the reference set asked for cannot be used (e.g. a
    missing ``$CXRKIT_RCA_REFERENCE`` folder); for the callers where quality control is a bonus:
    ``cxrkit analyze``, the service, the demo. With no reference asked for, the shipped set is used."""
    try:
        return make_estimator(**kwargs), ""
    except CxrkitError as exc:
        return None, f"quality control not run: {exc}"


def estimate_rca(image: np.ndarray, masks: Mapping[str, np.ndarray], reference: ReferenceSet | str | None = None,
                 method: Literal["learned", "iterative"] = "learned") -> RcaEstimate:
    """One-call API: RCA of ``image``'s three ``masks`` against ``reference`` (default: the shipped set, or
    ``$CXRKIT_RCA_REFERENCE``)."""
    return make_estimator(reference, method).estimate(image, masks)

"""Model cards: the frozen description every cxrkit model carries.

A card says what a model predicts (``labels``), what it expects (``input_size`` square pixels,
``in_channels``, intensity normalization) and how its weights are identified (``weights_sha256``, the
digest of the state dict computed by :func:`cxrkit.models.checkpoint.state_dict_sha256`). Cards are
stored inside checkpoints and compared on load, so a checkpoint for other labels or another input size
is rejected with a clear error instead of giving silently wrong outputs.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Mapping

from cxrkit.errors import CxrkitError

TASKS = ("classification", "segmentation", "registration")


@dataclass(frozen=True)
class Normalization:
    """Intensity normalization applied after scaling uint8 pixels to [0, 1].

    ``per_image=False``: ``(x - mean) / std`` with the fixed ``mean`` and ``std``.
    ``per_image=True``: ``(x - mean(x)) / std(x)`` with the image's own mean and standard deviation (over
    the radiograph's pixels, not the square padding; the fixed fields are then unused), so a global
    brightness/contrast change of the radiograph does not change the model input.
    """

    mean: float = 0.5
    std: float = 0.25
    per_image: bool = False

    def describe(self) -> str:
        if self.per_image:
            return "x/255 -> (x - mean(x)) / std(x) per image"
        return f"x/255 -> (x - {self.mean}) / {self.std}"


@dataclass(frozen=True)
class ModelCard:
    """Frozen description of a model.

    Attributes:
        name: registry name (``create_model(name)``).
        task: one of ``classification``, ``segmentation``, ``registration``.
        labels: output names in order (the NIH 14 findings for classifiers; landmark organs for
            segmentation).
        input_size: side of the square input in pixels. Images are padded to a centred square and
            resized (area interpolation) to this size; see :class:`cxrkit.io.geometry.SquareResize`.
        in_channels: image channels the network takes (1 = grayscale).
        normalization: intensity normalization after ``uint8 / 255``.
        thresholds: per-label operating thresholds on the output probability (same order as labels).
        architecture: keyword arguments the network was built with (kept so a checkpoint rebuilds it).
        weights_sha256: digest of the weights (state dict), ``None`` for untrained models.
        description: one line for humans.
    """

    name: str
    task: str
    labels: tuple[str, ...]
    input_size: int
    in_channels: int = 1
    normalization: Normalization = field(default_factory=Normalization)
    thresholds: tuple[float, ...] | None = None
    architecture: tuple[tuple[str, Any], ...] = ()
    weights_sha256: str | None = None
    description: str = ""

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise CxrkitError(f"model card {self.name!r}: task {self.task!r} is not one of {TASKS}")
        if self.input_size <= 0:
            raise CxrkitError(f"model card {self.name!r}: input_size must be positive, got {self.input_size}")
        if self.thresholds is not None and len(self.thresholds) != len(self.labels):
            raise CxrkitError(
                f"model card {self.name!r}: {len(self.thresholds)} thresholds for {len(self.labels)} labels"
            )

    @property
    def arch_kwargs(self) -> dict[str, Any]:
        return dict(self.architecture)

    def replace(self, **changes: Any) -> "ModelCard":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["labels"] = list(self.labels)
        d["thresholds"] = None if self.thresholds is None else list(self.thresholds)
        d["architecture"] = {k: v for k, v in self.architecture}
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ModelCard":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise CxrkitError(f"model card has unknown fields {sorted(unknown)}; known: {sorted(known)}")
        kw = dict(d)
        kw["labels"] = tuple(kw["labels"])
        if kw.get("thresholds") is not None:
            kw["thresholds"] = tuple(float(t) for t in kw["thresholds"])
        norm = kw.get("normalization")
        if isinstance(norm, Mapping):
            kw["normalization"] = Normalization(**norm)
        arch = kw.get("architecture") or {}
        if isinstance(arch, Mapping):
            kw["architecture"] = tuple(sorted((str(k), _freeze(v)) for k, v in arch.items()))
        else:
            kw["architecture"] = tuple((str(k), _freeze(v)) for k, v in arch)
        return cls(**kw)


def _freeze(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value


def arch(**kwargs: Any) -> tuple[tuple[str, Any], ...]:
    """Architecture kwargs as the sorted tuple a frozen card stores."""
    return tuple(sorted((k, _freeze(v)) for k, v in kwargs.items()))

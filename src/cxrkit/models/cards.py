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

from cxrkit.errors import ModelError

TASKS = ("classification", "segmentation", "registration")

# What a model's forward pass gives (its capabilities); callers ask the card instead of checking classes.
OUTPUTS = ("logits", "cams", "landmarks", "masks", "transform")
PRECISIONS = ("fp32", "bf16")
# Heatmap -> box methods a card's ``box_rules`` may name (cxrkit.classification.boxes.METHODS; kept here so that
# cards do not import the box code, a test checks they agree).
BOX_RULE_METHODS = ("paper", "adaptive", "threshold")


@dataclass(frozen=True)
class Normalization:
    """Intensity normalization applied after scaling uint8 pixels to [0, 1].

    ``per_image=False``: ``(x - mean) / std`` with the fixed ``mean`` and ``std``. Each is one float (every
    channel) or a tuple with one float per input channel (e.g. ImageNet's ``(0.485, 0.456, 0.406)`` /
    ``(0.229, 0.224, 0.225)`` for a network that takes the gray image replicated to 3 channels); a tuple's
    length must equal the card's ``in_channels``.
    ``per_image=True``: ``(x - mean(x)) / std(x)`` with the image's own mean and standard deviation (over
    the radiograph's pixels, not the square padding; the fixed fields are then unused), so a global
    brightness/contrast change of the radiograph does not change the model input.
    """

    mean: float | tuple[float, ...] = 0.5
    std: float | tuple[float, ...] = 0.25
    per_image: bool = False

    def __post_init__(self) -> None:
        # JSON and old checkpoints give lists / ints: store floats or tuples of floats (frozen, comparable).
        for name in ("mean", "std"):
            value = getattr(self, name)
            if isinstance(value, (list, tuple)):
                if not value:
                    raise ModelError(f"normalization {name} is an empty sequence; expected a float or one per channel")
                value = tuple(float(v) for v in value)
            else:
                value = float(value)
            object.__setattr__(self, name, value)
        m, s = self.mean, self.std
        if isinstance(m, tuple) and isinstance(s, tuple) and len(m) != len(s):
            raise ModelError(f"normalization has {len(m)} channel means but {len(s)} channel stds")
        if not self.per_image and min(s if isinstance(s, tuple) else (s,)) <= 0:
            raise ModelError(f"normalization std must be positive, got {s}")

    @property
    def channels(self) -> int | None:
        """Number of channels the fixed statistics are given for, or None when they are single floats."""
        for value in (self.mean, self.std):
            if isinstance(value, tuple):
                return len(value)
        return None

    def describe(self) -> str:
        if self.per_image:
            return "x/255 -> (x - mean(x)) / std(x) per image"
        if self.channels is not None:
            return f"x/255 -> (x - {self.mean}) / {self.std} per channel"
        return f"x/255 -> (x - {self.mean}) / {self.std}"


@dataclass(frozen=True)
class Provenance:
    """Where a model's weights come from and what they are good for (shown by ``cxrkit models show``, in
    ``analyze`` JSON/HTML, the viewer and ``GET /v1/models``).

    Attributes:
        training_data: what the weights were trained on, in words (``""``: untrained).
        synthetic: True when the training labels were synthetic (e.g. lesions inserted into images), so the
            outputs are not findings on real images; such a model is never a default on real images.
        metrics: measured figures as ``(name, value)`` pairs (e.g. ``("jsrt_test_dice_heart", 0.936)``); pages
            and docs read them from here.
        metrics_command: the command that measured ``metrics``.
        license: license of the weights.
        intended_use: what the model is for, and what not.
        source: how the weights were made (training command) or where they were imported from.
    """

    training_data: str = ""
    synthetic: bool = False
    metrics: tuple[tuple[str, float], ...] = ()
    metrics_command: str = ""
    license: str = ""
    intended_use: str = ""
    source: str = ""

    @property
    def metrics_dict(self) -> dict[str, float]:
        return dict(self.metrics)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["metrics"] = {k: v for k, v in self.metrics}
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Provenance":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ModelError(f"model card provenance has unknown fields {sorted(unknown)}; known: {sorted(known)}")
        kw = dict(d)
        m = kw.get("metrics") or {}
        kw["metrics"] = tuple((str(k), float(v)) for k, v in (m.items() if isinstance(m, Mapping) else m))
        return cls(**kw)


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
        outputs: what ``forward`` gives (see :data:`OUTPUTS`): ``logits`` and ``cams`` for classifiers,
            ``landmarks`` (then masks are filled contours) or ``masks`` (pixel logits) for segmentation,
            ``transform`` for registration.
        provenance: training data, metrics, license and intended use (:class:`Provenance`).
        inference_precision: what ``--precision auto`` runs: ``bf16`` only when the bench measured this family's
            bf16 outputs within 0.001 of fp32 (Dice on JSRT test, AUROC on the lesion benchmark's test), else
            ``fp32``.
        box_rules: classifiers only: per label, the heatmap -> box rule the model's boxes are drawn with by
            default, as ``((label, method, ((option, value), ...)), ...)`` (``method`` one of
            :data:`BOX_RULE_METHODS`, options those of :func:`cxrkit.classification.boxes.heatmap_to_boxes`), e.g.
            ``("Mass", "threshold", (("component", "union"), ("threshold", 0.5)))``. A rule applies to the label's
            raw class map (CAM not clipped at 0) at the original image's resolution, the map the lesion benchmark
            chooses its rules on. Labels without a rule, and cards without rules (``()``), use the ``paper``
            method on the clipped map. In JSON: ``{label: {"method": ..., option: value}}``.
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
    outputs: tuple[str, ...] = ()
    provenance: Provenance = field(default_factory=Provenance)
    inference_precision: str = "fp32"
    box_rules: tuple[tuple[str, str, tuple[tuple[str, Any], ...]], ...] = ()

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ModelError(f"model card {self.name!r}: task {self.task!r} is not one of {TASKS}")
        if self.input_size <= 0:
            raise ModelError(f"model card {self.name!r}: input_size must be positive, got {self.input_size}")
        if self.thresholds is not None and len(self.thresholds) != len(self.labels):
            raise ModelError(
                f"model card {self.name!r}: {len(self.thresholds)} thresholds for {len(self.labels)} labels"
            )
        if self.inference_precision not in PRECISIONS:
            raise ModelError(f"model card {self.name!r}: inference_precision {self.inference_precision!r} is not one "
                              f"of {PRECISIONS}")
        bad = [o for o in self.outputs if o not in OUTPUTS]
        if bad:
            raise ModelError(f"model card {self.name!r}: output {bad[0]!r} is not one of {OUTPUTS}")
        rules = _parse_box_rules(self.box_rules, self.name)
        seen = [label for label, _, _ in rules]
        for label in seen:
            if label not in self.labels:
                raise ModelError(f"model card {self.name!r}: box rule for {label!r}, which is not one of its labels "
                                 f"{list(self.labels)}")
            if seen.count(label) > 1:
                raise ModelError(f"model card {self.name!r}: two box rules for {label!r}")
        object.__setattr__(self, "box_rules", rules)

    def box_rule(self, label: str) -> tuple[str, dict[str, Any]] | None:
        """``(method, options)`` of ``label``'s box rule (see ``box_rules``), or None when it has none."""
        for name, method, options in self.box_rules:
            if name == label:
                return method, dict(options)
        return None

    def gives(self, output: str) -> bool:
        """Whether the model's forward pass gives ``output`` (one of :data:`OUTPUTS`)."""
        return output in self.outputs

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
        d["outputs"] = list(self.outputs)
        d["provenance"] = self.provenance.to_dict()
        d["box_rules"] = {label: {"method": method, **dict(options)} for label, method, options in self.box_rules}
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ModelCard":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ModelError(f"model card has unknown fields {sorted(unknown)}; known: {sorted(known)}")
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
        kw["outputs"] = tuple(kw.get("outputs") or ())
        prov = kw.get("provenance")
        if isinstance(prov, Mapping):
            kw["provenance"] = Provenance.from_dict(prov)
        elif prov is None:
            kw.pop("provenance", None)
        return cls(**kw)


def _parse_box_rules(rules: Any, name: str) -> tuple[tuple[str, str, tuple[tuple[str, Any], ...]], ...]:
    """``box_rules`` as the frozen form (from itself, or from JSON's ``{label: {"method": ..., option: value}}``)."""
    if isinstance(rules, Mapping):
        items = []
        for label, spec in rules.items():
            if not isinstance(spec, Mapping) or "method" not in spec:
                raise ModelError(f"model card {name!r}: box rule for {label!r} is {spec!r}; expected "
                                 "{'method': ..., option: value}")
            items.append((label, spec["method"], {k: v for k, v in spec.items() if k != "method"}))
    else:
        items = []
        for rule in rules or ():
            if not isinstance(rule, (list, tuple)) or len(rule) != 3:
                raise ModelError(f"model card {name!r}: box rule {rule!r} is not (label, method, options)")
            items.append(rule)
    out = []
    for label, method, options in items:
        if method not in BOX_RULE_METHODS:
            raise ModelError(f"model card {name!r}: box rule for {label!r} names method {method!r}; expected one of "
                             f"{BOX_RULE_METHODS}")
        opts = options.items() if isinstance(options, Mapping) else options
        out.append((str(label), str(method), tuple(sorted((str(k), _freeze(v)) for k, v in opts))))
    return tuple(out)


def _freeze(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value


def arch(**kwargs: Any) -> tuple[tuple[str, Any], ...]:
    """Architecture kwargs as the sorted tuple a frozen card stores."""
    return tuple(sorted((k, _freeze(v)) for k, v in kwargs.items()))

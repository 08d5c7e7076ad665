"""Per-finding selection among classifiers: finding ``k``'s logit and class activation map come from one member.

Used when the best network for one finding is not the best for another, e.g. a smoother LSE pooling
localizes effusions while a sharper one keeps small nodules (see ``cxrkit bench lesions-compose``). Members
share the card's labels, input size and normalization, so one preprocessing serves all; each member's
network is rebuilt from ``member`` (a registered classifier) and its own architecture overrides.

Card ``architecture`` keys: ``member`` (registry name), ``member_architectures`` (one tuple of
``(key, value)`` overrides per member), ``select`` (member index per label).
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from cxrkit.findings import FINDINGS
from cxrkit.models.cards import ModelCard, Normalization, arch
from cxrkit.models.module import CxrModule
from cxrkit.models.registry import build, default_card, register_model


class FindingEnsemble(CxrModule):
    """``forward`` -> logits (N, K); ``forward_with_cams`` -> (logits, maps (N, K, h, w)), each finding from its
    member. Members must give maps of the same size (same family and stride)."""

    def __init__(self, card: ModelCard, members: Sequence[nn.Module], select: Sequence[int]):
        super().__init__()
        self.card = card
        self.members = nn.ModuleList(members)
        self.select = tuple(int(s) for s in select)
        if len(self.select) != len(card.labels):
            raise ValueError(f"select has {len(self.select)} entries for {len(card.labels)} labels {list(card.labels)}")
        bad = [s for s in self.select if not 0 <= s < len(self.members)]
        if bad:
            raise ValueError(f"select refers to member {bad[0]}, but there are {len(self.members)} members")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = {i: self.members[i](x) for i in sorted(set(self.select))}
        return torch.stack([outs[s][:, k] for k, s in enumerate(self.select)], dim=1)

    def forward_with_cams(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        outs = {i: self.members[i].forward_with_cams(x) for i in sorted(set(self.select))}
        logits = torch.stack([outs[s][0][:, k] for k, s in enumerate(self.select)], dim=1)
        maps = torch.stack([outs[s][1][:, k] for k, s in enumerate(self.select)], dim=1)
        return logits, maps


def member_card(card: ModelCard, index: int) -> ModelCard:
    """The card of member ``index`` of an ensemble ``card`` (labels, input size, normalization shared)."""
    a = card.arch_kwargs
    base = default_card(a["member"])
    overrides = dict(a["member_architectures"][index])
    return base.replace(labels=card.labels, input_size=card.input_size, normalization=card.normalization,
                        architecture=arch(**{**base.arch_kwargs, **overrides}), weights_sha256=None)


def ensemble_card(members: Sequence[CxrModule], select: Sequence[int], description: str = "") -> ModelCard:
    """The card of an ensemble of trained ``members`` (same registry family, labels, input size and
    normalization); ``select[k]`` is the member whose output finding ``k`` uses."""
    first = members[0].card
    family = first.name
    for m in members[1:]:
        c = m.card
        if (c.name, c.labels, c.input_size, c.normalization) != (family, first.labels, first.input_size,
                                                                  first.normalization):
            raise ValueError(f"ensemble members differ: {c.name}/{c.labels}/{c.input_size} vs "
                             f"{family}/{first.labels}/{first.input_size}")
    base = default_card("finding_ensemble")
    return base.replace(
        labels=first.labels, input_size=first.input_size, normalization=first.normalization,
        thresholds=first.thresholds, description=description or base.description, provenance=first.provenance,
        architecture=arch(member=family, member_architectures=[m.card.architecture for m in members],
                          select=list(select)))


def make_ensemble(members: Sequence[CxrModule], select: Sequence[int], **card_kwargs: Any) -> FindingEnsemble:
    """Wrap trained ``members`` (weights kept) into a :class:`FindingEnsemble`; unused members are dropped."""
    used = sorted(set(int(s) for s in select))
    remap = {old: new for new, old in enumerate(used)}
    kept = [members[i] for i in used]
    card = ensemble_card(kept, [remap[int(s)] for s in select], **card_kwargs)
    return FindingEnsemble(card, kept, card.arch_kwargs["select"])


@register_model(ModelCard(
    name="finding_ensemble", task="classification", labels=FINDINGS, input_size=256, in_channels=1,
    normalization=Normalization(mean=0.5, std=0.25), thresholds=None,
    architecture=arch(member="resnet_lite", member_architectures=[()], select=[0] * len(FINDINGS)),
    description="Per-finding selection among classifiers of one family (each finding from one member)",
    outputs=("logits", "cams")))
def finding_ensemble(card: ModelCard) -> FindingEnsemble:
    members = [build(member_card(card, i)) for i in range(len(card.arch_kwargs["member_architectures"]))]
    return FindingEnsemble(card, members, card.arch_kwargs["select"])

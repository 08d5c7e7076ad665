"""Multi-label losses. Labels are 1/0/NaN; NaN (unknown) entries are masked out."""

from __future__ import annotations

import torch
import torch.nn.functional as F

LOSSES = ("weighted_bce", "bce")


def masked_bce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Plain binary cross-entropy averaged over known (non-NaN) labels."""
    known = ~torch.isnan(targets)
    t = torch.nan_to_num(targets, nan=0.0)
    loss = F.binary_cross_entropy_with_logits(logits.float(), t, reduction="none")
    return (loss * known).sum() / known.sum().clamp(min=1)


def weighted_bce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The ChestX-ray8 paper's positive/negative-balanced cross-entropy (Wang et al. 2017, eq. 1).

    ``L = beta_P * sum_{y=1} -ln f(x) + beta_N * sum_{y=0} -ln(1 - f(x))`` with
    ``beta_P = (|P| + |N|) / |P|`` and ``beta_N = (|P| + |N|) / |N|``, |P| and |N| counted over the
    known labels of the batch (all classes together, as in the paper). Normalized by the count of known
    labels so the scale matches :func:`masked_bce`; a batch without positives (or negatives) falls back to
    weight 1 for the other side.
    """
    known = ~torch.isnan(targets)
    t = torch.nan_to_num(targets, nan=0.0)
    pos = (t > 0.5) & known
    neg = (t <= 0.5) & known
    n_pos, n_neg = pos.sum(), neg.sum()
    total = (n_pos + n_neg).clamp(min=1).float()
    beta_p = total / n_pos.clamp(min=1) if n_pos > 0 else total.new_tensor(1.0)
    beta_n = total / n_neg.clamp(min=1) if n_neg > 0 else total.new_tensor(1.0)
    loss = F.binary_cross_entropy_with_logits(logits.float(), t, reduction="none")
    weighted = loss * (pos * beta_p + neg * beta_n) * 0.5
    return weighted.sum() / total


def get_loss(name: str):
    if name == "weighted_bce":
        return weighted_bce
    if name == "bce":
        return masked_bce
    raise ValueError(f"unknown loss {name!r}; choose one of {LOSSES}")

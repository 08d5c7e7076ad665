"""Checkpoints: weights + card (+ optional training state), verified on load.

Format (a ``torch.save`` dict, written atomically)::

    {"format": "cxrkit-checkpoint/1", "card": card.to_dict(), "state_dict": {...},
     "training": {...} | absent}

``card["weights_sha256"]`` is :func:`state_dict_sha256` of ``state_dict``: a digest over the sorted
parameter names, dtypes, shapes and raw bytes, so it identifies the weights independently of how the file
was serialized. Loading recomputes it and refuses a mismatch (a corrupted or edited file).
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
from pathlib import Path
from typing import Any, Mapping

import torch

from cxrkit.errors import ModelError, UsageError
from cxrkit.io.atomic import write_bytes
from cxrkit.models.cards import ModelCard

log = logging.getLogger(__name__)

FORMAT = "cxrkit-checkpoint/1"


def state_dict_sha256(state_dict: Mapping[str, torch.Tensor]) -> str:
    """sha256 over ``state_dict``'s names, dtypes, shapes and bytes (CPU, contiguous), in sorted order."""
    h = hashlib.sha256()
    for key in sorted(state_dict):
        t = state_dict[key]
        if not isinstance(t, torch.Tensor):
            continue
        t = t.detach().to("cpu").contiguous()
        h.update(key.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    # DistributedDataParallel / torch.compile wrappers keep the real module inside.
    while hasattr(model, "module") and isinstance(model.module, torch.nn.Module):
        model = model.module
    return getattr(model, "_orig_mod", model)


def save_checkpoint(
    path: str | os.PathLike,
    model: torch.nn.Module,
    training: Mapping[str, Any] | None = None,
) -> ModelCard:
    """Write ``model`` (which must carry ``.card``) to ``path`` atomically; returns the stored card.

    ``training`` is optional resumable state (optimizer, scheduler, epoch, RNG states, metrics).
    """
    model = _unwrap(model)
    card: ModelCard = getattr(model, "card", None)
    if card is None:
        raise ModelError("model has no .card; build it with cxrkit.models.create_model")
    state = {k: v.detach().to("cpu").clone() for k, v in model.state_dict().items()}
    card = card.replace(weights_sha256=state_dict_sha256(state))
    payload: dict[str, Any] = {"format": FORMAT, "card": card.to_dict(), "state_dict": state}
    if training is not None:
        payload["training"] = dict(training)
    buf = io.BytesIO()
    torch.save(payload, buf)
    write_bytes(path, buf.getvalue())
    model.card = card
    return card


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load and verify a checkpoint file; returns the payload with ``card`` as a :class:`ModelCard`."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: checkpoint not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelError(f"{path}: not a readable cxrkit checkpoint ({type(exc).__name__}: {exc})") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        got = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise ModelError(f"{path}: not a cxrkit checkpoint (format {got!r}, expected {FORMAT!r})")
    card = ModelCard.from_dict(payload["card"])
    digest = state_dict_sha256(payload["state_dict"])
    if card.weights_sha256 != digest:
        raise ModelError(
            f"{path}: weights sha256 {digest[:16]}... does not match the card's "
            f"{str(card.weights_sha256)[:16]}... (file corrupted or edited)"
        )
    payload["card"] = card
    return payload


def resume_state(last: str | os.PathLike, config: Mapping[str, Any], model: torch.nn.Module,
                 optimizer: torch.optim.Optimizer) -> dict[str, Any] | None:
    """Resume a training run from its ``last.pt`` (written with ``training={"config", "optimizer",
    "state"}``): load the weights and optimizer, return the saved state; None when there is no file.
    A run trained with another configuration is refused (an error naming the file)."""
    last = Path(last)
    if not last.is_file():
        return None
    payload = read_checkpoint(last)
    if payload["training"]["config"] != dict(config):
        raise UsageError(f"{last}: was trained with another configuration; use a new --out")
    model.load_state_dict(payload["state_dict"])
    optimizer.load_state_dict(payload["training"]["optimizer"])
    log.info("resuming from %s at step %s", last, payload["training"]["state"].get("step"))
    return payload["training"]["state"]

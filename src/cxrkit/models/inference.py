"""Inference copies of networks: the same function, cheaper to evaluate.

:func:`inference_copy` returns a copy of an eval-mode network in which every ``Conv2d`` directly followed by a
``BatchNorm2d`` inside an ``nn.Sequential`` is folded into one convolution (the batch norm's running statistics
and affine parameters moved into the convolution's weight and bias; the batch norm replaced by ``Identity`` so
the container's indices stay), and, on the CPU, the parameters in channels-last memory format (oneDNN's fast
layout). Outputs equal the original's up to float rounding (hybridgnet: landmarks within 1e-4 px at 256 px).

``bench/bench_segment.py`` times it against plain PyTorch (``bench/results/segment.txt``: hybridgnet's "cxrkit
infer" line) and ``tests/test_inference_copy.py`` checks the equality for every model family.
:meth:`cxrkit.models.module.CxrModule.inference_view` and ``infer`` use it; training never does (a folded network
has no batch statistics to learn).
"""

from __future__ import annotations

import copy
import logging

import torch
from torch.nn.utils.fusion import fuse_conv_bn_eval

log = logging.getLogger(__name__)


def fold_batchnorm(model: torch.nn.Module) -> int:
    """Fold, in place, every ``Conv2d -> BatchNorm2d`` pair of consecutive modules in an ``nn.Sequential`` of an
    eval-mode ``model``; returns the number of pairs folded. Only pairs inside a Sequential are folded: there the
    batch norm's input is the convolution's output and nothing else sees it."""
    if model.training:
        raise ValueError("fold_batchnorm needs a model in eval mode (it uses the running statistics)")
    folded = 0
    for seq in [m for m in model.modules() if isinstance(m, torch.nn.Sequential)]:
        names = list(seq._modules)
        for a, b in zip(names, names[1:]):
            conv, bn = seq._modules[a], seq._modules[b]
            if (type(conv) is torch.nn.Conv2d and type(bn) is torch.nn.BatchNorm2d and bn.track_running_stats
                    and bn.running_mean is not None and conv.out_channels == bn.num_features):
                seq._modules[a] = fuse_conv_bn_eval(conv, bn)
                seq._modules[b] = torch.nn.Identity()
                folded += 1
    return folded


def inference_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A folded (and on the CPU channels-last) copy of an eval-mode ``model`` for inference; the original is
    untouched. Attributes that are not modules (e.g. a ``card``) are copied along."""
    cached = model.__dict__.pop("_cxr_inference", None)  # never deep-copy a cached copy into the copy
    try:
        fast = copy.deepcopy(model).eval()
    finally:
        if cached is not None:
            model.__dict__["_cxr_inference"] = cached
    n = fold_batchnorm(fast)
    for p in fast.parameters():
        p.requires_grad_(False)
    param = next(fast.parameters(), None)
    if param is not None and param.device.type == "cpu":
        fast = fast.to(memory_format=torch.channels_last)
    log.debug("inference copy of %s: %d conv+batchnorm pairs folded", type(model).__name__, n)
    return fast


def weights_key(model: torch.nn.Module) -> tuple:
    """What an inference copy depends on: every parameter's and buffer's storage, version, device and dtype (an
    optimizer step, ``load_state_dict`` or ``.to()`` changes it)."""
    return tuple((t.data_ptr(), t._version, t.device, t.dtype) for t in (*model.parameters(), *model.buffers()))

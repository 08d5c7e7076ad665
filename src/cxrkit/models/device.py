"""Choosing the device a model runs on: ``--device auto|cpu|cuda[:N]`` everywhere."""

from __future__ import annotations

import functools

import torch

from cxrkit.errors import UsageError

DEVICE_CHOICES = "auto, cpu, cuda or cuda:N"


def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """``auto`` (None): the first CUDA device when one is present, else the CPU; ``cpu``; ``cuda`` / ``cuda:N``
    (a :class:`~cxrkit.errors.UsageError` when there is no such device); a ``torch.device`` passes through."""
    if isinstance(spec, torch.device):
        return spec
    text = "auto" if spec is None else str(spec).strip().lower()
    if text == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    if text == "cpu":
        return torch.device("cpu")
    if text == "meta":  # shape-only runs (tests of device placement)
        return torch.device("meta")
    if text == "cuda" or text.startswith("cuda:"):
        index = 0
        if text != "cuda":
            try:
                index = int(text.split(":", 1)[1])
            except ValueError:
                raise UsageError(f"--device {spec!r}: expected {DEVICE_CHOICES}") from None
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if index >= n or index < 0:
            raise UsageError(f"--device {spec}: this machine has {n} CUDA device(s); use --device cpu or auto")
        return torch.device(f"cuda:{index}")
    raise UsageError(f"--device {spec!r}: expected {DEVICE_CHOICES}")


def resolve_precision(precision: str, card, device: torch.device | str = "cpu") -> str:
    """``fp32`` or ``bf16`` for ``--precision auto|fp32|bf16``: auto is the card's measured-safe
    ``inference_precision``, bf16 only on a device that runs it natively (CUDA with bf16 support, or a CPU with
    bf16 instructions: :func:`cpu_has_bf16`), else fp32."""
    if precision in ("fp32", "bf16"):
        return precision
    if precision != "auto":
        raise UsageError(f"--precision {precision!r}: expected auto, fp32 or bf16")
    want = getattr(card, "inference_precision", "fp32")
    dev = torch.device(device) if not isinstance(device, torch.device) else device
    if want == "bf16" and dev.type == "cuda" and not torch.cuda.is_bf16_supported():
        return "fp32"
    if want == "bf16" and dev.type == "cpu" and not cpu_has_bf16():
        return "fp32"  # emulated bf16 is slower than fp32
    return want


@functools.cache  # a fact of the machine: /proc/cpuinfo is read once per process, not per job or batch
def cpu_has_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether this CPU computes bf16 natively (x86 ``avx512_bf16`` or ``amx_bf16``, read from Linux's
    ``/proc/cpuinfo``) and torch's oneDNN uses it; False elsewhere (where bf16 would be emulated, and slower
    than fp32)."""
    try:
        with open(cpuinfo) as fh:
            flags = next((line.split(":", 1)[1].split() for line in fh if line.startswith("flags")), [])
    except OSError:
        return False
    mkldnn_bf16 = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    return ("avx512_bf16" in flags or "amx_bf16" in flags) and (mkldnn_bf16 is None or bool(mkldnn_bf16()))

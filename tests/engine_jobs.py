"""Toy jobs for the engine tests (a module of its own: spawned worker processes import it by name)."""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass

from cxrkit.errors import InputError


@dataclass(frozen=True)
class ToyWork:
    fail_prepare: int = 3  # items with item % 7 == fail_prepare fail in prepare
    fail_finish: int = 5  # ... and in finish
    kill_on: int | None = None  # the worker preparing this item kills itself (SIGKILL)
    slow: float = 0.0

    def prepare(self, item: int):
        if self.kill_on is not None and item == self.kill_on:
            os.kill(os.getpid(), signal.SIGKILL)
        if item % 7 == self.fail_prepare:
            raise InputError(f"item {item}: cannot be decoded")
        if self.slow:
            time.sleep(self.slow * ((item * 7919) % 5) / 5)  # out-of-order completion
        return {"pid": os.getpid(), "item": item}, item * 2

    def finish(self, item: int, meta, output):
        if item % 7 == self.fail_finish:
            raise ValueError(f"item {item}: bad output")
        return f"{item}:{output}"


class ToyJob:
    def __init__(self, work: ToyWork, fail_forward: int | None = None, oom_above: int | None = None) -> None:
        self.work = work
        self.fail_forward = fail_forward
        self.oom_above = oom_above
        self.batches: list[int] = []

    def forward(self, inputs, metas):
        if self.oom_above is not None and len(inputs) > self.oom_above:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        if self.fail_forward is not None and self.fail_forward * 2 in inputs:
            raise ValueError("forward failed")
        self.batches.append(len(inputs))
        return [x + 1 for x in inputs]

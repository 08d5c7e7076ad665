"""The one training scaffold every cxrkit trainer runs on: schedule, loop, checkpoints, resume.

A trainer supplies a *step function* (one optimizer step: its batch, forward, loss, backward, ``opt.step()``;
returns its scalar metrics) and an *evaluation* (returns validation metrics); :class:`StepLoop` does the rest:

* the learning rate of every step from a :class:`Schedule` (warmup, then cosine decay or halving on a
  validation plateau), set on the optimizer before the step function runs;
* evaluation every ``eval_every`` steps and after the last one, with a record in ``metrics.csv`` (the mean of
  the step metrics since the previous evaluation, the validation metrics, the learning rate, seconds);
* ``last.pt`` (weights, optimizer, loop state and the run's configuration) after every evaluation, ``best.pt``
  when the watched metric improved, optional weights-only snapshots ``checkpoints/step-NNNNN.pt``; all written
  atomically (:mod:`cxrkit.models.checkpoint`);
* exact resume: a rerun with the same configuration continues from ``last.pt`` (another configuration is
  refused); trainers draw every random number from generators seeded by (seed, step), so a resumed run ends
  with the same weights as an uninterrupted one.

Distributed trainers pass ``main=False`` on ranks other than 0 (they neither evaluate nor write) and a
``broadcast`` that shares rank 0's loop state after each evaluation.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from cxrkit.errors import UsageError
from cxrkit.io.atomic import write_records_csv
from cxrkit.models.checkpoint import resume_state, save_checkpoint

log = logging.getLogger(__name__)

SCHEDULES = ("cosine", "plateau", "constant")


@dataclass(frozen=True)
class Schedule:
    """Learning rate per optimizer step: linear warmup over ``warmup`` steps, then ``cosine`` decay to 0 at
    ``total`` steps, ``plateau`` (halved by ``factor`` after ``patience`` evaluations without improvement), or
    ``constant``."""

    base_lr: float
    total: int
    kind: str = "cosine"
    warmup: int = 0
    patience: int = 1
    factor: float = 0.5

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULES:
            raise UsageError(f"schedule {self.kind!r} is not one of {SCHEDULES}")
        if self.total < 1 or self.base_lr <= 0:
            raise UsageError(f"a schedule needs total >= 1 steps and a positive learning rate, got {self.total}, "
                             f"{self.base_lr}")

    def lr(self, step: int, state: dict[str, Any]) -> float:
        warm = min(1.0, (step + 1) / self.warmup) if self.warmup > 0 else 1.0
        if self.kind == "cosine":
            span = max(1, self.total - self.warmup)
            after = max(0, step - self.warmup)
            return self.base_lr * warm * 0.5 * (1 + math.cos(math.pi * min(1.0, after / span)))
        if self.kind == "plateau":
            return self.base_lr * warm * state.get("plateau_factor", 1.0)
        return self.base_lr * warm

    def observe(self, improved: bool, state: dict[str, Any]) -> None:
        """Plateau bookkeeping after an evaluation (kept in the loop state, so it resumes too)."""
        if improved:
            state["bad_evals"] = 0
            return
        state["bad_evals"] = state.get("bad_evals", 0) + 1
        if self.kind == "plateau" and state["bad_evals"] >= self.patience:
            state["plateau_factor"] = state.get("plateau_factor", 1.0) * self.factor
            state["bad_evals"] = 0


def generator(*parts: int) -> torch.Generator:
    """A CPU generator seeded by ``parts`` (e.g. seed, step): the only source of a step's randomness."""
    seed = int(np.random.SeedSequence(list(parts)).generate_state(1, dtype=np.uint64)[0] & 0x7FFF_FFFF_FFFF_FFFF)
    return torch.Generator().manual_seed(seed)


class StepLoop:
    """Run ``schedule.total`` optimizer steps of ``model`` with ``optimizer``, writing under ``out``.

    Args:
        config: the run's configuration (JSON-ready); stored in ``last.pt``, a resume must match it.
        metric: the evaluation key whose increase makes ``best.pt`` (None: ``best.pt`` is the last weights).
        save_every: also keep weights-only snapshots every N steps (0: none).
        main: this process writes files and evaluates (False on non-zero distributed ranks).
        broadcast: shares rank 0's loop state with the other ranks after an evaluation.
    """

    def __init__(self, out: str | os.PathLike, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                 config: dict[str, Any], schedule: Schedule, *, eval_every: int, metric: str | None = None,
                 save_every: int = 0, main: bool = True, desc: str = "train",
                 broadcast: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> None:
        if eval_every < 1 or save_every < 0:
            raise UsageError(f"--eval-every must be >= 1 and --save-every >= 0, got {eval_every}, {save_every}")
        self.out = Path(out)
        self.model, self.optimizer, self.config, self.schedule = model, optimizer, config, schedule
        self.eval_every, self.metric, self.save_every = eval_every, metric, save_every
        self.main, self.desc, self.broadcast = main, desc, broadcast
        self.last = self.out / "last.pt"
        self.state: dict[str, Any] = {"step": 0, "best": -math.inf, "best_step": None, "history": []}

    def resume(self) -> bool:
        """Load ``last.pt`` when there is one (same configuration); True when a run was resumed."""
        saved = resume_state(self.last, self.config, _unwrap(self.model), self.optimizer)
        if saved is None:
            return False
        self.state = saved
        return True

    def run(self, step_fn: Callable[[int], dict[str, float]], evaluate: Callable[[int], dict[str, float]] | None,
            *, stop_after: int | None = None, progress: bool = True) -> dict[str, Any]:
        """Run (or continue) the loop; ``evaluate(step)`` runs on the main process only. ``stop_after`` ends
        this call after that many more steps (the next call resumes). Returns the loop state."""
        from tqdm.auto import tqdm  # noqa: PLC0415  # lazy: tqdm's import is slow and only needed here

        if self.main:
            self.out.mkdir(parents=True, exist_ok=True)
        st = self.state
        end = self.schedule.total if stop_after is None else min(self.schedule.total, st["step"] + stop_after)
        bar = tqdm(total=self.schedule.total, initial=st["step"], desc=self.desc, disable=not (progress and self.main))
        running: dict[str, list[float]] = {}
        t0 = time.perf_counter()
        while st["step"] < end:
            step = st["step"]
            lr = self.schedule.lr(step, st)
            for g in self.optimizer.param_groups:
                g["lr"] = lr
            for k, v in step_fn(step).items():
                running.setdefault(k, []).append(float(v))
            st["step"] = step + 1
            bar.update(1)
            if self.main and self.save_every and st["step"] % self.save_every == 0:
                save_checkpoint(self.out / "checkpoints" / f"step-{st['step']:05d}.pt", _unwrap(self.model))
            if st["step"] % self.eval_every == 0 or st["step"] == self.schedule.total:
                self._evaluate(evaluate, running, lr, time.perf_counter() - t0)
                running, t0 = {}, time.perf_counter()
                if self.metric is not None and st["history"]:
                    bar.set_postfix({self.metric: f"{st['history'][-1].get(self.metric, float('nan')):.4f}"})
        bar.close()
        return st

    def _evaluate(self, evaluate, running: dict[str, list[float]], lr: float, seconds: float) -> None:
        st = self.state
        improved = False
        if self.main:
            rec: dict[str, Any] = {"step": st["step"], **{f"train_{k}": float(np.mean(v)) for k, v in running.items()}}
            if evaluate is not None:
                rec.update(evaluate(st["step"]))
            rec.update({"lr": lr, "seconds": seconds})
            score = rec.get(self.metric, float("nan")) if self.metric is not None else float(st["step"])
            improved = not math.isnan(score) and score > st["best"]
            if improved:
                st["best"], st["best_step"] = score, st["step"]
            self.schedule.observe(improved, st)
            st["history"] = st["history"] + [rec]
        if self.broadcast is not None:
            self.state = st = self.broadcast(st)
        if self.main:  # last.pt is the commit point: a run killed before it redoes these steps and these writes
            if improved:
                save_checkpoint(self.out / "best.pt", _unwrap(self.model))
            write_records_csv(self.out / "metrics.csv", st["history"])
            save_checkpoint(self.last, _unwrap(self.model), training={
                "config": self.config, "optimizer": self.optimizer.state_dict(), "state": st})


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if hasattr(model, "module") and isinstance(model.module, torch.nn.Module) else model


__all__ = ["SCHEDULES", "Schedule", "StepLoop", "generator"]

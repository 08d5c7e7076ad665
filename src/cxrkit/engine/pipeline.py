"""The pipelined engine every image job runs on: decode in workers, one batched model stage, post-process in workers.

A job is two parts:

* ``job.work`` -- a small picklable object (settings only, no models) whose ``prepare(item)`` decodes and
  preprocesses one image and returns ``(meta, model_input)``, and whose ``finish(item, meta, output)`` turns
  the model's output for that image into its result (masks at the original size, RLE, rows, JSON...). Both run
  in worker processes (``workers`` of them; 0 runs everything in this process).
* ``job.forward(inputs, metas)`` -- the model stage, in this process on the chosen device: one call per batch
  of up to ``batch_size`` images, returning one output per image (or an exception for an image that failed).

:func:`run_pipeline` keeps every stage busy: decodes are submitted ahead of the model, batches are formed as
soon as enough images are decoded, post-processing of one batch overlaps the model on the next. Every queue is
bounded (at most ``prefetch`` decodes and ``max_pending`` post-processings in flight, results held only until
they can be emitted in input order), so memory stays flat whatever the number of images. Results reach
``emit(item, result)`` exactly once per item, in input order; an item that failed anywhere gets a
:class:`Failure` instead, and the run goes on.

Faults: a worker process that dies (SIGKILL, out of memory) ends the run with a :class:`WorkerDied` error after
the results already emitted (rerun to resume); Ctrl-C stops the workers at once; a CUDA out-of-memory error in
the model stage halves the batch (a warning) and retries. No process is left running when the call returns.
"""

from __future__ import annotations

import logging
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Protocol, Sequence

from cxrkit.errors import CxrkitError, InputError, UsageError, one_line
from cxrkit.io.workers import default_workers, worker_pool

log = logging.getLogger(__name__)


class Work(Protocol):
    """The worker side of a job (picklable: settings only)."""

    def prepare(self, item: Any) -> tuple[Any, Any]: ...

    def finish(self, item: Any, meta: Any, output: Any) -> Any: ...


class Job(Protocol):
    """A job: its worker side and its model stage."""

    work: Work

    def forward(self, inputs: list[Any], metas: list[Any]) -> list[Any]: ...


@dataclass(frozen=True)
class Failure:
    """An item that failed: where (``stage``: prepare, forward or finish) and why (one line)."""

    stage: str
    message: str
    error: BaseException | None = None

    def __str__(self) -> str:
        return self.message


class WorkerDied(CxrkitError):
    """A worker process ended unexpectedly (killed, out of memory); the results emitted so far are complete."""


@dataclass
class PipelineStats:
    """What a run did: items, failures, batches and the model stage's batch size at the end."""

    items: int = 0
    failures: int = 0
    batches: int = 0
    batch_size: int = 0


def _describe(exc: BaseException, item: Any) -> str:
    where = getattr(item, "path", None) or getattr(item, "id", None)
    text = one_line(exc, where)
    return text if isinstance(exc, (CxrkitError, OSError)) else f"{type(exc).__name__}: {text}"


def _call_prepare(work: Work, item: Any) -> tuple[Any, Any]:
    return work.prepare(item)


def _call_finish(work: Work, item: Any, meta: Any, output: Any) -> Any:
    return work.finish(item, meta, output)


def _is_oom(exc: BaseException) -> bool:
    name = type(exc).__name__
    return name == "OutOfMemoryError" or (isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower())


class _Forward:
    """The model stage with its batch size (halved on CUDA out-of-memory) and per-item isolation of failures."""

    def __init__(self, job: Job, batch_size: int) -> None:
        self.job = job
        self.batch_size = batch_size

    def __call__(self, inputs: list[Any], metas: list[Any], items: list[Any]) -> list[Any]:
        out: list[Any] = []
        start = 0
        while start < len(inputs):
            n = self.batch_size
            try:
                got = self.job.forward(inputs[start:start + n], metas[start:start + n])
            except Exception as exc:  # noqa: BLE001 - isolate the item(s) that failed
                if _is_oom(exc) and n > 1:
                    self.batch_size = max(1, n // 2)
                    log.warning("out of memory in the model stage with batch %d: retrying with %d", n,
                                self.batch_size)
                    _empty_cuda_cache()
                    continue
                got = self._one_by_one(inputs[start:start + n], metas[start:start + n], items[start:start + n])
            if len(got) != len(inputs[start:start + n]):
                raise InputError(f"model stage returned {len(got)} outputs for {len(inputs[start:start + n])} inputs")
            out.extend(got)
            start += n
        return out

    def _one_by_one(self, inputs: list[Any], metas: list[Any], items: list[Any]) -> list[Any]:
        out: list[Any] = []
        for x, m, item in zip(inputs, metas, items):
            try:
                out.extend(self.job.forward([x], [m]))
            except Exception as exc:  # noqa: BLE001 - becomes this item's failure
                out.append(Failure("forward", _describe(exc, item), exc))
        return out


def _empty_cuda_cache() -> None:
    import sys

    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def run_pipeline(job: Job, items: Iterable[Any], emit: Callable[[Any, Any], None], *, workers: int | None = None,
                 batch_size: int = 16, prefetch: int | None = None, max_pending: int | None = None,
                 progress: Callable[[int], None] | None = None) -> PipelineStats:
    """Run ``job`` over ``items``; ``emit(item, result_or_Failure)`` is called once per item, in input order.

    Args:
        workers: processes for ``prepare`` and ``finish`` (None: all cores; 0: all in this process).
        batch_size: images per model call (halved on CUDA out-of-memory).
        prefetch: decodes in flight at most (default ``2 * batch_size + workers``).
        max_pending: post-processings in flight at most (default ``2 * batch_size + workers``).
        progress: called with the number of items emitted since the last call.
    """
    if batch_size < 1:
        raise UsageError(f"batch size must be >= 1, got {batch_size}")
    workers = default_workers() if workers is None else int(workers)
    stats = PipelineStats(batch_size=batch_size)
    forward = _Forward(job, batch_size)
    if workers <= 0:
        _run_serial(job, items, emit, forward, stats, progress)
        return stats
    prefetch = prefetch or 2 * batch_size + workers
    max_pending = max_pending or 2 * batch_size + workers
    pool = worker_pool(workers)
    clean = False
    try:
        _run_pool(job, items, emit, forward, stats, progress, pool, prefetch, max_pending)
        clean = True
    except BrokenProcessPool as exc:
        raise WorkerDied("a worker process died (killed or out of memory); everything written so far is complete: "
                         "rerun the same command to finish") from exc
    finally:
        _shutdown(pool, clean)
    stats.batch_size = forward.batch_size
    return stats


def _shutdown(pool: ProcessPoolExecutor, clean: bool) -> None:
    if clean:
        pool.shutdown(wait=True)
        return
    procs = list(getattr(pool, "_processes", {}).values())  # stop now: Ctrl-C, an error, a dead worker
    # (taken before shutdown(), which forgets them) A worker killed in the middle of sending a result leaves the
    # pool's manager thread waiting in recv() for bytes no process will write; the interpreter joins that thread
    # at exit, so Ctrl-C would hang forever. Once every worker is dead, closing this process's write end of the
    # result pipe gives that reader EOF and the thread ends.
    manager = getattr(pool, "_executor_manager_thread", None)
    results = getattr(pool, "_result_queue", None)
    pool.shutdown(wait=False, cancel_futures=True)
    for p in procs:
        if p.is_alive():
            p.kill()
    for p in procs:
        p.join(timeout=10)
    if manager is not None:
        manager.join(timeout=2)
        if manager.is_alive() and results is not None:
            results._writer.close()
            manager.join(timeout=10)
        if manager.is_alive():  # pragma: no cover - not seen; say so rather than hang silently
            log.warning("the worker pool's manager thread did not stop; the process may wait at exit")


def _run_serial(job: Job, items: Iterable[Any], emit, forward: _Forward, stats: PipelineStats, progress) -> None:
    batch: list[tuple[Any, Any, Any]] = []
    pending: list[tuple[Any, Any]] = []  # (item, Failure) or (item, None) placeholders, kept in order

    def flush() -> None:
        outputs = forward([x for _, _, x in batch], [m for _, m, _ in batch], [i for i, _, _ in batch]) if batch else []
        it = iter(zip(batch, outputs))
        for item, fail in pending:
            if fail is not None:
                _emit(emit, stats, item, fail, progress)
                continue
            (_, meta, _), out = next(it)
            _emit(emit, stats, item, out if isinstance(out, Failure) else _finish_here(job, item, meta, out), progress)
        batch.clear()
        pending.clear()

    for item in items:
        try:
            meta, x = job.work.prepare(item)
        except Exception as exc:  # noqa: BLE001 - this item fails, the run goes on
            pending.append((item, Failure("prepare", _describe(exc, item), exc)))
            continue
        batch.append((item, meta, x))
        pending.append((item, None))
        if len(batch) >= forward.batch_size:
            stats.batches += 1
            flush()
    if pending:
        stats.batches += bool(batch)
        flush()


def _finish_here(job: Job, item: Any, meta: Any, out: Any) -> Any:
    try:
        return job.work.finish(item, meta, out)
    except Exception as exc:  # noqa: BLE001 - this item fails, the run goes on
        return Failure("finish", _describe(exc, item), exc)


def _emit(emit, stats: PipelineStats, item: Any, result: Any, progress) -> None:
    stats.items += 1
    stats.failures += isinstance(result, Failure)
    emit(item, result)
    if progress is not None:
        progress(1)


def _run_pool(job: Job, items: Iterable[Any], emit, forward: _Forward, stats: PipelineStats, progress,
              pool: ProcessPoolExecutor, prefetch: int, max_pending: int) -> None:
    source = iter(items)
    exhausted = False
    decoding: deque[tuple[Any, Future]] = deque()  # in input order
    ready: list[tuple[Any, Any, Any]] = []  # decoded, waiting for the model: (item, meta, input)
    # Every item from the moment its decode is collected until it is emitted, in input order:
    # [item, state, value] with state "ready" (waiting for the model), "post" (value: its finish Future) or
    # "done" (value: its result or Failure).
    order: deque[list] = deque()
    posting = 0

    def take_decoded(block: bool) -> None:
        while decoding and (block or decoding[0][1].done()):
            item, fut = decoding.popleft()
            try:
                meta, x = fut.result()
            except BrokenProcessPool:
                raise
            except Exception as exc:  # noqa: BLE001 - this item fails, the run goes on
                order.append([item, "done", Failure("prepare", _describe(exc, item), exc)])
                continue
            entry = [item, "ready", None]
            order.append(entry)
            ready.append((item, meta, x, entry))
            block = False

    def run_model(n: int) -> None:
        nonlocal posting
        batch, ready[:] = ready[:n], ready[n:]
        outputs = forward([b[2] for b in batch], [b[1] for b in batch], [b[0] for b in batch])
        stats.batches += 1
        for (item, meta, _, entry), out in zip(batch, outputs):
            if isinstance(out, Failure):
                entry[1:] = ["done", out]
            else:
                entry[1:] = ["post", pool.submit(_call_finish, job.work, item, meta, out)]
                posting += 1

    def emit_ready() -> None:
        nonlocal posting
        while order:
            item, state, value = order[0]
            if state == "ready":
                return
            if state == "post":
                if not value.done():
                    return
                posting -= 1
                try:
                    value = value.result()
                except BrokenProcessPool:
                    raise
                except Exception as exc:  # noqa: BLE001 - this item fails, the run goes on
                    value = Failure("finish", _describe(exc, item), exc)
            order.popleft()
            _emit(emit, stats, item, value, progress)

    while True:
        while not exhausted and len(decoding) < prefetch:
            try:
                item = next(source)
            except StopIteration:
                exhausted = True
                break
            decoding.append((item, pool.submit(_call_prepare, job.work, item)))
        take_decoded(block=False)
        if len(ready) >= forward.batch_size and posting < max_pending:
            run_model(forward.batch_size)
        elif ready and exhausted and not decoding:
            run_model(len(ready))
        emit_ready()
        if exhausted and not decoding and not ready and not order:
            return
        # Nothing to do right now: wait for the next decode (in order) or the oldest post-processing (results
        # leave in order, so only the head of the line can free a slot).
        waiting = [decoding[0][1]] if decoding else []
        if order and order[0][1] == "post":
            waiting.append(order[0][2])
        if waiting:
            wait(waiting, return_when=FIRST_COMPLETED)


def run_to_list(job: Job, items: Sequence[Any], **kwargs: Any) -> list[Any]:
    """:func:`run_pipeline` collecting the results (or :class:`Failure`) in input order."""
    out: list[Any] = []
    run_pipeline(job, items, lambda _item, result: out.append(result), **kwargs)
    return out


def workers_for(workers: int | None, n_items: int) -> int:
    """Worker processes for ``n_items`` items: as asked (None: all cores), but none for a handful of items
    (starting processes costs more than it saves) and never more than items."""
    n = default_workers() if workers is None else workers
    return 0 if n_items < 4 else min(n, n_items)

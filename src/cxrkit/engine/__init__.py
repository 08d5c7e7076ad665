"""The pipelined, device-aware engine every image job runs on (see :mod:`cxrkit.engine.pipeline`)."""

from cxrkit.engine.pipeline import (
    Failure,
    Job,
    PipelineStats,
    Work,
    WorkerDied,
    default_workers,
    run_pipeline,
    run_to_list,
    workers_for,
)

__all__ = ["Failure", "Job", "PipelineStats", "Work", "WorkerDied", "default_workers", "run_pipeline", "run_to_list", "workers_for"]

"""Worker processes for CPU-side parallel work (the engine's decode and post-processing, the cache builder).

:func:`worker_pool` gives a :class:`~concurrent.futures.ProcessPoolExecutor` of *spawned* processes (no fork of a
process that holds torch threads or a CUDA context) that leave Ctrl-C to the parent, run one thread per
numerical library, and die with the parent even when it is SIGKILLed (Linux), so no worker outlives its job.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from concurrent.futures import ProcessPoolExecutor


def worker_pool(workers: int) -> ProcessPoolExecutor:
    """A pool of ``workers`` spawned, single-threaded worker processes tied to this process's life."""
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=init_worker)


def default_workers() -> int:
    """All cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def init_worker() -> None:
    """Worker processes: die with the parent (Linux: even when it is SIGKILLed), leave Ctrl-C to the parent (it
    stops them), one thread per library."""
    die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):  # read by torch/numpy on import
        os.environ[var] = "1"
    try:
        import cv2

        cv2.setNumThreads(1)
    except ImportError:  # pragma: no cover - cv2 is a dependency
        pass
    import sys

    if "torch" in sys.modules:  # only when the job's worker code imported it
        sys.modules["torch"].set_num_threads(1)


def die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent ends (``prctl(PR_SET_PDEATHSIG)``); elsewhere a no-op
    (the workers then end when they find the parent's pipe closed)."""
    import sys

    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() == 1:  # the parent already died while this worker started
            os._exit(1)
    except (OSError, AttributeError):  # pragma: no cover - no libc
        pass



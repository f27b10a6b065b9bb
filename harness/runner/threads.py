"""The threads of a worker process: BLAS, OpenMP and Numba limits, set once when it starts, so
that ``jobs`` workers share the cores without oversubscribing them."""
from __future__ import annotations

from typing import Any

THREAD_ENV_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
                   "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS", "NUMBA_NUM_THREADS")


_LIMITS: Any = None


def limit_threads(threads: int) -> None:
    """At most ``threads`` BLAS / OpenMP threads in this process (threadpoolctl)."""
    global _LIMITS
    try:
        import numpy  # noqa: F401  (loads the BLAS library so that threadpoolctl sees it)
        from threadpoolctl import threadpool_limits

        _LIMITS = threadpool_limits(limits=threads)
    except Exception:  # thread limits are an optimisation, never a reason to fail
        pass


def set_numba_threads(threads: int) -> None:
    """At most ``threads`` Numba threads in this process."""
    try:
        import numba

        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))  # type: ignore[attr-defined]
    except Exception:
        pass

"""Facts about this machine that cost estimates, run records and the speed benchmarks share:
usable cores, CPU model, the GEMM rate now."""
from __future__ import annotations

import os
import platform
from typing import Any


def cpu_count() -> int:
    """Cores this process may use (its CPU affinity where the system reports it)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def cpu_model() -> str | None:
    """The CPU's model name (``/proc/cpuinfo``), else what :func:`platform.processor` says."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


DGEMM_SIZE = 1000
"""Side of the square matrices :func:`dgemm_gflops` multiplies."""


def dgemm_gflops(size: int = DGEMM_SIZE, repeats: int = 3, threads: int | None = None,
                 dtype: Any = "float64") -> dict:
    """This machine's DGEMM rate now: the best of ``repeats`` float64 ``(size, size) @ (size,
    size)`` products (after one untimed product), with ``threads`` BLAS threads (default: the
    usable cores, :func:`cpu_count`). Returns ``{"gflops": 2 size^3 / best seconds / 1e9,
    "size", "repeats", "threads"}``; about 0.1 s of work on a current core. A run records it in
    ``env.json`` so that its timings can be read against the machine's speed that day; the speed
    benchmarks print it in their headers (``dtype="float32"``: the SGEMM rate)."""
    import time

    import numpy as np

    threads = cpu_count() if threads is None else threads
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((size, size)).astype(dtype) for _ in range(2))
    out = np.empty((size, size), dtype=a.dtype)
    best = float("inf")
    try:
        from threadpoolctl import threadpool_limits

        limits = threadpool_limits(limits=threads, user_api="blas")
    except Exception:  # threadpoolctl missing or unable to act: the process's own setting
        limits = None
    try:
        np.matmul(a, b, out=out)
        for _ in range(max(1, repeats)):
            t0 = time.perf_counter()
            np.matmul(a, b, out=out)
            best = min(best, time.perf_counter() - t0)
    finally:
        if limits is not None:
            limits.restore_original_limits()
    return {"gflops": 2.0 * size ** 3 / best / 1e9, "size": size, "repeats": max(1, repeats), "threads": threads}

"""harness/plugin/machine.py: the GEMM-rate probe that env.json and the speed benchmarks share."""
import numpy as np
import pytest
from threadpoolctl import threadpool_info

from harness.plugin.machine import dgemm_gflops


def blas_threads_now():
    return [i["num_threads"] for i in threadpool_info() if i.get("user_api") == "blas"]


@pytest.mark.parametrize("dtype", ["float64", "float32", np.float32])
def test_the_rate_and_what_was_measured(dtype):
    before = blas_threads_now()
    r = dgemm_gflops(size=64, repeats=2, threads=1, dtype=dtype)
    assert set(r) == {"gflops", "size", "repeats", "threads"}
    assert (r["size"], r["repeats"], r["threads"]) == (64, 2, 1)
    # a finite, positive rate, below what any CPU core reaches (1e5 GFLOP/s)
    assert np.isfinite(r["gflops"]) and 0 < r["gflops"] < 1e5
    assert blas_threads_now() == before  # the BLAS thread setting is restored

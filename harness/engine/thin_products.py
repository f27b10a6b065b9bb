"""Products ``K @ V`` of a large dense symmetric matrix K (N, N) with a thin block V (N, b),
b of 1 to 8 columns: the inner step of the Krylov eigen-solvers (:mod:`harness.engine.krylov`).

Such a product is memory-bound: it should cost one pass over K (8 N^2 bytes in float64). BLAS
GEMM packs panels of K into buffers first, which costs about two more passes when b is this
small (a GEMM with 4 columns takes about three times a matrix-vector product).
:func:`symmetric_times_block` reads K once, four rows at a time, each group of rows multiplied
by every column of V while it is in the L1 cache (docs/engine.md).
"""
from __future__ import annotations

import numpy as np

from .jit import njit

__all__ = ["symmetric_times_block", "symmetric_product"]


@njit(nogil=True, cache=True, fastmath=True)
def _rows_times_columns(A, VT, out):
    """``out[c, i] = A[i, :] @ VT[c, :]`` for A (n, m) and VT (b, m), both C-contiguous; A read
    once, four rows at a time."""
    n, m = A.shape
    b = VT.shape[0]
    i = 0
    while i + 4 <= n:
        r0, r1, r2, r3 = A[i], A[i + 1], A[i + 2], A[i + 3]
        for c in range(b):
            v = VT[c]
            s0 = 0.0
            s1 = 0.0
            s2 = 0.0
            s3 = 0.0
            for j in range(m):
                x = v[j]
                s0 += r0[j] * x
                s1 += r1[j] * x
                s2 += r2[j] * x
                s3 += r3[j] * x
            out[c, i] = s0
            out[c, i + 1] = s1
            out[c, i + 2] = s2
            out[c, i + 3] = s3
        i += 4
    while i < n:
        row = A[i]
        for c in range(b):
            v = VT[c]
            s = 0.0
            for j in range(m):
                s += row[j] * v[j]
            out[c, i] = s
        i += 1


def symmetric_times_block(K: np.ndarray, V: np.ndarray) -> np.ndarray:
    """``K @ V`` (N, b), Fortran-ordered, for the symmetric float64 ``K`` (N, N), C- or
    Fortran-contiguous (a symmetric matrix is its own transpose, so either order gives its rows
    contiguously), and ``V`` (N, b). Falls back to BLAS for other dtypes or layouts."""
    rows = K if K.flags.c_contiguous else K.T
    if rows.dtype != np.float64 or not rows.flags.c_contiguous or V.ndim != 2:
        return np.asfortranarray(K @ V)
    VT = np.ascontiguousarray(V.T, dtype=np.float64)
    out = np.empty_like(VT)
    _rows_times_columns(rows, VT, out)
    return out.T


def symmetric_product(K: np.ndarray):
    """The callable ``V -> K @ V`` used by the solvers for the symmetric ``K``:
    :func:`symmetric_times_block` for float64 K, BLAS for float32 K (whose GEMM is faster here)."""
    if K.dtype == np.float64 and (K.flags.c_contiguous or K.flags.f_contiguous):
        return lambda V: symmetric_times_block(K, V)
    Kt = K.T
    return lambda V: Kt @ V

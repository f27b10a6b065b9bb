"""Solves ``K X = V`` with the Cholesky factor of K (N, N) for a thin block V (N, b) of a few
columns: the inner step of the Cholesky-based eigen-solvers (:mod:`harness.engine.eigen`).

With ``K = U^T U`` (U upper triangular with contiguous rows: the C-ordered view of the lower
factor that LAPACK ``potrf`` returns in Fortran order), the solve is two triangular sweeps,
``U^T Z = V`` then ``U X = Z``. With so few columns each sweep is bound by reading the triangle
(N^2 / 2 numbers) from memory. :func:`cholesky_solve_block` reads four rows of U at a time and
applies them to every column of the block while they are in the L1 cache (the scheme of
:mod:`.thin_products`), both sweeps walking U's rows in memory order:

- the forward sweep (``U^T Z = V``) solves the 4 x 4 diagonal block, then updates the rest of
  each column by the four rows (``axpy`` form);
- the backward sweep (``U X = Z``) takes the dot products of four rows with each column's
  solved tail, then solves the diagonal block (dot form).

The inner loops run over row slices from index 0 (``U[i, s:]``, ``V[c, s:]``), a form LLVM
vectorises; loops over ``range(s, N)`` on whole rows were left scalar by Numba's compiler
(about 5x slower). At N = 3000 with 4 columns a float32 solve takes about 0.45x the time of
LAPACK ``potrs`` on one thread (two ``trsm`` calls), float64 with 8 columns about 0.65x
(docs/engine.md).
"""
from __future__ import annotations

import numpy as np

from .jit import njit

__all__ = ["cholesky_solve_block"]


@njit(nogil=True, cache=True, fastmath=True)
def _solve_upper_transposed(U, Y):
    """``U^T Z = Y`` in place: ``Y`` (b, N) C-ordered, one right-hand side per row; ``U`` (N, N)
    C-ordered, only its upper triangle read."""
    N = U.shape[0]
    b = Y.shape[0]
    i = 0
    while i < N:
        m = min(4, N - i)
        for c in range(b):  # the diagonal block
            y = Y[c]
            for r in range(m):
                row = U[i + r]
                z = y[i + r] / row[i + r]
                y[i + r] = z
                for j in range(i + r + 1, i + m):
                    y[j] -= row[j] * z
        s = i + m
        if s < N:  # m == 4 here: only the last block can be shorter
            r0, r1, r2, r3 = U[i, s:], U[i + 1, s:], U[i + 2, s:], U[i + 3, s:]
            for c in range(b):
                z0 = Y[c, i]
                z1 = Y[c, i + 1]
                z2 = Y[c, i + 2]
                z3 = Y[c, i + 3]
                y = Y[c, s:]
                for j in range(N - s):
                    y[j] -= r0[j] * z0 + r1[j] * z1 + r2[j] * z2 + r3[j] * z3
        i += m


@njit(nogil=True, cache=True, fastmath=True)
def _solve_upper(U, Y):
    """``U X = Y`` in place (``Y`` and ``U`` as in :func:`_solve_upper_transposed`): the last
    ``N % 4`` rows first, then blocks of four rows upwards."""
    N = U.shape[0]
    b = Y.shape[0]
    i = N
    while i > 0:
        m = i % 4 if i % 4 else 4
        i -= m
        s = i + m
        if s < N:  # m == 4 here: only the first block (the last rows) can be shorter
            r0, r1, r2, r3 = U[i, s:], U[i + 1, s:], U[i + 2, s:], U[i + 3, s:]
            for c in range(b):
                v = Y[c, s:]
                zero = r0[0] - r0[0]  # sums in U's precision
                s0 = zero
                s1 = zero
                s2 = zero
                s3 = zero
                for j in range(N - s):
                    x = v[j]
                    s0 += r0[j] * x
                    s1 += r1[j] * x
                    s2 += r2[j] * x
                    s3 += r3[j] * x
                Y[c, i] -= s0
                Y[c, i + 1] -= s1
                Y[c, i + 2] -= s2
                Y[c, i + 3] -= s3
        for c in range(b):  # the diagonal block, last row first
            y = Y[c]
            for r in range(m - 1, -1, -1):
                row = U[i + r]
                t = y[i + r]
                for j in range(i + r + 1, i + m):
                    t -= row[j] * y[j]
                y[i + r] = t / row[i + r]


def cholesky_solve_block(U: np.ndarray, V: np.ndarray) -> np.ndarray:
    """``(U^T U)^{-1} V`` in U's precision: (N, b) Fortran-ordered for ``V`` (N, b), (N,) for
    ``V`` (N,). ``U`` (N, N): C-contiguous, upper triangular (its strictly lower part is not
    read, so the C-ordered view ``C.T`` of a Fortran-ordered lower factor C from ``potrf`` with
    ``clean=0`` serves as is)."""
    if U.ndim != 2 or U.shape[0] != U.shape[1] or not U.flags.c_contiguous:
        raise ValueError(f"U must be a square C-contiguous matrix, got shape {U.shape}")
    if U.dtype not in (np.float32, np.float64):
        raise ValueError(f"U must be float32 or float64, got {U.dtype}")
    block = V[:, None] if V.ndim == 1 else V
    if block.ndim != 2 or block.shape[0] != U.shape[0]:
        raise ValueError(f"V must have {U.shape[0]} rows, got shape {V.shape}")
    Y = np.array(block.T, dtype=U.dtype, order="C")  # (b, N): one right-hand side per row
    _solve_upper_transposed(U, Y)
    _solve_upper(U, Y)
    return Y[0] if V.ndim == 1 else Y.T

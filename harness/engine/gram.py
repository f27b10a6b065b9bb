"""Sums of Hadamard products of Gram matrices, built tile by tile.

For terms ``(A_t, C_t)`` with ``A_t`` of shape (N, a_t) and ``C_t`` of shape (N, c_t) or
``None``, :func:`hadamard_gram_sums` returns, for each requested group ``g`` of terms,

    S_g = sum_{t in g} (A_t A_t^T) o (C_t C_t^T)        (N, N),   o = entrywise product,

where a ``None`` factor ``C_t`` stands for a matrix of ones (the term is a plain Gram matrix).
The NTK of a fully-connected network is such a sum (see :mod:`harness.engine.ntk`).

How: the upper triangle is cut into square tiles of side ``tile``. An off-diagonal tile
``(I, J)`` is one GEMM per factor (``A_t[I] @ A_t[J]^T``); a diagonal tile is one symmetric
product (SYRK). The entrywise products and sums run in a fused, GIL-free Numba kernel while
the tile is in cache, and the tile is written with its mirror image. Tiles run on several
Python threads with single-threaded BLAS inside (:func:`harness.engine.threads.run_in_threads`).
Half the Gram flops are skipped by symmetry, at GEMM's rate rather than multi-threaded SYRK's
(often well below GEMM's), and the only N x N arrays are the outputs: the extra memory is a
few tiles per thread.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .jit import njit
from .threads import engine_threads, run_in_threads

__all__ = ["hadamard_gram_sums", "default_tile"]


@njit(nogil=True, cache=True)
def _combine(acc, P, Q, mode):
    """acc (b1, b2) <- P * Q (mode 0), acc + P * Q (1), P (2), acc + P (3)."""
    n_rows, n_cols = acc.shape
    if mode == 0:
        for i in range(n_rows):
            for j in range(n_cols):
                acc[i, j] = P[i, j] * Q[i, j]
    elif mode == 1:
        for i in range(n_rows):
            for j in range(n_cols):
                acc[i, j] += P[i, j] * Q[i, j]
    elif mode == 2:
        for i in range(n_rows):
            for j in range(n_cols):
                acc[i, j] = P[i, j]
    else:
        for i in range(n_rows):
            for j in range(n_cols):
                acc[i, j] += P[i, j]


@njit(nogil=True, cache=True)
def _store(K, acc, i0, j0, mirror):
    """K[i0:i0+b1, j0:j0+b2] <- acc and, if ``mirror``, K[j0:j0+b2, i0:i0+b1] <- acc^T
    (the transpose written in 32 x 32 blocks to stay cache-friendly)."""
    n_rows, n_cols = acc.shape
    for i in range(n_rows):
        for j in range(n_cols):
            K[i0 + i, j0 + j] = acc[i, j]
    if mirror:
        for jb in range(0, n_cols, 32):
            for ib in range(0, n_rows, 32):
                for j in range(jb, min(jb + 32, n_cols)):
                    for i in range(ib, min(ib + 32, n_rows)):
                        K[j0 + j, i0 + i] = acc[i, j]


def default_tile(N: int) -> int:
    """Tile side used when none is given: 256, or N when N is at most 384 (one tile)."""
    return N if N <= 384 else 256


def _contiguous(buffer: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """A C-contiguous (rows, cols) view on the start of a flat-able scratch buffer."""
    return buffer.reshape(-1)[: rows * cols].reshape(rows, cols)


def hadamard_gram_sums(terms: Sequence[tuple[np.ndarray, np.ndarray | None]],
                       groups: Sequence[Sequence[int]], *, tile: int | None = None,
                       threads: int | None = None,
                       out: Sequence[np.ndarray] | None = None) -> list[np.ndarray]:
    """``[S_g for g in groups]``, ``S_g = sum_{t in g} (A_t A_t^T) o (C_t C_t^T)``.

    ``terms``: list of ``(A_t, C_t)``, ``A_t`` (N, a_t), ``C_t`` (N, c_t) or ``None`` (all
    ones); every factor must be C-contiguous with the same dtype. ``groups``: lists of term
    indices. ``tile``: tile side (default :func:`default_tile`); ``threads``: threads (default
    :func:`harness.engine.threads.engine_threads`); ``out``: optional (N, N) output arrays.
    Returns one (N, N) symmetric array per group, in the factors' dtype.
    """
    if not terms:
        raise ValueError("no terms")
    N = terms[0][0].shape[0]
    dtype = terms[0][0].dtype
    factors = [m for t in terms for m in t if m is not None]
    for m in factors:
        if m.ndim != 2 or m.shape[0] != N:
            raise ValueError(f"every factor must be (N, k) with N = {N}, got {m.shape}")
        if m.dtype != dtype:
            raise ValueError(f"mixed dtypes {dtype} and {m.dtype}")
        if not m.flags.c_contiguous:
            raise ValueError("factors must be C-contiguous")
    groups = [list(g) for g in groups]
    for g in groups:
        if not g or any(not 0 <= t < len(terms) for t in g):
            raise ValueError(f"bad group {g} for {len(terms)} terms")
    used = sorted({t for g in groups for t in g}, key=lambda t: terms[t][1] is not None)
    b = int(tile) if tile else default_tile(N)
    b = max(1, min(b, N))
    outputs = list(out) if out is not None else [np.empty((N, N), dtype=dtype) for _ in groups]
    for o in outputs:
        if o.shape != (N, N) or o.dtype != dtype:
            raise ValueError(f"out arrays must be ({N}, {N}) {dtype}")
    n_tiles = -(-N // b)
    # off-diagonal tiles first (twice the work of a diagonal one), so the threads finish together
    items = [(i, j) for i in range(n_tiles) for j in range(i + 1, n_tiles)]
    items += [(i, i) for i in range(n_tiles)]
    group_of_term = {t: [k for k, g in enumerate(groups) if t in g] for t in used}
    first_term = {k: min(g, key=used.index) for k, g in enumerate(groups)}

    def make_state():
        return (np.empty(b * b, dtype=dtype), np.empty(b * b, dtype=dtype),
                [np.empty(b * b, dtype=dtype) for _ in groups])

    def work(state, item):
        i, j = item
        i0, j0 = i * b, j * b
        bi, bj = min(b, N - i0), min(b, N - j0)
        p_buf, q_buf, acc_bufs = state
        P, Q = _contiguous(p_buf, bi, bj), _contiguous(q_buf, bi, bj)
        accs = [_contiguous(a, bi, bj) for a in acc_bufs]
        for t in used:
            A, C = terms[t]
            np.matmul(A[i0:i0 + bi], A[j0:j0 + bj].T, out=P)
            if C is not None:
                np.matmul(C[i0:i0 + bi], C[j0:j0 + bj].T, out=Q)
            for k in group_of_term[t]:
                start = first_term[k] == t
                mode = (0 if start else 1) if C is not None else (2 if start else 3)
                _combine(accs[k], P, Q, mode)
        for k, acc in enumerate(accs):
            _store(outputs[k], acc, i0, j0, i != j)

    run_in_threads(work, items, engine_threads(threads), make_state)
    return outputs

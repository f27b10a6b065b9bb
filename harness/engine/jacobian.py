"""The explicit per-sample Jacobian J = d f / d theta of a bias-free fully-connected network.

``J`` has shape (N, P), P = sum_l n_l n_{l-1}; its columns follow ``theta`` = the weight
matrices ``W_1, ..., W_L`` flattened in row-major order and concatenated. Row ``i`` holds, for
every layer, the outer product ``B_l[i]^T F_{l-1}[i]`` of the sample's back-propagated signal
and its input activations (computed by the NumPy forward and backward passes of
:mod:`harness.engine.network`), written by a Numba kernel parallel over samples.

Memory is N x P floats, which is why :mod:`harness.engine.ntk` never forms it; this module is
the slow, obviously-correct path the tests and the speed benchmark compare against.
"""
from __future__ import annotations

from typing import Sequence

import numba
import numpy as np

from .network import backward_signals, forward
from .ntk import check_network

__all__ = ["jacobian", "jacobian_ntk", "parameter_offsets"]


@numba.njit(parallel=True, cache=True)
def _outer_rows(J, col0, B, F):
    """J[i, col0 + a * nf + c] = B[i, a] * F[i, c] for every sample i (row-major W_l)."""
    N, nb = B.shape
    nf = F.shape[1]
    for i in numba.prange(N):
        for a in range(nb):
            base = col0 + a * nf
            s = B[i, a]
            for c in range(nf):
                J[i, base + c] = s * F[i, c]


def parameter_offsets(weights: Sequence[np.ndarray]) -> list[int]:
    """Column offset of each layer's block in ``J`` (length L + 1; the last one is P)."""
    offsets = [0]
    for W in weights:
        offsets.append(offsets[-1] + int(np.prod(np.shape(W))))
    return offsets


def jacobian(weights: Sequence[np.ndarray], X: np.ndarray, activation,
             layers: Sequence[int] | None = None, dtype=np.float64) -> np.ndarray:
    """``J`` (N, P_layers): the columns of the 1-based ``layers`` (``None``: all), in order."""
    check_network(weights, X)
    dtype = np.dtype(dtype)
    Ws = [np.asarray(W, dtype=dtype) for W in weights]
    X = np.asarray(X, dtype=dtype)
    L = len(Ws)
    layers = list(range(1, L + 1)) if layers is None else sorted({int(l) for l in layers})
    fp = forward(Ws, X, activation)
    B = backward_signals(Ws, fp, activation)
    N = X.shape[0]
    sizes = [Ws[l - 1].size for l in layers]
    J = np.empty((N, int(sum(sizes))), dtype=dtype)
    col = 0
    for l, size in zip(layers, sizes):
        Bl = np.ascontiguousarray(np.broadcast_to(B[l - 1], (N, Ws[l - 1].shape[0])), dtype=dtype)
        _outer_rows(J, col, Bl, np.ascontiguousarray(fp.F[l - 1], dtype=dtype))
        col += size
    return J


def jacobian_ntk(weights: Sequence[np.ndarray], X: np.ndarray, activation,
                 layers: Sequence[int] | None = None, dtype=np.float64) -> np.ndarray:
    """``J J^T`` (N, N) from the explicit Jacobian of the given layers."""
    J = jacobian(weights, X, activation, layers, dtype)
    return J @ J.T

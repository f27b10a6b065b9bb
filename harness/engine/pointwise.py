"""Fused element-wise activation kernels (Numba) for the forward pass of the NTK engine.

One pass over a pre-activation matrix ``G`` (N, n) overwrites it with ``phi(G)`` and writes
``phi'(G)`` into ``D`` (N, n): one read, two writes and (for sigmoid and tanh) one exponential
per entry, where NumPy needs several passes and temporaries. The kernels are single-threaded
and release the GIL: callers thread over row blocks (see :mod:`harness.engine.ntk`).
:func:`outer_times` is the one-pass ``(r w^T) * M`` of a back-propagated output signal (used by
:mod:`harness.engine.gradients`).

A kernel is chosen by the activation's ``jit_code``. Because an activation plugin may declare a
``jit_code`` while computing something else (a parameter, a different convention at a kink),
:func:`fused_kernel` first checks the kernel against the plugin's own ``phi``/``dphi`` on a set
of probe points; on any disagreement it returns ``None`` and callers fall back to the NumPy
functions of the plugin.
"""
from __future__ import annotations

import math

import numpy as np

from .jit import njit

__all__ = ["fused_kernel", "phi_dphi_inplace", "outer_times", "KERNELS"]


@njit(nogil=True, cache=True)
def _sigmoid(G, D):
    n_rows, n_cols = G.shape
    for i in range(n_rows):
        for j in range(n_cols):
            x = G[i, j]
            e = math.exp(-abs(x))          # in (0, 1]: no overflow
            inv = 1.0 / (1.0 + e)
            G[i, j] = inv if x >= 0 else e * inv
            D[i, j] = e * inv * inv        # s(x) s(-x), no cancellation


@njit(nogil=True, cache=True)
def _tanh(G, D):
    n_rows, n_cols = G.shape
    for i in range(n_rows):
        for j in range(n_cols):
            x = G[i, j]
            e = math.exp(-2.0 * abs(x))
            inv = 1.0 / (1.0 + e)
            G[i, j] = math.tanh(x)
            D[i, j] = 4.0 * e * inv * inv  # 1 - tanh^2 = 4 s(2x) s(-2x)


@njit(nogil=True, cache=True)
def _relu(G, D):
    n_rows, n_cols = G.shape
    for i in range(n_rows):
        for j in range(n_cols):
            x = G[i, j]
            if x > 0:
                D[i, j] = 1.0
            else:
                G[i, j] = 0.0
                D[i, j] = 0.0


@njit(nogil=True, cache=True)
def _quadratic(G, D):
    n_rows, n_cols = G.shape
    for i in range(n_rows):
        for j in range(n_cols):
            x = G[i, j]
            G[i, j] = x * x
            D[i, j] = 2.0 * x


@njit(nogil=True, cache=True)
def _identity(G, D):
    n_rows, n_cols = G.shape
    for i in range(n_rows):
        for j in range(n_cols):
            D[i, j] = 1.0


KERNELS = {"sigmoid": _sigmoid, "tanh": _tanh, "relu": _relu, "quadratic": _quadratic,
           "identity": _identity}
"""Fused kernels by ``jit_code``: ``kernel(G, D)`` sets ``G <- phi(G)``, ``D <- phi'(G)``."""

_PROBE = np.concatenate([np.linspace(-40.0, 40.0, 81), np.linspace(-3.0, 3.0, 61),
                         [0.0, 1e-300, -1e-300, 1e-9, -1e-9, 700.0, -700.0]])
_checked: dict[tuple[type, str, str], bool] = {}


def fused_kernel(activation):
    """The fused kernel for ``activation`` (an Activation component), or ``None``.

    ``None`` when its ``jit_code`` is missing or unknown, or when the kernel disagrees with the
    plugin's ``phi``/``dphi`` on the probe points (relative 1e-12); the check runs once per
    activation class and configuration.
    """
    code = getattr(activation, "jit_code", None)
    kernel = KERNELS.get(code) if isinstance(code, str) else None
    if kernel is None:
        return None
    key = (type(activation), code, repr(getattr(activation, "config", None)))
    ok = _checked.get(key)
    if ok is None:
        ok = _agrees(kernel, activation)
        _checked[key] = ok
    return kernel if ok else None


def _agrees(kernel, activation) -> bool:
    x = _PROBE.reshape(1, -1)
    G, D = x.copy(), np.empty_like(x)
    kernel(G, D)
    try:
        phi = np.asarray(activation.phi(x), dtype=np.float64)
        dphi = np.asarray(activation.dphi(x), dtype=np.float64)
    except Exception:
        return False
    return bool(np.allclose(G, phi, rtol=1e-12, atol=1e-300)
                and np.allclose(D, dphi, rtol=1e-12, atol=1e-300))


def phi_dphi_inplace(G: np.ndarray, activation, D: np.ndarray | None = None) -> np.ndarray:
    """Overwrite ``G`` (N, n) with ``phi(G)`` and return ``phi'(G)`` (N, n, same dtype).

    Uses the fused kernel when :func:`fused_kernel` allows it (``G`` must then be C-contiguous),
    otherwise the plugin's NumPy ``phi`` and ``dphi``. ``D`` is an optional output buffer.
    """
    if D is None:
        D = np.empty_like(G)
    kernel = fused_kernel(activation)
    if kernel is not None and G.flags.c_contiguous and D.flags.c_contiguous and G.ndim == 2:
        kernel(G, D)
        return D
    D[...] = activation.dphi(G)
    G[...] = activation.phi(G)
    return D


@njit(nogil=True, cache=True)
def _outer_times(r, w, M, out):
    n_rows, n_cols = out.shape
    for i in range(n_rows):
        ri = r[i]
        for j in range(n_cols):
            out[i, j] = ri * w[j] * M[i, j]


def outer_times(r: np.ndarray, w: np.ndarray, M: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``out = (r w^T) * M`` in one pass: ``r`` (N,), ``w`` (n,), ``M`` and ``out`` (N, n);
    ``out`` may be ``M``. Returns ``out``."""
    _outer_times(r, w, M, out)
    return out

"""Theory-set gradient-descent steps: the largest NTK eigenvalue at initialisation and the
step rules built on it (:func:`ntk_smooth_step`) or on the network's sizes only
(:func:`paper_step`).

``K = sum_l K_l`` over the trainable layers, ``K_l = (F_{l-1} F_{l-1}^T) o (B_l B_l^T)`` (N, N)
(see :mod:`harness.engine.network`). Two ways to get ``lambda_max(K)``:

- ``"dense"``: build ``K`` with :func:`harness.engine.ntk.ntk_gram` and take its top eigenvalue
  (memory O(N^2); the choice for small N);
- ``"matvec"``: Lanczos (:func:`scipy.sparse.linalg.eigsh`) on ``v -> K v`` without forming
  ``K``: ``(K_l v)_i = F_{l-1}[i] M_l B_l[i]^T`` with ``M_l = F_{l-1}^T diag(v) B_l``
  (n_{l-1}, n_l), i.e. ``K_l v = rowsum((F_{l-1} M_l) o B_l)``: two matrix products per layer
  per product (memory O(N n)).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .network import backward_signals, forward

DENSE_MAX_ROWS = 2048
"""Above this many samples, ``"auto"`` uses the matrix-free solver."""


def ntk_matvec(F: Sequence[np.ndarray], B: Sequence[np.ndarray], layers: Sequence[int]):
    """``v (N,) -> K v (N,)`` for ``K = sum_{l in layers} (F_{l-1} F_{l-1}^T) o (B_l B_l^T)``.

    ``F = [F_0, ..., F_{L-1}]`` and ``B = [B_1, ..., B_L]`` as returned by
    :func:`~harness.engine.network.forward` / :func:`~harness.engine.network.backward_signals`;
    ``layers`` are 1-based layer numbers.
    """
    pairs = [(F[l - 1], B[l - 1]) for l in layers]

    def matvec(v: np.ndarray) -> np.ndarray:
        v = np.asarray(v).reshape(-1)
        out = np.zeros_like(v, dtype=np.result_type(v, F[0]))
        for Fl, Bl in pairs:
            M = Fl.T @ (Bl * v[:, None])             # (n_{l-1}, n_l)
            out += np.einsum("ij,ij->i", Fl @ M, Bl)  # rowsum((F M) o B)
        return out

    return matvec


def ntk_lambda_max(weights: Sequence[np.ndarray], X: np.ndarray, activation,
                   trainable: Sequence[bool] | None = None, method: str = "auto",
                   tol: float = 1e-8, network=None) -> float:
    """``lambda_max(K)`` of the NTK restricted to the trainable layers, at ``weights``.

    ``X`` (N, d); ``method`` is ``"dense"``, ``"matvec"`` or ``"auto"`` (dense up to
    :data:`DENSE_MAX_ROWS` samples); ``tol`` is the relative tolerance of the Lanczos solver.
    ``network``: the :class:`~harness.engine.network.Network` (biases, residual blocks) or
    :class:`~harness.engine.structured.GenericModel` the parameters ``weights`` belong to, if
    not a plain chain; ``trainable`` then has one flag per parameter (dense K always).
    """
    if network is not None and not getattr(network, "plain", False):
        params = [p for p, t in enumerate(trainable or [True] * len(weights)) if t]
        if not params:
            raise ValueError("no trainable parameter: the NTK is zero")
        from .network import Network

        if isinstance(network, Network):
            from .ntk import network_kernels

            K = network_kernels(network, weights, X, activation, {"K": params})["K"]
        else:
            from .generic import generic_kernels

            K = generic_kernels(network.forward, weights, X, activation, {"K": params})["K"]
        if X.shape[0] <= SMALL_ROWS:
            return float(np.linalg.eigvalsh(K)[-1])
        return _top_eigenvalue(K, X.shape[0], tol)
    L = len(weights)
    layers = [l + 1 for l in range(L) if trainable is None or trainable[l]]
    if not layers:
        raise ValueError("no trainable layer: the NTK is zero")
    N = X.shape[0]
    if method == "auto":
        method = "dense" if N <= DENSE_MAX_ROWS else "matvec"
    if method == "dense":
        from .ntk import ntk_gram

        K = ntk_gram(weights, X, activation, layers=layers, dtype=np.float64)
        if N <= SMALL_ROWS:
            return float(np.linalg.eigvalsh(K)[-1])
        return _top_eigenvalue(K, N, tol)
    if method == "matvec":
        from scipy.sparse.linalg import LinearOperator

        fp = forward(weights, X, activation)
        B = backward_signals(weights, fp, activation)
        op = LinearOperator((N, N), matvec=ntk_matvec(fp.F, B, layers), dtype=np.float64)
        return _top_eigenvalue(op, N, tol)
    raise ValueError(f"unknown method {method!r}; expected 'auto', 'dense' or 'matvec'")


SMALL_ROWS = 64
"""Up to this many samples the dense spectrum is computed in full."""


def _top_eigenvalue(op, N: int, tol: float) -> float:
    """Lanczos for the largest eigenvalue of a symmetric PSD operator (N >= 2). (LAPACK's
    subset eigen-solvers can be very slow on the NTK's cluster of tiny eigenvalues.)"""
    from scipy.sparse.linalg import eigsh

    v0 = np.ones(N) / np.sqrt(N)  # deterministic start; K's top direction is rarely orthogonal
    return float(eigsh(op, k=1, which="LA", tol=tol, v0=v0, return_eigenvectors=False)[0])


def ntk_smooth_step(N: int, lambda_max: float, curvature: float, c: float = 1.0) -> float:
    """Rule ``ntk_smooth``: ``eta = c N / (curvature lambda_max(K(theta_0)))``, one over the
    smoothness ``curvature lambda_max(K) / N`` of the mean loss of the linearised model."""
    return float(c * N / (curvature * lambda_max))


def paper_step(N: int, d: int, n: int, gamma: float, C: float, c: float = 1.0) -> float:
    """Rule ``paper``: ``eta = c C (gamma N d n)^{-1}`` with ``n = n_{L-1}`` the last hidden width.

    The form of the step in Bombari, Amani and Mondelli's (2022) gradient-descent theorem,
    ``eta <= C (gamma N d n_{L-1})^{-1}``, with ``gamma`` the scale of their initialisation
    (eq. (18)) and ``C`` an unspecified constant. *Reconstruction*: eq. (18) itself is not
    available to us and is not reproduced (the networks here use the standard initialisation),
    so ``gamma`` and ``C`` are free inputs; ``c`` (default 1) is the common multiplier of every
    ``gd_theory`` rule.
    """
    for name, v in (("N", N), ("d", d), ("n", n), ("gamma", gamma), ("C", C), ("c", c)):
        if not (v > 0 and np.isfinite(v)):
            raise ValueError(f"paper step: {name} = {v} must be finite and > 0")
    return float(c * C / (gamma * N * d * n))

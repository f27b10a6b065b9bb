"""Loss gradients of a bias-free fully-connected network in its trainable weights.

The gradient is the NTK engine's quantities contracted with the loss residual: with the forward
activations ``F_l`` and the back-propagated signals ``B_l`` of :mod:`harness.engine.network`,
``dLoss/dW_l = (B_l * r)^T F_{l-1}`` where ``r = dLoss/df`` (N,). Because ``B_l`` is linear in
``B_L``, back-propagating ``r`` instead of ``1`` gives ``D_l = B_l * r`` directly:
``D_L = r`` (N, 1), ``D_l = phi'(G_l) * (D_{l+1} W_{l+1})`` (N, n_l), ``grad_l = D_l^T F_{l-1}``
(n_l, n_{l-1}).

Two implementations with one contract:

- :func:`loss_and_gradients`: the reference, written with
  :func:`~harness.engine.network.forward`, :func:`~harness.engine.network.backward_signals` and
  :func:`~harness.engine.network.weight_gradients`;
- :class:`GradientEngine`: the fast path used for training. Matrix products go to BLAS into
  preallocated buffers; the element-wise work (``phi`` in place, ``D *= phi'``, the rank-one
  output signal ``r w_L * phi'``) runs in fused Numba kernels for the built-in activations
  (``Activation.jit_code``), computing ``phi'`` from the stored activations ``F`` where possible
  (ReLU: ``F > 0``; sigmoid: ``F (1 - F)``; tanh: ``1 - F^2``) so that ``G`` is not kept. Other
  activations use their NumPy ``phi`` / ``dphi``. Signals are not propagated below the lowest
  trainable layer, and frozen layers get ``None``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from numba import njit

from .network import backward_signals, forward, weight_gradients

# Activation codes of the fused kernels (Activation.jit_code -> int).
IDENTITY, RELU, SIGMOID, TANH, QUADRATIC = 0, 1, 2, 3, 4
JIT_CODES = {"identity": IDENTITY, "relu": RELU, "sigmoid": SIGMOID, "tanh": TANH,
             "quadratic": QUADRATIC}
_NEEDS_G = {QUADRATIC}
"""Codes whose derivative cannot be recovered from ``F = phi(G)`` (so ``G`` is kept)."""


@dataclass
class GradientResult:
    """``loss`` (float), ``output`` f (N,) and ``grads``: one array per layer, shaped like the
    weights, ``None`` for a frozen layer."""

    loss: float
    output: np.ndarray
    grads: list[np.ndarray | None]


def loss_and_gradients(weights: Sequence[np.ndarray], X: np.ndarray, y: np.ndarray, activation,
                       loss, trainable: Sequence[bool] | None = None) -> GradientResult:
    """Reference loss and gradient through the NTK engine's ``F`` and ``B``.

    ``weights`` ``[W_1 (n_1, d), ..., W_L (1, n_{L-1})]``, ``X`` (N, d), ``y`` (N,); ``loss`` is a
    Loss component (``grad`` already carries the 1/N of the mean).
    """
    fp = forward(weights, X, activation)
    r = np.asarray(loss.grad(fp.output, y))
    B = backward_signals(weights, fp, activation)
    grads = weight_gradients(weights, fp, B, r, trainable)
    return GradientResult(float(loss.value(fp.output, y)), fp.output, grads)


# --------------------------------------------------------------------------------------------
# Fused element-wise kernels (serial: on a few cores the BLAS threads would otherwise compete).

@njit(cache=True)
def _phi_into(G, F, code):
    """``F = phi(G)`` row by row; ``F`` may be ``G`` (in place). Shapes (N, n)."""
    N, n = G.shape
    if code == IDENTITY:
        for i in range(N):
            for j in range(n):
                F[i, j] = G[i, j]
    elif code == RELU:
        for i in range(N):
            for j in range(n):
                g = G[i, j]
                F[i, j] = g if g > 0.0 else 0.0
    elif code == SIGMOID:
        for i in range(N):
            for j in range(n):
                F[i, j] = 1.0 / (1.0 + np.exp(-G[i, j]))
    elif code == TANH:
        for i in range(N):
            for j in range(n):
                F[i, j] = np.tanh(G[i, j])
    else:  # QUADRATIC
        for i in range(N):
            for j in range(n):
                g = G[i, j]
                F[i, j] = g * g


@njit(cache=True)
def _dphi_at(f, g, code):
    """``phi'`` at one entry, from ``f = phi(g)`` (or ``g`` for the quadratic)."""
    if code == RELU:
        return 1.0 if f > 0.0 else 0.0
    if code == SIGMOID:
        return f * (1.0 - f)
    if code == TANH:
        return 1.0 - f * f
    if code == QUADRATIC:
        return 2.0 * g
    return 1.0


@njit(cache=True)
def _mul_dphi(D, F, G, code):
    """``D *= phi'(G)`` in place, reading ``F`` (and ``G`` for the quadratic). Shapes (N, n)."""
    N, n = D.shape
    if code == IDENTITY:
        return
    if code == RELU:
        for i in range(N):
            for j in range(n):
                if F[i, j] <= 0.0:
                    D[i, j] = 0.0
        return
    for i in range(N):
        for j in range(n):
            D[i, j] *= _dphi_at(F[i, j], G[i, j], code)


@njit(cache=True)
def _outer_dphi(r, w, F, G, D, code):
    """``D = (r w^T) * phi'(G)``: the output layer's signal, ``r`` (N,), ``w`` (n,), D (N, n)."""
    N, n = D.shape
    for i in range(N):
        ri = r[i]
        for j in range(n):
            D[i, j] = ri * w[j] * _dphi_at(F[i, j], G[i, j], code)


_PROBE = np.array([-30.0, -3.0, -1.0, -0.25, 0.0, 0.25, 1.0, 3.0, 30.0])


@njit(cache=True)
def _probe_kernels(x, code):
    """``phi(x)`` and ``phi'(x)`` as the fused kernels compute them, for the probe check."""
    F = np.empty((1, x.size))
    G = np.empty((1, x.size))
    G[0, :] = x
    _phi_into(G, F, code)
    D = np.ones((1, x.size))
    _mul_dphi(D, F, G, code)
    return F[0], D[0]


def fused_code(activation) -> int | None:
    """The fused-kernel code for ``activation``, or ``None`` (use its NumPy phi / dphi).

    A declared ``jit_code`` is trusted only if the kernels reproduce the plugin's own ``phi``
    and ``dphi`` on probe points (a plugin may reuse a name with another convention)."""
    code = JIT_CODES.get(getattr(activation, "jit_code", None) or "")
    if code is None:
        return None
    phi, dphi = _probe_kernels(_PROBE, code)
    try:
        ok = (np.allclose(phi, activation.phi(_PROBE), rtol=1e-12, atol=1e-14)
              and np.allclose(dphi, activation.dphi(_PROBE), rtol=1e-9, atol=1e-13))
    except Exception:
        ok = False
    return code if ok else None


# --------------------------------------------------------------------------------------------


class GradientEngine:
    """Fast loss-and-gradient evaluator for one network shape, with reusable buffers.

    ``shapes`` ``[(n_1, d), ..., (1, n_{L-1})]`` as in ``Architecture.layer_shapes``;
    ``trainable`` one bool per layer (default all); ``max_rows`` the largest N it will see
    (buffers grow on demand when omitted). The arrays returned by :meth:`loss_and_grads` are
    the engine's buffers: they are overwritten by the next call.
    """

    def __init__(self, shapes: Sequence[tuple[int, int]], activation,
                 trainable: Sequence[bool] | None = None, dtype=np.float64,
                 max_rows: int | None = None) -> None:
        self.shapes = [(int(a), int(b)) for a, b in shapes]
        if self.shapes[-1][0] != 1:
            raise ValueError(f"the output layer must have one unit, got shape {self.shapes[-1]}")
        self.L = len(self.shapes)
        self.activation = activation
        self.trainable = list(trainable) if trainable is not None else [True] * self.L
        if len(self.trainable) != self.L:
            raise ValueError("trainable must give one flag per layer")
        self.dtype = np.dtype(dtype)
        self.code = fused_code(activation)
        self.keep_G = self.code is None or self.code in _NEEDS_G
        trainable_idx = [l for l, t in enumerate(self.trainable) if t]
        self.lowest = min(trainable_idx) if trainable_idx else self.L
        self.grads = [np.empty(s, dtype=self.dtype) if t else None
                      for s, t in zip(self.shapes, self.trainable)]
        self._rows = 0
        self._alloc(int(max_rows or 0))

    def _alloc(self, rows: int) -> None:
        if rows <= self._rows:
            return
        hidden = [n for n, _ in self.shapes[:-1]]
        self.F = [np.empty((rows, n), dtype=self.dtype) for n in hidden]
        self.G = [np.empty((rows, n), dtype=self.dtype) for n in hidden] if self.keep_G else self.F
        self.D = [np.empty((rows, n), dtype=self.dtype) for n in hidden]
        self._rows = rows

    # forward --------------------------------------------------------------------------------
    def _forward(self, weights: Sequence[np.ndarray], X: np.ndarray) -> tuple[list, list, np.ndarray]:
        n = X.shape[0]
        self._alloc(n)
        F = [X] + [f[:n] for f in self.F]
        G = [None] + [g[:n] for g in self.G]
        for l in range(self.L - 1):
            np.matmul(F[l], weights[l].T, out=G[l + 1])
            if self.code is not None:
                _phi_into(G[l + 1], F[l + 1], self.code)
            else:
                F[l + 1][...] = self.activation.phi(G[l + 1])
        out = F[-1] @ weights[-1][0]
        return F, G, out

    def predict(self, weights: Sequence[np.ndarray], X: np.ndarray) -> np.ndarray:
        """Network output f (N,) (a fresh array)."""
        return np.array(self._forward(weights, X)[2])

    # gradient -------------------------------------------------------------------------------
    def loss_and_grads(self, weights: Sequence[np.ndarray], X: np.ndarray, y: np.ndarray,
                       loss) -> GradientResult:
        """Mean loss at ``weights`` on ``(X (N, d), y (N,))`` and its gradient in every
        trainable layer (``None`` for frozen layers)."""
        F, G, out = self._forward(weights, X)
        r = np.ascontiguousarray(loss.grad(out, y), dtype=self.dtype)
        value = float(loss.value(out, y))
        L, n = self.L, X.shape[0]
        if self.trainable[L - 1]:
            np.matmul(r, F[L - 1], out=self.grads[L - 1][0])
        if self.lowest < L - 1:
            D = self.D[L - 2][:n]
            w = np.ascontiguousarray(weights[L - 1][0])
            if self.code is not None:
                _outer_dphi(r, w, F[L - 1], G[L - 1], D, self.code)
            else:
                np.multiply(np.multiply.outer(r, w), self.activation.dphi(G[L - 1]), out=D)
            for l in range(L - 2, self.lowest - 1, -1):  # 0-based layer l has signal D_l
                D = self.D[l][:n]
                if self.trainable[l]:
                    np.matmul(D.T, F[l], out=self.grads[l])
                if l > self.lowest:
                    Dn = self.D[l - 1][:n]
                    np.matmul(D, weights[l], out=Dn)
                    if self.code is not None:
                        _mul_dphi(Dn, F[l], G[l], self.code)
                    else:
                        Dn *= self.activation.dphi(G[l])
        return GradientResult(value, out, list(self.grads))

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
  preallocated buffers; the element-wise work goes through
  :func:`harness.engine.pointwise.phi_dphi_inplace`, the fused kernels shared with the NTK
  engine (the plugin's NumPy ``phi`` / ``dphi`` for activations without a trusted kernel): each
  forward layer overwrites its pre-activation buffer with ``F_l = phi(G_l)`` and stores
  ``phi'(G_l)``. The backward pass multiplies the signals by the stored derivatives into
  preallocated buffers (``D_{L-1} = (r w_L^T) * phi'(G_{L-1})`` in one pass with
  :func:`~harness.engine.pointwise.outer_times`, then ``D_l = (D_{l+1} W_{l+1}) * phi'(G_l)``
  in place). Signals are not propagated below the lowest trainable layer, and frozen layers get
  ``None``. For the mean squared error with a fused activation (below
  :data:`harness.engine.chain_kernels.MAX_FLOPS` per evaluation) the whole evaluation is one
  compiled call instead:
  :class:`harness.engine.chain_kernels.FusedEvaluator` on a stack of one network, the kernel the
  batched path (:mod:`harness.engine.batched_training`) runs on stacks of many, so that both
  give the same numbers to the last bit.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .network import backward_signals, forward, weight_gradients
from .pointwise import fused_kernel, outer_times, phi_dphi_inplace
from .problem import GradientResult

__all__ = ["GradientResult", "loss_and_gradients", "GradientEngine"]


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
        # jit_code of the fused kernel in use, or None (the plugin's NumPy phi / dphi)
        self.code = activation.jit_code if fused_kernel(activation) is not None else None
        trainable_idx = [l for l, t in enumerate(self.trainable) if t]
        self.lowest = min(trainable_idx) if trainable_idx else self.L
        self.grads = [np.empty(s, dtype=self.dtype) if t else None
                      for s, t in zip(self.shapes, self.trainable)]
        self._rows = 0
        self._alloc(int(max_rows or 0))
        self._fused: Any = None  # the kernel's EvaluatorCache, made on first use

    def _alloc(self, rows: int) -> None:
        if rows <= self._rows:
            return
        hidden = [n for n, _ in self.shapes[:-1]]
        self.F = [np.empty((rows, n), dtype=self.dtype) for n in hidden]   # G_l, then phi(G_l)
        self.P = [np.empty((rows, n), dtype=self.dtype) for n in hidden]   # phi'(G_l)
        self.D = [np.empty((rows, n), dtype=self.dtype) for n in hidden]   # signals D_l
        self._rows = rows

    # forward --------------------------------------------------------------------------------
    def _forward(self, weights: Sequence[np.ndarray], X: np.ndarray) -> tuple[list, list, np.ndarray]:
        """``F = [X, F_1, ..., F_{L-1}]``, ``P = [None, phi'(G_1), ...]`` (views of the buffers)
        and the output f (N,)."""
        n = X.shape[0]
        self._alloc(n)
        F = [X] + [f[:n] for f in self.F]
        P = [None] + [p[:n] for p in self.P]
        for l in range(self.L - 1):
            np.matmul(F[l], weights[l].T, out=F[l + 1])
            phi_dphi_inplace(F[l + 1], self.activation, P[l + 1])
        out = F[-1] @ weights[-1][0]
        return F, P, out

    def predict(self, weights: Sequence[np.ndarray], X: np.ndarray) -> np.ndarray:
        """Network output f (N,) (a fresh array)."""
        return np.array(self._forward(weights, X)[2])

    def fused_evaluator(self, loss, rows: int):
        """The compiled evaluator (:mod:`harness.engine.chain_kernels`) for ``loss`` on ``rows``
        samples, or ``None`` where the NumPy path runs (no fused activation or loss, or at least
        :data:`~harness.engine.chain_kernels.MAX_FLOPS` per evaluation)."""
        if self.code is None:
            return None
        if self._fused is None:
            from .chain_kernels import EvaluatorCache

            self._fused = EvaluatorCache(self.shapes, self.activation, self.trainable, self.dtype)
        return self._fused.get(loss, rows)

    # gradient -------------------------------------------------------------------------------
    def loss_and_grads(self, weights: Sequence[np.ndarray], X: np.ndarray, y: np.ndarray,
                       loss) -> GradientResult:
        """Mean loss at ``weights`` on ``(X (N, d), y (N,))`` and its gradient in every
        trainable layer (``None`` for frozen layers)."""
        fused = self.fused_evaluator(loss, X.shape[0])
        if fused is not None:
            values, out = fused.evaluate([np.ascontiguousarray(W, dtype=self.dtype)[None] for W in weights],
                                         np.asarray(X)[None], np.asarray(y)[None],
                                         [None if g is None else g[None] for g in self.grads], 1)
            return GradientResult(float(values[0]), out[0], list(self.grads))
        F, P, out = self._forward(weights, X)
        r = np.ascontiguousarray(loss.grad(out, y), dtype=self.dtype)
        value = float(loss.value(out, y))
        L, n = self.L, X.shape[0]
        if self.trainable[L - 1]:
            np.matmul(r, F[L - 1], out=self.grads[L - 1][0])
        if self.lowest < L - 1:
            D = self.D[L - 2][:n]
            outer_times(r, weights[L - 1][0], P[L - 1], out=D)  # (r w_L^T) * phi'(G_{L-1})
            for l in range(L - 2, self.lowest - 1, -1):  # 0-based layer l has signal D_l
                D = self.D[l][:n]
                if self.trainable[l]:
                    np.matmul(D.T, F[l], out=self.grads[l])
                if l > self.lowest:
                    Dn = self.D[l - 1][:n]
                    np.matmul(D, weights[l], out=Dn)
                    Dn *= P[l]
        return GradientResult(value, out, list(self.grads))

"""Loss and gradients of a stack of bias-free chains of one shape, in float64 or float32.

The weights of layer l of R networks are stacked as one array ``(R, n_l, n_{l-1})``, the data as
``X (R, rows, d)``, ``y (R, rows)``; :class:`StackedGradientEngine` evaluates the losses and the
gradients of the first ``k`` members in one call:

- for the mean squared error with a fused activation (the memorisation studies), through the
  compiled kernel of :mod:`harness.engine.chain_kernels` (one call for the whole stack; the
  single-network :class:`~harness.engine.gradients.GradientEngine` runs the same kernel on a
  stack of one, so both make the same BLAS calls on the same numbers);
- otherwise as batched matrix products (``np.matmul`` on blocks of members, one call per block,
  layer and direction: NumPy hands each member to BLAS with exactly the call the
  single-network path makes, so the results are the same to the last bit), the element-wise work
  as fused Numba kernels over the stack (:mod:`harness.engine.pointwise`,
  :func:`outer_times_stack`) and the loss through the Loss component member by member.

Every array keeps the stack's dtype (the engine's ``dtype``): float32 stacks run SGEMM.
:mod:`harness.engine.batched_training` trains stacks with it.
"""
from __future__ import annotations

from typing import Any, Sequence

import numba
import numpy as np

from .pointwise import phi_dphi_inplace

__all__ = ["CACHE_BYTES", "StackedGradientEngine", "outer_times_stack"]


@numba.njit(nogil=True, cache=True)
def _outer_times_stack(r, w, M, out):
    R, n_rows, n_cols = out.shape
    for k in range(R):
        for i in range(n_rows):
            ri = r[k, i]
            for j in range(n_cols):
                out[k, i, j] = ri * w[k, j] * M[k, i, j]


def outer_times_stack(r: np.ndarray, w: np.ndarray, M: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``out[k] = (r[k] w[k]^T) * M[k]`` for every member k: ``r`` (R, N), ``w`` (R, n), ``M`` and
    ``out`` (R, N, n) (the stacked :func:`harness.engine.pointwise.outer_times`)."""
    _outer_times_stack(r, w, M, out)
    return out


CACHE_BYTES = 2 ** 19
"""The activations, derivatives and signals of one block of members should fit in this many
bytes (about half of a core's L2 cache): the members are processed in blocks of
``max(1, CACHE_BYTES // (3 rows sum(n_l) itemsize))``, a whole block per call (the measurement
behind the size: docs/engine.md)."""


class StackedGradientEngine:
    """Loss and gradients of up to ``members`` networks of one shape at once.

    ``shapes`` ``[(n_1, d), ..., (1, n_{L-1})]``. The members go through the products in blocks
    of ``block`` (default from :data:`CACHE_BYTES`), each block one batched product per layer and
    direction; buffers ``(block, rows, n_l)`` are made per row count on first use (full batch:
    N; mini-batch: the batch size and the last, smaller batch) and reused by every block, so
    they stay in cache. :meth:`loss_and_grads` returns the engine's buffers (overwritten by the
    next call).
    """

    def __init__(self, shapes: Sequence[tuple[int, int]], activation, members: int,
                 trainable: Sequence[bool] | None = None, dtype=np.float64,
                 block: int | None = None, rows: int | None = None) -> None:
        self.shapes = [(int(a), int(b)) for a, b in shapes]
        if self.shapes[-1][0] != 1:
            raise ValueError(f"the output layer must have one unit, got shape {self.shapes[-1]}")
        self.L = len(self.shapes)
        self.activation = activation
        self.trainable = list(trainable) if trainable is not None else [True] * self.L
        self.dtype = np.dtype(dtype)
        self.members = int(members)
        if block is None:
            per_member = 3 * max(1, int(rows or 1)) * sum(n for n, _ in self.shapes[:-1]) * self.dtype.itemsize
            block = CACHE_BYTES // max(1, per_member)
        self.block = max(1, min(self.members, int(block)))
        idx = [l for l, t in enumerate(self.trainable) if t]
        self.lowest = min(idx) if idx else self.L
        self.grads = [np.empty((self.members, *s), dtype=self.dtype) if t else None
                      for s, t in zip(self.shapes, self.trainable)]
        self._bufs: dict[int, dict] = {}
        self._fused: Any = None  # the kernel's EvaluatorCache, made on first use

    def _buffers(self, rows: int) -> dict:
        b = self._bufs.get(rows)
        if b is None:
            R, hidden = self.block, [n for n, _ in self.shapes[:-1]]
            b = {"F": [np.empty((R, rows, n), dtype=self.dtype) for n in hidden],
                 "P": [np.empty((R, rows, n), dtype=self.dtype) for n in hidden],
                 "D": [np.empty((R, rows, n), dtype=self.dtype) for n in hidden],
                 "out": np.empty((R, rows, 1), dtype=self.dtype),
                 "r": np.empty((R, 1, rows), dtype=self.dtype)}
            self._bufs[rows] = b
        return b

    def forward(self, W: Sequence[np.ndarray], X: np.ndarray, k: int):
        """Forward pass of the first ``k <= block`` members on ``X`` (k, rows, d): ``(F, P,
        out)`` with ``F = [X, F_1, ..]`` and ``out`` (k, rows) (views of the buffers)."""
        rows = X.shape[1]
        b = self._buffers(rows)
        F = [X] + [f[:k] for f in b["F"]]
        P = [None] + [p[:k] for p in b["P"]]
        for l in range(self.L - 1):
            np.matmul(F[l], W[l][:k].transpose(0, 2, 1), out=F[l + 1])
            G = F[l + 1].reshape(-1, F[l + 1].shape[2])
            phi_dphi_inplace(G, self.activation, P[l + 1].reshape(G.shape))
        out = b["out"][:k]
        np.matmul(F[-1], W[-1][:k].transpose(0, 2, 1), out=out)
        return F, P, out[:, :, 0]

    def loss_and_grads(self, W: Sequence[np.ndarray], X: np.ndarray, y: np.ndarray, loss,
                       k: int) -> tuple[list[float], list]:
        """Losses (k floats) and gradients (per layer (k, n_l, n_{l-1}) or ``None``) of the
        first ``k`` members on ``X`` (k, rows, d), ``y`` (k, rows)."""
        fused = self.fused_evaluator(loss, X.shape[1])
        if fused is not None:
            values_, _ = fused.evaluate(W, X, y, self.grads, k)
            return values_.tolist(), [None if g is None else g[:k] for g in self.grads]
        values: list[float] = []
        for a in range(0, k, self.block):
            e = min(k, a + self.block)
            values += self._block([w[a:e] for w in W], X[a:e], y[a:e], loss, e - a,
                                  [None if g is None else g[a:e] for g in self.grads])
        return values, [None if g is None else g[:k] for g in self.grads]

    def fused_evaluator(self, loss, rows: int):
        """The compiled evaluator of :mod:`harness.engine.chain_kernels` (one call for the
        whole stack), under the same conditions as
        :meth:`harness.engine.gradients.GradientEngine.fused_evaluator`, or ``None``."""
        if self._fused is None:
            from .chain_kernels import EvaluatorCache

            self._fused = EvaluatorCache(self.shapes, self.activation, self.trainable, self.dtype)
        return self._fused.get(loss, rows)

    def _block(self, W, X, y, loss, k: int, grads) -> list[float]:
        F, P, out = self.forward(W, X, k)
        rows = X.shape[1]
        b = self._buffers(rows)
        r = b["r"][:k]
        values = []
        for i in range(k):  # the Loss component, member by member: the single path's calls
            r[i, 0] = loss.grad(out[i], y[i])
            values.append(float(loss.value(out[i], y[i])))
        L = self.L
        if self.trainable[L - 1]:
            np.matmul(r, F[L - 1], out=grads[L - 1])
        if self.lowest < L - 1:
            D = b["D"][L - 2][:k]
            outer_times_stack(r[:, 0, :], W[L - 1][:k, 0, :], P[L - 1], D)
            for l in range(L - 2, self.lowest - 1, -1):
                D = b["D"][l][:k]
                if self.trainable[l]:
                    np.matmul(D.transpose(0, 2, 1), F[l], out=grads[l])
                if l > self.lowest:
                    Dn = b["D"][l - 1][:k]
                    np.matmul(D, W[l][:k], out=Dn)
                    Dn *= P[l]
        return values

"""Loss gradients of a general :class:`~harness.engine.network.Network` (biases, residual
blocks, per-layer activations), for one network or a stack of networks of one shape.

The same contraction as :mod:`harness.engine.gradients`: the residual ``r = dLoss/df`` is
back-propagated instead of 1, ``D_l = B_l o r``; ``dLoss/dW_l = D_l^T H_{l-1}``,
``dLoss/db_l = D_l^T 1``. The signal through the states is ``S_{L-1} = r w_L^T``,
``D_l = S_l o phi_l'(g_l)`` (times ``alpha_l`` in a residual block) and
``S_{l-1} = D_l W_l`` (plus ``S_l`` through a residual block).

Every array may carry leading member axes: weights ``(R, n, m)``, biases ``(R, n, 1)``, ``X``
``(R, rows, d)``, so one class serves :func:`harness.engine.training.train` (no member axis) and
:mod:`harness.engine.batched_training` (a stack), with the same BLAS calls per member. The
element-wise activation work goes through :func:`harness.engine.pointwise.phi_dphi_inplace`
(fused kernels when the activation has a trusted one). A plain network (bias-free chain) keeps
using :class:`~harness.engine.gradients.GradientEngine` (:func:`make_gradient_engine`).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .gradients import GradientEngine
from .network import Network
from .pointwise import phi_dphi_inplace
from .problem import GradientResult

__all__ = ["NetworkGradientEngine", "make_gradient_engine", "make_stacked_engine"]


def _T(A: np.ndarray) -> np.ndarray:
    return np.swapaxes(A, -1, -2)


class NetworkGradientEngine:
    """Loss and gradients of the network ``net`` (one, or a stack along leading axes).

    ``trainable``: one flag per *parameter* (default: the network's). :meth:`loss_and_grads`
    returns fresh arrays.
    """

    def __init__(self, net, activation, trainable: Sequence[bool] | None = None,
                 dtype=np.float64, max_rows: int | None = None) -> None:
        self.net = net
        self.activation = activation
        self.acts = net.activations(activation)
        self.trainable = list(trainable) if trainable is not None else net.parameter_trainable()
        if len(self.trainable) != net.n_params:
            raise ValueError(f"trainable must give one flag per parameter ({net.n_params})")
        self.dtype = np.dtype(dtype)
        layer_of = net.parameter_layers()
        wanted = [layer_of[p] for p, t in enumerate(self.trainable) if t]
        self.lowest = min(wanted) if wanted else net.L + 1  # 1-based lowest layer with a gradient
        self.shapes = net.parameter_shapes()

    def _forward(self, params, X):
        net = self.net
        Ws, bs = net.split(params)
        H, P = [X], [None]
        h = X
        for l, layer in enumerate(net.layers[:-1]):
            g = np.matmul(h, _T(Ws[l]))
            if bs[l] is not None:
                g += _T(bs[l])
            p = np.empty_like(g)
            n = g.shape[-1]
            phi_dphi_inplace(g.reshape(-1, n), self.acts[l], p.reshape(-1, n))
            if layer.residual:
                g *= layer.alpha
                g += h
                p *= layer.alpha
            H.append(g)
            P.append(p)
            h = g
        out = np.matmul(h, _T(Ws[-1]))[..., 0]
        if bs[-1] is not None:
            out += bs[-1][..., 0, :]
        return H, P, out

    def predict(self, params: Sequence[np.ndarray], X: np.ndarray) -> np.ndarray:
        return self._forward(params, X)[2]

    def grads_from_residual(self, params, H, P, r) -> list[np.ndarray | None]:
        """Gradients of ``sum_i r_i f_i`` given the forward's ``H``, ``P`` and ``r`` (..., rows)."""
        net = self.net
        Ws, _ = net.split(params)
        L = net.L
        grads: list[np.ndarray | None] = [None] * net.n_params
        r2 = r[..., None, :]                       # (..., 1, rows)
        D = None
        S = None
        for l in range(L, self.lowest - 1, -1):    # 1-based layer l
            if l == L:
                D = r[..., :, None]                # (..., rows, 1): D_L = r
            else:
                D = S * P[l]
            wi, bi = net.weight_index[l - 1], net.bias_index[l - 1]
            if self.trainable[wi]:
                grads[wi] = r2 @ H[l - 1] if l == L else np.matmul(_T(D), H[l - 1])
            if bi is not None and self.trainable[bi]:
                grads[bi] = (np.sum(r, axis=-1)[..., None, None] if l == L
                             else np.sum(D, axis=-2)[..., :, None])
            if l > self.lowest:
                S_new = np.matmul(D, Ws[l - 1])    # (..., rows, n_{l-1}) = S_{l-1} (without skip)
                if l < L and net.layers[l - 1].residual:
                    S_new += S
                S = S_new
        return grads

    def loss_and_grads(self, params: Sequence[np.ndarray], X: np.ndarray, y: np.ndarray, loss):
        H, P, out = self._forward(params, X)
        r = np.ascontiguousarray(loss.grad(out, y), dtype=self.dtype)
        grads = self.grads_from_residual(params, H, P, r)
        return GradientResult(float(loss.value(out, y)), out, grads)

    def stack_loss_and_grads(self, params, X, y, loss, k: int):
        """The stacked contract of :class:`harness.engine.stacked_gradients.StackedGradientEngine`:
        losses (k floats) and gradients (per parameter, leading axis k) of the first ``k``
        members, the Loss component called member by member."""
        params = [p[:k] for p in params]
        H, P, out = self._forward(params, X[:k])
        r = np.empty_like(out)
        values = []
        for i in range(k):
            r[i] = loss.grad(out[i], y[i])
            values.append(float(loss.value(out[i], y[i])))
        return values, self.grads_from_residual(params, H, P, r)


def make_gradient_engine(model, activation, trainable=None, dtype=np.float64, max_rows=None,
                         backend=None, shapes=None):
    """The loss-and-gradient evaluator for ``model``: ``None`` or a plain
    :class:`~harness.engine.network.Network` -> the backend's (default: the CPU
    :class:`~harness.engine.gradients.GradientEngine`) for ``shapes``; a general Network ->
    :class:`NetworkGradientEngine`; a :class:`GenericModel` -> the autograd engine."""
    if isinstance(model, GenericModel):
        from .generic import GenericGradientEngine

        return GenericGradientEngine(model.forward, activation, trainable, dtype)
    if isinstance(model, Network) and not model.plain:
        return NetworkGradientEngine(model, activation, trainable, dtype, max_rows)
    if shapes is None:
        shapes = model.layer_shapes()
    if backend is not None:
        return backend.gradient_engine(shapes, activation, trainable, dtype=dtype, max_rows=max_rows)
    return GradientEngine(shapes, activation, trainable, dtype=dtype, max_rows=max_rows)


def make_stacked_engine(model, shapes, activation, members, trainable, dtype, rows):
    """The stacked evaluator of :mod:`harness.engine.batched_training`, or ``None`` when
    ``model`` cannot be stacked (the generic path: members then train one by one)."""
    if isinstance(model, GenericModel):
        return None
    if isinstance(model, Network) and not model.plain:
        return _StackAdapter(NetworkGradientEngine(model, activation, trainable, dtype))
    from .stacked_gradients import StackedGradientEngine  # here: it imports Numba

    return StackedGradientEngine(shapes, activation, members, trainable, dtype, rows=rows)


class _StackAdapter:
    def __init__(self, engine: NetworkGradientEngine) -> None:
        self.engine = engine

    def loss_and_grads(self, W, X, y, loss, k):
        return self.engine.stack_loss_and_grads(W, X, y, loss, k)


class GenericModel:
    """A network known only by its forward ``forward(params, X, activation) -> (N,)`` and its
    parameter shapes: trained and differentiated on the generic (autograd) path."""

    def __init__(self, forward, shapes: Sequence[tuple[int, ...]], trainable: Sequence[bool] | None = None,
                 name: str = "") -> None:
        self.forward = forward
        self.shapes = [tuple(int(v) for v in s) for s in shapes]
        self.trainable = [True] * len(self.shapes) if trainable is None else [bool(t) for t in trainable]
        self.name = name
        self.n_params = len(self.shapes)

    def layer_shapes(self):
        return list(self.shapes)

    def parameter_shapes(self):
        return list(self.shapes)

    def parameter_trainable(self):
        return list(self.trainable)

    def parameter_names(self):
        return [f"W{i + 1}" for i in range(self.n_params)]

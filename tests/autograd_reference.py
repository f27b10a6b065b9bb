"""Reference Jacobian and NTK by automatic differentiation (the ``autograd`` package).

The network ``f(theta) = W_L phi(... phi(W_1 x))`` is written directly in ``autograd.numpy``
and differentiated with respect to the flat parameter vector ``theta`` (the weight matrices
flattened in row-major order and concatenated, as in :mod:`harness.engine.jacobian`). The
activation enters as an autograd primitive whose derivative is the plugin's ``dphi``, so any
activation plugin works; everything else (the layer composition and the chain rule) is
autograd's, independent of the hand-written passes in :mod:`harness.engine.network`.

Slow (one reverse pass per sample): for tests on small networks.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from harness.engine.ntk import check_network

__all__ = ["autograd_jacobian", "autograd_ntk"]


def _primitive_activation(activation):
    from autograd.extend import defvjp, primitive

    @primitive
    def phi(x):
        return activation.phi(x)

    defvjp(phi, lambda ans, x: lambda g: g * activation.dphi(x))
    return phi


def autograd_jacobian(weights: Sequence[np.ndarray], X: np.ndarray, activation,
                      layers: Sequence[int] | None = None) -> np.ndarray:
    """``J`` (N, P_layers) in float64: d f / d theta for the 1-based ``layers`` (``None``: all)."""
    import autograd.numpy as anp
    from autograd import jacobian as ag_jacobian

    check_network(weights, X)
    Ws = [np.asarray(W, dtype=np.float64) for W in weights]
    X = np.asarray(X, dtype=np.float64)
    L = len(Ws)
    layers = list(range(1, L + 1)) if layers is None else sorted({int(l) for l in layers})
    shapes = [W.shape for W in Ws]
    phi = _primitive_activation(activation)

    def unflatten(theta):
        out, pos = [], 0
        for l in layers:
            n, m = shapes[l - 1]
            out.append(anp.reshape(theta[pos:pos + n * m], (n, m)))
            pos += n * m
        return out

    def f(theta):
        chosen = dict(zip(layers, unflatten(theta)))
        h = X
        for l in range(1, L + 1):
            W = chosen.get(l, Ws[l - 1])
            g = anp.dot(h, anp.transpose(W))
            h = phi(g) if l < L else g
        return anp.reshape(h, (-1,))

    theta0 = np.concatenate([Ws[l - 1].ravel() for l in layers])
    return np.asarray(ag_jacobian(f)(theta0))


def autograd_ntk(weights: Sequence[np.ndarray], X: np.ndarray, activation,
                 layers: Sequence[int] | None = None) -> np.ndarray:
    """``J J^T`` (N, N) from :func:`autograd_jacobian`."""
    J = autograd_jacobian(weights, X, activation, layers)
    return J @ J.T

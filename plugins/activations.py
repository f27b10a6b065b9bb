"""Built-in activations: sigmoid, relu, tanh, quadratic and identity.

Each takes a NumPy array of any shape and returns an array of the same shape; a floating input
keeps its dtype (float32 stays float32), any other input is computed in float64. The sigmoid
and tanh derivatives are written with ``expit`` so that no intermediate overflows for large
``|x|`` and small derivatives keep their relative accuracy (``1 - s`` is never formed).
ReLU's derivatives at the kink ``x = 0`` are taken as ``dphi(0) = 0`` and ``d2phi(0) = 0``.
"""
from __future__ import annotations

import numpy as np

from harness import Activation, hookimpl


def expit(x):
    """:func:`scipy.special.expit`, imported on first use (importing ``scipy.special`` takes
    a few tenths of a second, which every ``harness`` command would pay for loading plugins)."""
    from scipy.special import expit as _expit

    return _expit(x)


def _float_array(x) -> np.ndarray:
    """``x`` as an array; floating dtypes are kept, anything else becomes float64."""
    x = np.asarray(x)
    return x if np.issubdtype(x.dtype, np.floating) else x.astype(np.float64)


class Sigmoid(Activation):
    name = "sigmoid"
    help = "logistic sigmoid 1/(1+exp(-x))"
    jit_code = "sigmoid"

    def phi(self, x):
        return expit(_float_array(x))

    def dphi(self, x):
        x = _float_array(x)
        return expit(x) * expit(-x)  # s(1-s), with 1-s = s(-x) computed without cancellation

    def d2phi(self, x):
        x = _float_array(x)
        # s(1-s)(1-2s) = s(x) s(-x) (s(-x) - s(x)) = -s(x) s(-x) tanh(x/2)
        return -(expit(x) * expit(-x)) * np.tanh(x / 2)


class ReLU(Activation):
    name = "relu"
    help = "rectified linear unit max(x, 0); derivative 0 at the kink"
    jit_code = "relu"

    def phi(self, x):
        x = _float_array(x)
        return np.maximum(x, 0).astype(x.dtype, copy=False)

    def dphi(self, x):
        x = _float_array(x)
        return (x > 0).astype(x.dtype)

    def d2phi(self, x):
        x = _float_array(x)
        return np.zeros_like(x)


class Tanh(Activation):
    name = "tanh"
    help = "hyperbolic tangent"
    jit_code = "tanh"

    def phi(self, x):
        return np.tanh(_float_array(x))

    def dphi(self, x):
        x = _float_array(x)
        # 1 - tanh^2 = 4 s(2x) s(-2x): accurate (not 0) where tanh rounds to +-1
        return 4 * (expit(2 * x) * expit(-2 * x))

    def d2phi(self, x):
        x = _float_array(x)
        return -2 * np.tanh(x) * self.dphi(x)


class Quadratic(Activation):
    name = "quadratic"
    help = "square x^2"
    jit_code = "quadratic"

    def phi(self, x):
        x = _float_array(x)
        return x * x

    def dphi(self, x):
        x = _float_array(x)
        return 2 * x

    def d2phi(self, x):
        x = _float_array(x)
        return np.full_like(x, 2)


class Identity(Activation):
    name = "identity"
    help = "identity x (a linear network)"
    jit_code = "identity"

    def phi(self, x):
        return _float_array(x).copy()

    def dphi(self, x):
        return np.ones_like(_float_array(x))

    def d2phi(self, x):
        return np.zeros_like(_float_array(x))


ACTIVATIONS = (Sigmoid, ReLU, Tanh, Quadratic, Identity)


@hookimpl
def harness_register_activations(registry):
    for component in ACTIVATIONS:
        registry.add(component)

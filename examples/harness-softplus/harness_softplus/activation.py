"""The softplus activation ``phi(x) = log(1 + exp(beta x)) / beta``.

Derivatives: ``phi'(x) = s(beta x)`` and ``phi''(x) = beta s(beta x) s(-beta x)``, with ``s`` the
logistic sigmoid. ``logaddexp`` and ``expit`` keep every value finite for any ``|x|``; a
floating input keeps its dtype (float32 stays float32).
"""
from __future__ import annotations

import numpy as np
from scipy.special import expit

from harness.plugin import Activation, Param


def _float_array(x) -> np.ndarray:
    x = np.asarray(x)
    return x if np.issubdtype(x.dtype, np.floating) else x.astype(np.float64)


class Softplus(Activation):
    name = "softplus"
    help = "softplus log(1 + exp(beta x)) / beta, a smooth ReLU (beta -> infinity gives ReLU)"
    params = (Param("beta", float, 1.0, "sharpness: larger beta is closer to ReLU", min=1e-6, max=1e6),)

    def phi(self, x):
        x = _float_array(x)
        return np.logaddexp(x.dtype.type(0), x * x.dtype.type(self.beta)) / x.dtype.type(self.beta)

    def dphi(self, x):
        x = _float_array(x)
        return expit(x * x.dtype.type(self.beta))

    def d2phi(self, x):
        x = _float_array(x)
        bx = x * x.dtype.type(self.beta)
        return x.dtype.type(self.beta) * expit(bx) * expit(-bx)

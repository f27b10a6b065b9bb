"""Activations used by several test files: ones without a fused Numba kernel, so that the
engines' NumPy fallback paths are exercised."""
import numpy as np

from harness import Activation


class Softplus(Activation):
    """log(1 + e^x): no fused kernel (exercises the NumPy path)."""

    name = "test_softplus"
    help = "log(1 + e^x), no fused kernel"

    def phi(self, x):
        return np.logaddexp(0.0, x)

    def dphi(self, x):
        return 1.0 / (1.0 + np.exp(-x))

    def d2phi(self, x):
        s = 1.0 / (1.0 + np.exp(-x))
        return s * (1 - s)

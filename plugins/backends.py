"""Built-in backend ``numba``: the CPU engine (BLAS products and fused Numba kernels).

``ntk`` is :func:`harness.engine.ntk.ntk_gram`; training uses
:class:`harness.engine.gradients.GradientEngine` (the :class:`harness.Backend` default).
The optional ``torch`` backend lives in ``harness_plugins.torch_backend``.
"""
from __future__ import annotations

import numpy as np

from harness import Backend, hookimpl


class NumbaBackend(Backend):
    name = "numba"
    help = "CPU engine: BLAS Gram products and fused Numba kernels (the default)"

    def ntk(self, weights, X, activation, layers=None, dtype=np.float64):
        from harness.engine.ntk import ntk_gram

        return ntk_gram(weights, X, activation, layers, dtype)

    def ntk_kernels(self, weights, X, activation, groups, dtype=np.float64):
        from harness.engine.ntk import ntk_kernels

        return ntk_kernels(weights, X, activation, groups, dtype)

    def supports_model(self, model) -> bool:
        return True

    def model_kernels(self, model, params, X, activation, groups, dtype=np.float64):
        """Structured networks (biases, residual blocks) by
        :func:`harness.engine.ntk.network_kernels`; a generic forward by autograd
        (:func:`harness.engine.generic.generic_kernels`)."""
        from harness.engine.network import Network

        if isinstance(model, Network):
            from harness.engine.ntk import network_kernels

            return network_kernels(model, params, X, activation, groups, dtype), "structured"
        from harness.engine.generic import generic_kernels

        return generic_kernels(model.forward, params, X, activation, groups, dtype), "generic"


@hookimpl
def harness_register_backends(registry):
    registry.add(NumbaBackend)

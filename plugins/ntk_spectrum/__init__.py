"""NTK spectrum at initialisation (Bombari, Amani and Mondelli, NeurIPS 2022, Figure 1).

The experiment ``ntk_spectrum`` (:mod:`.experiment`), with its kernel names (:mod:`.kernels`),
cost estimates (:mod:`.costs`) and figures (:mod:`.figures`).
"""
from __future__ import annotations

from harness.plugin import hookimpl

from .experiment import DTYPES, NTKSpectrum  # noqa: F401
from .kernels import kernel_layers, kernel_order, kernel_params  # noqa: F401


@hookimpl
def harness_register_experiments(registry):
    registry.add(NTKSpectrum)

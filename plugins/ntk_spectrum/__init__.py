"""NTK spectrum at initialisation (Bombari, Amani and Mondelli, NeurIPS 2022, Figure 1): the
experiment ``ntk_spectrum`` (:mod:`.experiment`).
"""
from __future__ import annotations

from .experiment import (  # noqa: F401
    DTYPES,
    NTKSpectrum,
    harness_register_experiments,
    kernel_layers,
    kernel_order,
    kernel_params,
)

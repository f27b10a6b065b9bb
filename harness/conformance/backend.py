"""Backend checks: ``ntk`` agrees with ``sum_l (F F^T) o (B B^T)`` from the NumPy forward pass.
"""
from __future__ import annotations

import numpy as np

from .core import Skip, _gaussian_weights, _instance, _rng, _Tanh, check, class_arg


def _reference_ntk(weights, X, activation) -> np.ndarray:
    """``K = sum_l (F_{l-1} F_{l-1}^T) o (B_l B_l^T)`` (N, N) from the plain NumPy forward pass."""
    from ..engine.network import backward_signals, forward

    fp = forward(weights, X, activation)
    B = backward_signals(weights, fp, activation)
    return sum((F @ F.T) * (b @ b.T) for F, b in zip(fp.F, B))


@check("backend", "ntk", args=class_arg)
def _backend_ntk(cls) -> str:
    backend = _instance(cls)
    rng = _rng(70)
    weights = _gaussian_weights([(7, 5), (6, 7), (1, 6)], rng)
    X = rng.standard_normal((9, 5))
    try:
        got = np.asarray(backend.ntk(weights, X, _Tanh()), dtype=float)
    except ImportError as exc:
        raise Skip(f"backend not usable here: {exc}") from None
    ref = _reference_ntk(weights, X, _Tanh())
    assert got.shape == ref.shape, f"ntk has shape {got.shape}, expected {ref.shape}"
    err = np.max(np.abs(got - ref)) / np.max(np.abs(ref))
    assert err <= 1e-10, f"ntk differs from sum_l (F F^T) o (B B^T) by {err:.3g} (relative)"
    return f"full NTK (9, 9) agrees with the NumPy reference to {err:.1g}"

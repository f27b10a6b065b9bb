"""Backend checks: ``ntk`` agrees with ``sum_l (F F^T) o (B B^T)`` from the NumPy forward pass;
``stacked_gradient_engine`` (batched training) agrees with the CPU stacked engine.
"""
from __future__ import annotations

import numpy as np

from harness.plugin.conformance.core import (
    Skip,
    _gaussian_weights,
    _HalfSquaredError,
    _instance,
    _rng,
    _Tanh,
    check,
    class_arg,
)


def _reference_ntk(weights, X, activation) -> np.ndarray:
    """``K = sum_l (F_{l-1} F_{l-1}^T) o (B_l B_l^T)`` (N, N) from the plain NumPy forward pass."""
    from harness.engine.network import backward_signals, forward

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
        got = np.asarray(backend.ntk(weights, X, _Tanh()), dtype=np.float64)
    except ImportError as exc:
        raise Skip(f"backend not usable here: {exc}") from None
    ref = _reference_ntk(weights, X, _Tanh())
    assert got.shape == ref.shape, f"ntk has shape {got.shape}, expected {ref.shape}"
    err = np.max(np.abs(got - ref)) / np.max(np.abs(ref))
    assert err <= 1e-10, f"ntk differs from sum_l (F F^T) o (B B^T) by {err:.3g} (relative)"
    return f"full NTK (9, 9) agrees with the NumPy reference to {err:.1g}"


@check("backend", "stacked gradient engine", args=class_arg)
def _backend_stacked_gradients(cls) -> str:
    """Losses and gradients of the first 3 members of a stack of 4 small chains, with the first
    layer frozen and with every layer trainable, against
    :class:`harness.engine.stacked_gradients.StackedGradientEngine` (float64)."""
    from harness.engine.stacked_gradients import StackedGradientEngine

    backend = _instance(cls)
    rng = _rng(71)
    shapes, R, k, rows = [(7, 5), (6, 7), (1, 6)], 4, 3, 9
    W = [np.stack([w[l] for w in (_gaussian_weights(shapes, rng) for _ in range(R))]) for l in range(3)]
    X, y = rng.standard_normal((R, rows, 5)), rng.standard_normal((R, rows))
    loss, worst = _HalfSquaredError(), 0.0
    for trainable in ([True, True, True], [False, True, True]):
        ref_values, ref_grads = StackedGradientEngine(shapes, _Tanh(), R, trainable, rows=rows).loss_and_grads(
            W, X[:k], y[:k], loss, k)
        try:
            engine = backend.stacked_gradient_engine(shapes, _Tanh(), R, trainable, np.float64, rows)
            values, grads = engine.loss_and_grads(W, X[:k], y[:k], loss, k)
        except ImportError as exc:
            raise Skip(f"backend not usable here: {exc}") from None
        assert len(values) == k, f"{len(values)} losses for {k} members"
        err = max(abs(float(v) - r) / abs(r) for v, r in zip(values, ref_values))
        assert err <= 1e-10, f"losses differ from the CPU stacked engine by {err:.3g} (relative)"
        worst = max(worst, err)
        for l, (g, h) in enumerate(zip(grads, ref_grads)):
            if h is None:
                assert g is None, f"layer {l + 1} is frozen but has a gradient"
                continue
            g = np.asarray(g)
            assert g.shape == h.shape, f"layer {l + 1} gradient has shape {g.shape}, expected {h.shape}"
            err = float(np.max(np.abs(g - h)) / np.max(np.abs(h)))
            assert err <= 1e-10, (f"layer {l + 1} gradients differ from the CPU stacked engine by "
                                  f"{err:.3g} (relative)")
            worst = max(worst, err)
    return f"3 of 4 stacked chains (all layers, first frozen) agree with the CPU stacked engine to {worst:.1g}"

"""Built-in losses: mean squared error, hinge and logistic.

Every loss is a mean over the N samples of a per-sample loss ``l(f_i, y_i)``; ``value(f, y)``
returns that mean (float) and ``grad(f, y)`` returns ``d(mean)/df`` of shape ``(N,)`` (it
carries the ``1/N``). ``curvature`` bounds ``d^2 l / df^2`` per sample (``None`` where the loss is
not smooth); the mean loss's Hessian in ``f`` is then at most ``curvature / N`` times the
identity, which is what the step rule ``ntk_smooth`` of ``gd_theory`` uses (one over the smoothness
of the linearised loss; not the paper's step).

- ``mse``: ``(f - y)^2`` (no 1/2, as in Bombari et al. 2022), curvature 2;
- ``hinge``: ``max(0, margin - y f)`` for labels ``y`` in {-1, +1}, not smooth;
- ``logistic``: ``log(1 + exp(-y f))`` for labels in {-1, +1}, curvature 1/4.
"""
from __future__ import annotations

import numpy as np

from harness import Loss, Param, hookimpl


def expit(x):
    """:func:`scipy.special.expit`, imported on first use (importing ``scipy.special`` takes
    a few tenths of a second, which every ``harness`` command would pay for loading plugins)."""
    from scipy.special import expit as _expit

    return _expit(x)


def _pair(f, y) -> tuple[np.ndarray, np.ndarray]:
    f = np.asarray(f)
    y = np.asarray(y, dtype=f.dtype if np.issubdtype(f.dtype, np.floating) else np.float64)
    if f.shape != y.shape:
        raise ValueError(f"outputs and targets differ in shape: {f.shape} vs {y.shape}")
    return f, y


class MeanSquaredError(Loss):
    name = "mse"
    help = "mean over samples of (f - y)^2 (no 1/2)"
    curvature = 2.0
    jit_code = "mse"

    def value(self, f, y):
        f, y = _pair(f, y)
        r = f - y
        return float(r @ r) / r.size

    def grad(self, f, y):
        f, y = _pair(f, y)
        return (f - y) * (2.0 / f.size)


class Hinge(Loss):
    name = "hinge"
    help = "mean over samples of max(0, margin - y f), labels y in {-1, +1}"
    params = (Param("margin", float, 1.0, "the margin the loss asks for", min=0.0),)
    curvature = None

    def value(self, f, y):
        f, y = _pair(f, y)
        return float(np.maximum(0.0, self.margin - y * f).mean())

    def grad(self, f, y):
        """``-y / N`` where ``y f < margin``, else 0 (the subgradient 0 at the kink)."""
        f, y = _pair(f, y)
        return np.where(y * f < self.margin, -y, 0.0).astype(f.dtype, copy=False) / f.size


class Logistic(Loss):
    name = "logistic"
    help = "mean over samples of log(1 + exp(-y f)), labels y in {-1, +1}"
    curvature = 0.25

    def value(self, f, y):
        f, y = _pair(f, y)
        return float(np.logaddexp(0.0, -y * f).mean())

    def grad(self, f, y):
        """``-y sigmoid(-y f) / N``."""
        f, y = _pair(f, y)
        return -y * expit(-y * f) / f.size


LOSSES = (MeanSquaredError, Hinge, Logistic)


@hookimpl
def harness_register_losses(registry):
    for component in LOSSES:
        registry.add(component)

"""Levenberg-Marquardt least squares in float64, with random restarts.

Minimises ``E(theta) = ||r(theta)||^2`` for a residual function ``r: (P,) -> (M,)`` with
Jacobian ``J: (P,) -> (M, P)``. Each iteration solves the damped Gauss-Newton problem

    min_delta ||J delta + r||^2 + mu ||delta||^2

through one thin SVD ``J = U diag(s) V^T`` per iteration: ``delta = -V diag(s / (s^2 + mu)) U^T r``
(exact for any ``mu > 0``; rank-deficient ``J``, e.g. more parameters than residuals, is fine,
and retrying with another ``mu`` costs no new factorisation). A step that lowers ``E``
is accepted and ``mu`` shrinks by ``decrease``; otherwise ``mu`` grows by ``increase`` and the
step is retried. Training stops when ``E <= target`` (``reached``), when ``mu`` exceeds
``max_damping`` (stalled: no step lowers ``E`` any more, typically at the rounding floor or at a
non-zero local minimum) or after ``max_iterations`` Jacobian evaluations.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

Residual = Callable[[np.ndarray], np.ndarray]
Jacobian = Callable[[np.ndarray], np.ndarray]


@dataclass
class LMResult:
    """Outcome of one run: the final ``theta`` ``(P,)``, its ``error`` ``||r||^2``, whether
    ``error <= target`` (``reached``), the number of Jacobian evaluations (``iterations``), why
    it stopped (``"target"``, ``"stalled"`` or ``"max_iterations"``) and ``history``, the error
    after each accepted step (starting with the initial error)."""

    theta: np.ndarray
    error: float
    reached: bool
    iterations: int
    reason: str
    history: list[float] = field(default_factory=list)
    restarts: int = 0
    """For :func:`train_with_restarts`: how many runs were started after the first."""


def levenberg_marquardt(residual: Residual, jacobian: Jacobian, theta0: np.ndarray, *,
                        target: float = 0.0, max_iterations: int = 300, damping: float = 1e-3,
                        increase: float = 2.0, decrease: float = 3.0, min_damping: float = 1e-20,
                        max_damping: float = 1e12) -> LMResult:
    """Run Levenberg-Marquardt from ``theta0`` ``(P,)``; see the module docstring."""
    theta = np.array(theta0, dtype=np.float64)
    r = residual(theta)
    err = float(r @ r)
    history = [err]
    mu = float(damping)
    iterations = 0
    reason = "max_iterations"
    while True:
        if err <= target:
            reason = "target"
            break
        if iterations >= max_iterations:
            break
        U, s, Vt = np.linalg.svd(jacobian(theta), full_matrices=False)
        Ur = U.T @ r
        iterations += 1
        accepted = False
        while mu <= max_damping:
            delta = -Vt.T @ (s / (s * s + mu) * Ur)
            trial = theta + delta
            r_trial = residual(trial)
            err_trial = float(r_trial @ r_trial)
            if np.isfinite(err_trial) and err_trial < err:
                theta, r, err = trial, r_trial, err_trial
                mu = max(mu / decrease, min_damping)
                accepted = True
                break
            mu *= increase
        if not accepted:
            reason = "stalled"
            break
        history.append(err)
    return LMResult(theta, err, err <= target, iterations, reason, history)


def train_with_restarts(residual: Residual, jacobian: Jacobian,
                        initial: Callable[[np.random.Generator], np.ndarray],
                        rng: np.random.Generator, *, max_restarts: int = 10, **options) -> LMResult:
    """Run :func:`levenberg_marquardt` from ``initial(rng)`` until one run reaches the target.

    At most ``1 + max_restarts`` runs; returns the first run that reaches ``options["target"]``
    or else the run with the smallest error, with ``restarts`` set to the number of runs after
    the first.
    """
    best: LMResult | None = None
    for attempt in range(max_restarts + 1):
        result = levenberg_marquardt(residual, jacobian, initial(rng), **options)
        result.restarts = attempt
        if best is None or result.error < best.error:
            best = result
        if result.reached:
            return result
    best.restarts = max_restarts
    return best

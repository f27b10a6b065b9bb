"""What a trained point of the one-hidden-layer network is: the relative gradient, Newton polishing,
the class from the Hessian's spectrum, and for ReLU the kink check (a unit's kink sitting on a
training input, where the error is not differentiable and the smooth piece's Hessian says nothing).

:func:`trained_point_class` classifies the point a trial's training ended at
(``embedding_generalization``): ``interpolating`` (the target error was reached: a global minimum
of the training error), ``kink`` (ReLU: a kink within ``kink_tol`` of a training input, undecided),
else the class of :func:`classify`: ``minimum`` (gradient zero to ``gradient_rtol``, every Hessian
eigenvalue positive: certified at second order), ``flat_directions`` (no negative eigenvalue, some
zero: flat or undecided), ``saddle`` (a negative eigenvalue), ``not_critical`` (a gradient left).
"""
from __future__ import annotations

import numpy as np

import harness_plugins.semi_flat.shallow as shallow

CLASSES = ("minimum", "flat_directions", "saddle", "not_critical")
"""Classification of an embedded point: ``minimum`` (Hessian positive definite), ``flat_directions``
(no negative eigenvalue, some zero: a minimum or a degenerate saddle, undecided at second order),
``saddle`` (a negative eigenvalue) and ``not_critical`` (the gradient is not zero to round-off)."""


def relative_gradient(theta, x, y, act) -> float:
    """``max |grad E| / scale`` with ``scale = 2 sum_i |r_i| max_p |J_ip|``, the size of the terms
    summed in ``grad E = 2 J^T r``: round-off alone leaves about ``1e-16`` of it."""
    J = shallow.jacobian(theta, x, act)
    r = shallow.residuals(theta, x, y, act)
    scale = 2.0 * float(np.abs(r) @ np.max(np.abs(J), axis=1))
    g = 2.0 * J.T @ r
    return float(np.max(np.abs(g)) / scale) if scale > 0 else 0.0


def newton_polish(theta, x, y, act, steps: int = 20) -> np.ndarray:
    """Newton steps ``theta - H^+ grad E`` (pseudo-inverse, ``rcond 1e-12``), each kept only if it
    lowers the relative gradient without raising ``E`` by more than round-off: Levenberg-Marquardt
    converges only linearly at a positive-loss minimum; Newton brings the gradient to round-off."""
    best, g_best = theta, relative_gradient(theta, x, y, act)
    e_best = shallow.training_error(theta, x, y, act)
    for _ in range(steps):
        g = shallow.error_gradient(best, x, y, act)
        step = np.linalg.lstsq(shallow.error_hessian(best, x, y, act), g, rcond=1e-12)[0]
        trial = best - step
        g_trial = relative_gradient(trial, x, y, act)
        e_trial = shallow.training_error(trial, x, y, act)
        if not (g_trial < g_best and e_trial <= e_best * (1 + 1e-12)):
            break
        best, g_best, e_best = trial, g_trial, e_trial
    return best


def classify(lam: np.ndarray, rel_grad: float, gradient_rtol: float, rtol: float) -> tuple[str, shallow.Inertia]:
    """The class (:data:`CLASSES`) of a point from its Hessian eigenvalues ``lam`` and relative
    gradient: zero eigenvalues are ``|lambda| <= rtol * max |lambda|``."""
    inert = shallow.inertia(lam, rtol)
    if rel_grad > gradient_rtol:
        return "not_critical", inert
    if inert.negative:
        return "saddle", inert
    return ("flat_directions" if inert.zero else "minimum"), inert


TRAINED_CLASSES = ("interpolating", "minimum", "flat_directions", "saddle", "not_critical", "kink")
"""The classes of :func:`trained_point_class`, in the order the tables show them."""


def kink_distance(theta, x) -> float | None:
    """ReLU: the smallest distance between a unit's kink ``-b_j / w_j`` and a training input, over the
    units that matter (``w_j != 0`` and ``v_j != 0``); ``None`` when no unit has a kink."""
    p = shallow.unpack(theta)
    live = (p.w != 0) & (p.v != 0)
    if not np.any(live):
        return None
    knots = -p.b[live] / p.w[live]
    return float(np.min(np.abs(np.asarray(x, dtype=np.float64)[:, None] - knots[None, :])))


def trained_point_class(theta, x, y, act, reached: bool, *, relu: bool, kink_tol: float, gradient_rtol: float,
                        hessian_rtol: float) -> tuple[str, float | None, float | None]:
    """``(class, kink distance, relative gradient)`` of a trained point (see the module docstring):
    the kink check first (ReLU), then the gradient and the Hessian's inertia. The kink distance is
    ``None`` for smooth activations; the relative gradient ``None`` for an interpolating point or a
    kink (not computed)."""
    kink = kink_distance(theta, x) if relu else None
    if reached:
        return "interpolating", kink, None
    if kink is not None and kink <= kink_tol:
        return "kink", kink, None
    g = relative_gradient(theta, x, y, act)
    label, _ = classify(np.linalg.eigvalsh(shallow.error_hessian(theta, x, y, act)), g, gradient_rtol, hessian_rtol)
    return label, kink, g

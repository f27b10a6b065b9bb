"""Cost estimates of ``quadratic_flow`` cells, from rates measured on this machine by a probe
of the flow's own kernels (cached by :func:`harness.plugin.calibration.rates` as ``ode``):
seconds per right-hand-side evaluation of :func:`scipy.integrate.solve_ivp` (RK45) on the reduced
equations at m = 5 and 40, and per flop of the finite-sample gradient descent.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

from harness.plugin import calibration


def flow_cost(p: Mapping[str, Any]) -> dict:
    """Memory (bytes) and seconds of one cell with the experiment's parameters ``p`` (defaults
    filled in): the ODE's evaluations over ``[0, t_max]`` and the finite-sample steps."""
    d, m, ms = int(p["d"]), int(p["m"]), int(p["m_star"])
    speed = 1.0 if p["time_scale"] == "mean_field" else 1.0 / m
    # measured: RK45 at the default tolerances takes 1300-3300 evaluations for t_max = 150
    evals = 12.0 * float(p["t_max"]) * speed + 100.0
    rates = ode_rates()
    if p["flow"] == "weights":
        flops, state = 4.0 * d * m * (m + ms), d * m
        per_eval = ode_eval_seconds(m) + flops * rates["gd_s_per_flop"]
    else:
        flops, state = 4.0 * m * m * (m + ms), m * (m + ms)
        per_eval = ode_eval_seconds(m)
    seconds = evals * per_eval
    # the state, the solver's stages, the teacher and student weights, and the solution at
    # n_points times (state and risk, held twice: the solver's output and the row's curves)
    memory = 8 * (10 * state + d * (m + ms) * (2 if p["flow"] == "weights" else 0)
                  + 2 * int(p["n_points"]) * (state + 10))
    n = int(p["n_train"])
    if n > 0:
        steps = math.ceil(float(p["t_max"]) / float(p["gd_step"]))
        seconds += steps * gd_step_flops(n, d, m, ms) * rates["gd_s_per_flop"]
        memory += 8 * n * (d + 2 * m)
    return {"memory_bytes": int(memory), "seconds": float(seconds)}


def _probe_ode() -> dict:
    import harness_plugins.quadratic_flow.quadratic as q

    rng = np.random.default_rng(0)
    out = {}
    for m in (5, 40):
        initial = q.initial_overlaps(200, m, 10, "orthonormal", "orthonormal", rng, rng)
        t = np.linspace(0.0, 20.0, 21)
        res = {}
        seconds = calibration.best_time(lambda: res.update(r=q.integrate_overlaps(initial, t)), repeat=2)
        out[f"eval_s_m{m}"] = seconds / max(res["r"].nfev, 1)
    W0, W_star = q.initial_weights(100, 10, 10, "orthonormal", "orthonormal", rng, rng)
    X = rng.standard_normal((2000, 100))
    y = q.teacher_labels(X, W_star, 0.0, rng)
    seconds = calibration.best_time(lambda: q.gd_finite_sample(W0, W_star, X, y, 0.1, 20), repeat=2)
    out["gd_s_per_flop"] = seconds / (20 * gd_step_flops(2000, 100, 10, 10))
    return out


def gd_step_flops(n: int, d: int, m: int, m_star: int) -> float:
    """Flops of one finite-sample gradient step of the quadratic student (and its population risk)."""
    return 6.0 * n * d * m + 4.0 * d * m * (m + m_star)


def ode_rates() -> dict:
    return calibration.rates("ode", _probe_ode, version=1)


def ode_eval_seconds(m: int) -> float:
    """Seconds per right-hand-side evaluation of the reduced quadratic flow with m student
    neurons (solver overhead included), interpolated in m^2 (m + m*) between the probes."""
    r = ode_rates()
    w = lambda k: k * k * (k + 10.0)  # noqa: E731
    slope = max(r["eval_s_m40"] - r["eval_s_m5"], 0.0) / (w(40) - w(5))
    return r["eval_s_m5"] + slope * max(w(m) - w(5), 0.0)

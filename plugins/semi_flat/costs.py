"""Cost estimates of ``embedding_generalization`` cells, from rates measured on this machine by a
probe of the experiment's own kernels (cached by :func:`harness.plugin.calibration.rates` as
``shallow_lm``): seconds per Levenberg-Marquardt iteration of the one-hidden-layer fit, and the
per-trial work of a cell (students cached) at H = 5 and 30.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from harness.plugin import calibration


def generalization_cost(p: Mapping[str, Any], components: Mapping[str, Any] | None) -> dict:
    """Memory (bytes) and ``seconds`` of one cell's trials with the experiment's parameters ``p``
    (defaults filled in), and ``setup_seconds``: training the trials' students (Levenberg-Marquardt
    iterations per trial: about 600 for tanh, about 235 for ReLU's 11 starts)."""
    rates = shallow_rates()
    trials, n_test = int(p["trials"]), int(p["n_test"])
    H, H0 = int(p["H"]), int(p["H0"])
    P = 3 * H + 1
    # per trial, linear in H between the probe's H = 5 and H = 30 (n_test = 1000, Hessians on)
    slope = (rates["trial_s_H30"] - rates["trial_s_H5"]) / 25.0
    per_trial = max(rates["trial_s_H5"] + slope * (H - 5), 0.2 * rates["trial_s_H5"])
    hessian_share = min(int(p["hessian_trials"]), trials) / max(trials, 1)
    per_trial *= (0.5 + 0.5 * n_test / 1000.0) * (0.4 + 0.6 * hessian_share)
    act = ((components or {}).get("activation") or {}).get("name", "tanh")
    starts = 1 + int(p["max_restarts"])
    iterations = (235.0 * starts / 11.0 if act == "relu"
                  else 600.0 * min(1.0, starts / 11.0) * int(p["max_iterations"]) / 300.0)
    return {"memory_bytes": int(8 * n_test * (H + H0) * 2 + 8 * P * P * 3),  # test activations, Hessians
            "seconds": float(trials * per_trial),
            "setup_seconds": float(trials * iterations * rates["lm_iteration_s"])}


def _probe_shallow() -> dict:
    import harness_plugins.semi_flat.shallow as shallow
    from harness.plugin import CellContext
    from harness.plugin.manager import load_registry

    from .levenberg_marquardt import levenberg_marquardt

    registry = load_registry()
    tanh = registry.create("activation", "tanh", {})
    rng = np.random.default_rng(0)
    x = rng.standard_normal(10)
    y = np.tanh(x) + 0.1 * rng.standard_normal(10)
    starts = [rng.standard_normal(16) for _ in range(3)]
    counted = []

    def fit():
        counted.clear()
        for theta in starts:
            counted.append(levenberg_marquardt(lambda th: shallow.residuals(th, x, y, tanh),
                                               lambda th: shallow.jacobian(th, x, tanh), theta,
                                               target=0.0, max_iterations=100).iterations)

    t_fit = calibration.best_time(fit, repeat=2)
    out = {"lm_iteration_s": t_fit / max(sum(counted), 1)}
    # the per-trial work of a cell once its students are trained (cached in-process)
    for H in (5, 30):
        experiment = registry.create("experiment", "embedding_generalization",
                                     {"H": H, "trials": 8, "hessian_trials": 8, "n_test": 1000})
        cell = CellContext({"activation": tanh}, np.random.SeedSequence(12345), {}, registry=registry)
        experiment.run(cell)  # trains and caches the students
        out[f"trial_s_H{H}"] = calibration.best_time(lambda: experiment.run(cell), repeat=2) / 8
    return out


def shallow_rates() -> dict:
    return calibration.rates("shallow_lm", _probe_shallow, version=1)

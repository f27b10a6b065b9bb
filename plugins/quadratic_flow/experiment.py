"""Quadratic teacher-student networks under population gradient flow (Martin, Bach, Biroli).

Components:

- architecture ``quadratic_student``: ``f_W(x) = (1/m) sum_j (w_j . x)^2``, shapes
  ``[(m, d), (1, m)]``; the output layer (all ``1/m``) is frozen. With a quadratic activation
  ``phi(z) = z^2`` the generic forward pass computes exactly ``f_W``.
- initializer ``quadratic_student_init``: hidden rows an orthonormal family (or Gaussian), each
  of norm ``norm``; output weights ``1/m``.
- experiment ``quadratic_flow``: gradient flow on the closed-form population risk (see
  :mod:`.quadratic` for the formulas and the time convention), optionally compared
  with gradient descent on ``n_train`` samples. A row holds the risk curve ``R(t)`` at
  ``n_points`` times, the time to recovery ``R(t) <= threshold * R(0)`` (``None`` if not reached
  by ``t_max``), the escape time ``R(t) <= escape_fraction * R(0)`` and the final overlaps
  between the student and teacher subspaces.

Choices (all parameters): the student neurons start with unit norm (``student_norm = 1``), the
scale of the teacher's neurons, so ``tr A(0) = tr A* = 1`` and the student's projection on the
teacher subspace starts at about ``m* / d``: recovery has to grow it from there, which is what
makes the time grow like ``log d``. Time is ``"mean_field"`` by default (every neuron moves at
speed O(1), ``dw_j/dt = -(tr Delta I + 2 Delta) w_j``); ``time_scale = "gradient"`` gives the plain
flow ``dW/dt = -grad R`` whose times are ``m`` times longer. ``m_star = 10`` by default.
The recovery threshold is ``1e-2 R(0)``: for ``m > m*`` the last phase is slow (the surplus
neurons leave the teacher subspace only algebraically, ``R ~ 1/t^2``), so much smaller thresholds
measure that tail rather than the escape from the initial overlap.

Initial state: with ``flow = "overlaps"`` the initial overlaps are drawn directly in
``O((m + m*)^3)`` (no vector of length ``d``); the weights themselves are drawn (same law) when
``flow = "weights"``, when ``n_train > 0`` (gradient descent needs them; both then start from the
same point) or when ``d < m + m*``. The metric ``initial_draw`` says which. Random streams:
``"student"``, ``"teacher"`` and ``"data"`` (training inputs and label noise).

Figures: ``risk_curves``, ``recovery_vs_ratio`` (time to recovery against m/m*, one line per d,
mean +- sample std over the recovered repetitions, unrecovered ones marked), ``recovery_vs_log_d``,
``finite_sample`` (R(t)/R(0) against t for the flow and for gradient descent on each n) with
``finite_sample_table`` (:func:`.tables.finite_sample_table`), and ``recovery_table``
(:meth:`QuadraticFlow.table`: every (init, d, m/m*) with the
recovered fraction and the recovery time's mean, std, min and max); every caption states the
conventions (:data:`CONVENTIONS`: the 1/m output, the 1/4 in R, mean-field time).

Metrics: ``ratio`` (m/m*), ``initial_risk``, ``final_risk``, ``final_relative_risk``,
``time_to_recovery`` and ``recovered``, ``escape_time``, ``initial_subspace_overlap`` and
``final_subspace_overlap`` (fraction of the student's squared norm in the teacher subspace),
``final_overlap_cosine`` (cosine between A and A*), ``solver_success``, ``nfev``; with
``n_train > 0`` also ``gd_*``. Curves: ``t``, ``risk`` (and ``gd_t``, ``gd_risk``,
``gd_train_loss``).
"""
from __future__ import annotations

import math
from collections import defaultdict
from typing import Any, Mapping, Sequence

import numpy as np

from harness.plugin import Experiment, Param

from .costs import flow_cost
from .figures import (
    _answer_table_figure,
    _finite_sample_figure,
    _key,
    _recovery_vs_log_d_figure,
    _recovery_vs_ratio_figure,
    _risk_curves_figure,
    _table_figure,
)
from .tables import finite_sample_table, flow_tables

SOLVERS = ("RK45", "RK23", "DOP853", "Radau", "BDF", "LSODA")


def _positive(value) -> str | None:
    return None if value > 0 else "must be > 0"


class QuadraticFlow(Experiment):
    name = "quadratic_flow"
    help = "population gradient flow of a quadratic student on a quadratic teacher: R(t), time to recovery"
    slots = {}
    metrics = ("d", "m", "m_star", "ratio", "n", "init", "escape_time", "final_overlap_cosine",
               "final_relative_risk", "final_risk", "final_subspace_overlap", "gd_final_risk",
               "gd_final_subspace_overlap", "gd_final_train_loss", "gd_recovered", "gd_time_to_recovery",
               "initial_draw", "initial_risk", "initial_subspace_overlap", "nfev", "recovered",
               "solver_success", "time_to_recovery")
    params = (
        Param("d", int, 100, "input dimension", min=1),
        Param("m", int, 20, "student width (hidden neurons)", min=1),
        Param("m_star", int, 10, "teacher width", min=1),
        Param("init", str, "orthonormal", "student initialisation", choices=("orthonormal", "gaussian")),
        Param("teacher_init", str, "same", "teacher initialisation ('same': as the student's)",
              choices=("same", "orthonormal", "gaussian")),
        Param("student_norm", float, 1.0, "norm of each student neuron at t = 0 (rms if Gaussian)", min=0.0),
        Param("teacher_norm", float, 1.0, "norm of each teacher neuron (rms if Gaussian)", min=0.0),
        Param("time_scale", str, "mean_field",
              "mean_field: dW/dt = -m grad R (m-independent dA/dt); gradient: dW/dt = -grad R",
              choices=("mean_field", "gradient")),
        Param("t_max", float, 150.0, "time horizon", check=_positive),
        Param("n_points", int, 201, "number of equally spaced times at which R(t) is recorded (each a value "
              "of the row's curves)", min=2, max=100_000),
        Param("threshold", float, 1e-2, "recovery: first time R(t) <= threshold * R(0)", min=0.0, max=1.0),
        Param("escape_fraction", float, 0.5, "escape: first time R(t) <= escape_fraction * R(0)",
              min=0.0, max=1.0),
        Param("flow", str, "overlaps",
              "integrate the reduced equations in (W^T W, W^T W*) or the weights W (d x m) themselves",
              choices=("overlaps", "weights")),
        Param("solver", str, "RK45", "scipy.integrate.solve_ivp method", choices=SOLVERS),
        Param("rtol", float, 1e-8, "solver relative tolerance", check=_positive),
        Param("atol", float, 1e-12, "solver absolute tolerance", check=_positive),
        Param("max_step", float, None, "largest solver step in time units (unset: unbounded)",
              check=_positive),
        Param("first_step", float, None, "first solver step (unset: chosen by the solver)", check=_positive),
        Param("n_train", int, 0, "if > 0, also train by gradient descent on this many samples", min=0),
        Param("gd_step", float, 0.05, "gradient-descent step in time units", check=_positive),
        Param("label_noise", float, 0.0, "standard deviation of the noise on the training labels", min=0.0),
    )
    example = {"params": {"d": 30, "m": 4, "m_star": 2, "t_max": 20.0, "n_points": 21,
                          "n_train": 200, "gd_step": 0.1}}

    # -- one cell

    def run(self, cell) -> dict:
        import harness_plugins.quadratic_flow.quadratic as q

        d, m, ms = self.d, self.m, self.m_star
        teacher_init = self.init if self.teacher_init == "same" else self.teacher_init
        norms = dict(student_norm=self.student_norm, teacher_norm=self.teacher_norm)
        rng_s, rng_t = cell.rng("student"), cell.rng("teacher")
        need_weights = self.flow == "weights" or self.n_train > 0 or d < m + ms
        if need_weights:
            W0, W_star = q.initial_weights(d, m, ms, self.init, teacher_init, rng_s, rng_t, **norms)
            initial = q.Overlaps.from_weights(W0, W_star)
        else:
            initial = q.initial_overlaps(d, m, ms, self.init, teacher_init, rng_s, rng_t, **norms)

        r0 = q.risk_overlaps(initial)
        levels = [self.threshold * r0, self.escape_fraction * r0]
        t = np.linspace(0.0, self.t_max, self.n_points)
        options = q.SolverOptions(method=self.solver, rtol=self.rtol, atol=self.atol,
                                  max_step=self.max_step, first_step=self.first_step)
        if self.flow == "weights":
            res = q.integrate_weights(W0, W_star, t, self.time_scale, levels, options)
        else:
            res = q.integrate_overlaps(initial, t, self.time_scale, levels, options)

        t_rec, t_esc = res.crossings[levels[0]], res.crossings[levels[1]]
        out: dict[str, Any] = {
            "ratio": m / ms,
            "initial_risk": r0,
            "final_risk": float(res.risk[-1]),
            "final_relative_risk": float(res.risk[-1] / r0) if r0 > 0 else float("nan"),
            "time_to_recovery": t_rec,
            "recovered": t_rec is not None,
            "escape_time": t_esc,
            "initial_subspace_overlap": q.subspace_overlap(initial),
            "final_subspace_overlap": q.subspace_overlap(res.final),
            "final_overlap_cosine": q.overlap_cosine(res.final),
            "initial_draw": "weights" if need_weights else "overlaps",
            "solver_success": res.success,
            "nfev": res.nfev,
            "t": t.tolist(),
            "risk": res.risk.tolist(),
        }
        if self.n_train > 0:
            out.update(self._finite_sample(q, cell, W0, W_star, t, levels))
        return out

    def _finite_sample(self, q, cell, W0, W_star, t, levels) -> dict:
        rng = cell.rng("data")
        X = rng.standard_normal((self.n_train, self.d))
        y = q.teacher_labels(X, W_star, self.label_noise, rng)
        n_steps = int(math.ceil(self.t_max / self.gd_step))
        record = np.unique(np.rint(t / self.gd_step).astype(np.int64).clip(0, n_steps))
        gd = q.gd_finite_sample(W0, W_star, X, y, self.gd_step, n_steps, self.time_scale,
                                record_steps=record, levels=levels[:1])
        t_rec = gd.crossings[levels[0]]
        return {
            "gd_final_risk": float(gd.risk[-1]),
            "gd_final_train_loss": float(gd.train_loss[-1]),
            "gd_time_to_recovery": t_rec,
            "gd_recovered": t_rec is not None,
            "gd_final_subspace_overlap": q.subspace_overlap(gd.final),
            "gd_t": gd.t.tolist(),
            "gd_risk": gd.risk.tolist(),
            "gd_train_loss": gd.train_loss.tolist(),
        }

    @staticmethod
    def table(rows: Sequence[Mapping[str, Any]]) -> list[dict]:
        """One line per (init, d, m/m*) over the ok rows of the population flow: repetitions,
        recovered fraction, time to recovery over the recovered repetitions (mean, sample std,
        min, max), escape time (mean) and median final relative risk R(t_max)/R(0)."""
        groups: dict = defaultdict(list)
        for r in rows:
            if r.get("status") == "ok" and r.get("metrics") and not int(r["params"].get("n_train") or 0):
                groups[(r["params"]["init"], *_key(r))].append(r["metrics"])
        lines = []
        for (init, d, ratio) in sorted(groups):
            ms = groups[(init, d, ratio)]
            t = [m["time_to_recovery"] for m in ms if m.get("time_to_recovery") is not None]
            esc = [m["escape_time"] for m in ms if m.get("escape_time") is not None]
            lines.append({
                "init": init, "d": d, "m/m*": ratio, "n": len(ms),
                "recovered": sum(bool(m.get("recovered")) for m in ms) / len(ms),
                "t_rec_mean": float(np.mean(t)) if t else None,
                "t_rec_std": float(np.std(t, ddof=1)) if len(t) > 1 else None,
                "t_rec_min": float(min(t)) if t else None, "t_rec_max": float(max(t)) if t else None,
                "t_escape_mean": float(np.mean(esc)) if esc else None,
                "final_rel_risk_median": float(np.median([m["final_relative_risk"] for m in ms])),
            })
        return lines

    # -- cost for --dry-run

    def estimate(self, cell_params: Mapping[str, Any], components) -> dict:
        p = {prm.name: prm.default for prm in self.params}
        p.update(cell_params)
        return flow_cost(p)

    # -- figures

    def figures(self, rows: Sequence[Mapping[str, Any]], context) -> dict:
        """The figures and table; once per combination of any grid axis besides d, m / m* and
        n_train (the drawn ones: an ``init`` axis, say, splits them), never pooling it."""
        from harness.plugin.series import per_series

        return per_series(rows, lambda r: (*_key(r), int(r["params"].get("n_train") or 0)),
                          lambda part: self._figures(part, context), among=lambda r: r.get("status") == "ok")

    def _figures(self, rows: Sequence[Mapping[str, Any]], context) -> dict:
        ok = [r for r in rows if r.get("status") == "ok" and "risk" in (r.get("curves") or {})]
        if not ok:
            return {}
        figs = {"risk_curves": _risk_curves_figure(ok, context)}
        if len({_key(r)[1] for r in ok}) >= 2:
            figs["recovery_vs_ratio"] = _recovery_vs_ratio_figure(ok, rows, context)
        lines = self.table(rows)
        if lines:
            figs["recovery_table"] = _table_figure(lines, context)
        if len({_key(r)[0] for r in ok}) >= 2:
            figs["recovery_vs_log_d"] = _recovery_vs_log_d_figure(ok, context)
        if any("gd_risk" in r["curves"] for r in ok):
            figs["finite_sample"] = _finite_sample_figure(ok, context)
            table = finite_sample_table(ok, context)
            if table is not None:
                figs["finite_sample_table"] = _answer_table_figure(table, context)
        return figs

    def tables(self, rows: Sequence[Mapping[str, Any]], context) -> list:
        """The answer (:mod:`.tables`): the flow's recovery and its trend in log d; with
        ``n_train > 0``, gradient descent on n samples against the flow."""
        out = flow_tables(rows, context)
        table = finite_sample_table(rows, context)
        return out + ([table] if table is not None else [])

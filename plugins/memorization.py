"""Memorisation experiments: Bombari et al.'s Figure 2, Daniely's two-layer baseline, and a
capacity study that puts both on the same data at matched parameter counts.

``memorization`` (Bombari, Amani and Mondelli 2022, Figure 2). A deep ReLU network (the
benchmark file picks ``architecture = {name = "fc", widths = ["d", "d", "d"]}``, i.e.
d -> d -> d -> d -> 1) is trained by full-batch Adam on N Gaussian inputs with N(0, 1) targets,
MSE without 1/2, at most ``max_epochs`` epochs with the paper's early stopping (windows of
``window`` epochs; stop when a window's loss sum exceeds the previous one). The learning rate
is the expression ``lr_rule`` in ``N``, ``d`` and ``P`` (the trainable parameter count), by
default the paper's ``"1/(10*sqrt(N))"``; it replaces the optimizer's ``lr`` (set
``lr_rule = ""`` to use the optimizer's own ``lr``; optimizers without an ``lr``, such as
``gd_theory``, ignore it). Rows hold ``final_loss`` (the full-batch loss at the final weights),
``reported_loss`` (the authors' value, what the paper plots: the sum of the last complete
window that did not exceed its predecessor, i.e. at a window stop the window *before* the one
that triggered it and otherwise the last complete window, divided by ``window / 2`` = 50),
``reported_window_start`` / ``reported_window_end`` (that window's epochs, counted from 0,
start inclusive, end exclusive), ``stop_window_loss`` (the window that triggered the stop, sum /
50: right after a loss spike, *not* the paper's value), ``windows`` (complete windows), all from
:class:`harness.engine.stopping.WindowRule` and ``None`` without a window rule or a complete
window, then ``stop_epoch``, ``stop_reason``, ``P``, ``P_over_N``, the step actually used
(``lr``, or ``eta_rule`` and ``eta`` for ``gd_theory``) and the loss curve (``loss_curve``
against ``loss_curve_epoch``, subsampled to ``curve_points`` points). A diverged run reports
``final_loss = inf`` (so its row is marked diverged). Figures: ``heatmap``, the one that
reproduces Fig. 2: the mean over repetitions of log10(reported_loss) over (d^2, N) with the
lines P = N and d^2 = N and the memorisation threshold N*(d) (memorised: that mean <= -3,
:func:`memorisation_threshold`); ``heatmap_final_loss``, the same map of log10(final_loss)
(no threshold); and the final loss against P / N.

``two_layer_memorization`` (Daniely 2020, Algorithm 1). ``h(x) = sum_i u_i sigma(<w_i, x>)``
with the symmetric initialisation (initializer ``daniely_symmetric``: zero output at
initialisation, recorded as ``initial_output_max_abs``), output weights frozen
(architecture ``two_layer``), SGD (batch ``batch_size``, step ``lr``) for ``steps`` steps on the
hinge or logistic loss of ``y h(x)``. Points come from the dataset slot (default: uniform on
the sphere); the labels are ``sign(y)`` of its targets (+1 where y = 0), so the default Gaussian
targets, like ``targets = "sign"``, give random +-1 labels independent of x. Rows hold
``train_accuracy`` (fraction of points with ``y h(x) > 0``), ``final_loss``, ``q``, ``m``,
``qd_over_m``, ``inactive_fraction`` and the loss curve. Figure: training accuracy against
``q d / m``, one line per (d, m). (With ReLU, the symmetric initialisation has only q/2 distinct
hyperplanes: a point on the negative side of all of them has ``h = 0`` and no gradient, a
fraction of about ``2^{-q/2}`` of the points; ``inactive_fraction`` is the fraction of points
with every hidden pre-activation <= 0 at the end of training.)

``capacity``. On one data set (the dataset and loss slots; default Gaussian inputs and targets,
MSE), train at a target parameter count ``P = ratio * N``:

- ``deep_adam``: the deep network of depth ``depth`` (hidden widths all ``w``, with ``w`` the
  integer closest to the solution of ``P(w) = d w + (depth - 2) w^2 + w = ratio N``), full-batch
  Adam with ``lr_rule`` and the window rule;
- ``deep_gd``: the same network, full-batch ``gd_theory`` with rule ``gd_rule`` (default
  ``ntk_smooth``: eta = c N / (2 lambda_max(K0)) for the MSE) and multiplier ``gd_c``;
- ``deep_gd_paper``: the same network, full-batch ``gd_theory`` with rule ``paper``:
  eta = gd_c C / (gamma N d n_{L-1}), ``gamma = gd_gamma`` (default 1) and ``C = gd_C``
  expressions in N, d, n (the form of Bombari et al.'s step with its unspecified constant;
  their eq. (18) initialisation is not reproduced, the network keeps ``deep_initializer``).
  The default ``C = N/2`` is a reconstruction: it converts a step stated for the loss
  1/2 sum_i (f_i - y_i)^2 to the mean loss trained here, with the paper's constant taken as 1;
  rows also carry ``eta_ntk_smooth`` (and ``deep_gd`` rows ``eta_paper``) for comparison;
- ``two_layer``: Daniely's network with ``q`` (even) closest to ``ratio N / d`` hidden units,
  symmetric initialisation, frozen output, SGD with batch ``two_layer_batch_size`` and step
  ``two_layer_lr`` or, when unset, ``two_layer_c`` times the ``gd_rule`` step computed at
  initialisation (so that the step follows the data's scale; recorded as ``eta_rule``/``eta``).

``model`` is a grid axis; keying the seed on the other axes only (``seed_by``) gives every model
the same data. Rows hold ``final_loss``, ``reached_zero`` (``final_loss <= zero_tol``), the
actual ``P`` and ``P_over_N``. Outputs: a table (:meth:`Capacity.table`, also drawn as the
figure ``capacity_table``) and a figure of the fraction of seeds that reach zero loss and of
the final loss against P / N, per model.
"""
from __future__ import annotations

import math
from collections import defaultdict
from typing import Any, Mapping, Sequence

import numpy as np

from harness import Experiment, Param, hookimpl
from harness.engine.stopping import ToleranceRule, WindowRule
from harness.engine.training import TrainResult, train
from harness.expressions import evaluate

# ----------------------------------------------------------------------------- shared helpers

_CURVE = Param("curve_points", int, 200, "points kept of the per-epoch loss curve", min=2)
_DIVERGENCE = Param("divergence_factor", float, 1e8,
                    "stop as diverged once the loss exceeds this times the first epoch's", min=1.0)


def _lr_rule_problem(text: str) -> str | None:
    if not text:
        return None
    from harness.expressions import ExpressionError, names_in

    try:
        unknown = names_in(text) - {"N", "d", "P", "m", "q"}
    except ExpressionError as exc:
        return str(exc)
    return f"uses {', '.join(sorted(unknown))}; allowed: N, d, P (and m, q)" if unknown else None


def with_lr(optimizer, lr_rule: str, variables: Mapping[str, Any]):
    """``(optimizer, lr)``: a copy of ``optimizer`` with ``lr`` set from the expression
    ``lr_rule`` (when it has an ``lr`` parameter and the rule is not empty)."""
    if "lr" not in optimizer.config:
        return optimizer, None
    if not lr_rule:
        return optimizer, float(optimizer.lr)
    lr = float(evaluate(lr_rule, dict(variables)))
    if not (lr > 0 and math.isfinite(lr)):
        raise ValueError(f"lr_rule {lr_rule!r} gives {lr} at {dict(variables)}")
    return type(optimizer)(**{**optimizer.config, "lr": lr}), lr


def training_record(result: TrainResult, curve_points: int) -> dict:
    """The result-row entries every training experiment shares."""
    epochs, values = result.curve(curve_points)
    prepared = result.prepared
    return {
        "final_loss": math.inf if result.diverged else result.final_loss,
        "initial_loss": result.initial_loss,
        "stop_epoch": result.epochs,
        "steps": result.steps,
        "stop_reason": result.stop_reason,
        "eta_rule": prepared.get("eta_rule"),
        "eta": prepared.get("eta"),
        "lambda_max_K0": prepared.get("lambda_max_K0"),
        # gd_theory: both theory rules at the same c, whichever one set eta (see gd_theory)
        "eta_ntk_smooth": prepared.get("eta_ntk_smooth"),
        "eta_paper": prepared.get("eta_paper"),
        "gamma_paper": prepared.get("gamma_paper"),
        "C_paper": prepared.get("C_paper"),
        "train_seconds": result.seconds,
        "loss_curve": values,
        "loss_curve_epoch": epochs,
    }


def _fit(cell, X, y, shapes, trainable, initializer, optimizer, activation, loss, *,
         max_epochs: int, rules=(), max_steps: int | None = None,
         divergence_factor: float = 1e8) -> tuple[TrainResult, list[np.ndarray]]:
    weights = initializer.initialize(shapes, cell.rng("init"), X.dtype)
    result = train(weights, X, y, activation, loss, optimizer, trainable=trainable,
                   max_epochs=max_epochs, max_steps=max_steps, rules=rules,
                   rng=cell.rng("batches"), divergence_factor=divergence_factor,
                   backend=cell.components.get("backend"))
    return result, weights


def window_epochs(P_over_N: float, window: int) -> float:
    """Epochs the estimates expect the window rule to run (full-batch Adam, lr 1/(10 sqrt N)):
    ``window * (7 + 38 / (1 + (P/N / 1.3)^4))``, fitted to measured stops on the fig2_reduced
    grid of benchmarks/min_overparam.toml: memorised cells (P/N >= 2.5) stop after 5 to 14
    windows, cells near the threshold (P/N 1.5-2) after 15-20, the others after 30 to 60."""
    return window * (7.0 + 38.0 / (1.0 + (max(P_over_N, 0.0) / 1.3) ** 4))


def _expected_epochs(cell_params, P: float, N: int) -> float:
    """Epochs of a training run: the window rule's expectation, within the epoch budget."""
    epochs = int(cell_params.get("max_epochs", 1000))
    window = int(cell_params.get("window") or 0)
    return min(epochs, window_epochs(P / max(N, 1), window)) if window else epochs


def _train_cost(N: int, P: float, epochs: float, batch: int | None = None) -> dict:
    """Estimated seconds of ``epochs`` epochs on N samples and P trainable weights (full batch,
    or mini-batches of ``batch``), from the calibrated rates of :mod:`harness.engine.costs`,
    with the compilation of the training kernels as a once-per-process set-up cost."""
    from harness.engine import costs

    if batch is None or batch >= N:
        seconds = epochs * costs.epoch_seconds(N, int(P))
    else:
        seconds = epochs * math.ceil(N / batch) * costs.sgd_step_seconds(batch, int(P))
    return {"seconds": float(seconds), "setup_key": "training_kernels",
            "setup_seconds": costs.training_setup_seconds()}


def _finish(fig, context, bands: str):
    fig.text(0.5, 0.005, context.caption(bands), ha="center", va="bottom", fontsize=7, wrap=True)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return fig


def _metric(row, key):
    return (row.get("metrics") or {}).get(key)


def _log10(values: Sequence[float]) -> list[float]:
    return [math.log10(max(float(v), 1e-300)) for v in values
            if v is not None and math.isfinite(float(v))]


# ----------------------------------------------------------------------------- Figure 2

WINDOW_FIELDS = ("reported_loss", "reported_window_start", "reported_window_end",
                 "stop_window_loss", "windows")
"""The row fields taken from :class:`WindowRule`'s summary (``None`` without a window rule)."""

REPORTED_LABEL = "reported loss (authors' value)"


class Memorization(Experiment):
    name = "memorization"
    help = "Bombari et al. Fig. 2: deep ReLU net, full-batch Adam, window early stopping; reported (paper's) and final loss vs (d^2, N)"
    params = (
        Param("N", int, 400, "number of training samples", min=1),
        Param("d", int, 22, "input dimension (also the hidden width with widths = [d, d, d])", min=1),
        Param("max_epochs", int, 10000, "epoch budget", min=1),
        Param("window", int, 100, "early-stopping window in epochs (0: no window rule)", min=0),
        Param("tol", float, None, "also stop once the loss is <= tol (unset: no tolerance rule)", min=0.0),
        Param("lr_rule", str, "1/(10*sqrt(N))",
              "learning rate as an expression in N, d, P; replaces the optimizer's lr ('' keeps it)",
              check=_lr_rule_problem),
        _CURVE,
        _DIVERGENCE,
    )
    slots = {
        "activation": ("activation", "relu"),
        "architecture": ("architecture", "fc"),
        "initializer": ("initializer", "fan_in_gaussian"),
        "dataset": ("dataset", "gaussian"),
        "loss": ("loss", "mse"),
        "optimizer": ("optimizer", "adam"),
        "backend": ("backend", "numba"),
    }
    example = {
        "params": {"N": 60, "d": 6, "max_epochs": 300, "window": 50},
        "components": {"architecture": {"name": "fc", "params": {"widths": ["d", "d", "d"]}}},
    }

    def run(self, cell) -> dict:
        N, d = self.N, self.d
        X, y = cell.dataset.sample(N, d, cell.rng("data"))
        arch = cell.architecture
        shapes, trainable = arch.layer_shapes(d), arch.trainable(d)
        P = arch.param_count(d)
        optimizer, lr = with_lr(cell.optimizer, self.lr_rule, {"N": N, "d": d, "P": P})
        rules = [WindowRule(self.window)] if self.window else []
        if self.tol is not None:
            rules.append(ToleranceRule(self.tol))
        result, _ = _fit(cell, X, y, shapes, trainable, cell.initializer, optimizer,
                         cell.activation, cell.loss, max_epochs=self.max_epochs, rules=rules,
                         divergence_factor=self.divergence_factor)
        window = result.rules
        return {
            "d2": d * d, "P": P, "P_over_N": P / N, "lr": lr,
            **training_record(result, self.curve_points),
            **{key: window.get(key) for key in WINDOW_FIELDS},
        }

    def estimate(self, cell_params, components) -> dict:
        N, d = int(cell_params["N"]), int(cell_params["d"])
        widths = _component_widths(components, d)
        P = sum(a * b for a, b in zip([d] + widths, widths + [1]))
        return {"memory_bytes": int(8 * N * (d + 3 * sum(widths) + 4) + 32 * P),
                **_train_cost(N, P, _expected_epochs(cell_params, P, N))}

    def figures(self, rows, context) -> dict:
        done = [r for r in rows if r.get("status") in ("ok", "diverged") and r.get("metrics")]
        if not done:
            return {}
        if context.search:  # the searched points are scattered along N: no heat map of them
            if context.search.get("axis") != "N" or not context.thresholds:
                return {}
            lines = threshold_lines(context.thresholds, done)
            figures = {"thresholds": _threshold_figure(lines, context)}
            figures["threshold_table"] = _table_figure(
                lines, context, cols=["d", "d2", "P", "status", "N_star", "lower", "upper", "ci_low", "ci_high",
                                      "N_star_over_d2", "N_star_over_P", "n_cells"],
                what="one line per d: N* with its search bracket and 95% bootstrap interval over repetitions")
            return figures
        return {"heatmap": _heatmap(done, context, "reported_loss", REPORTED_LABEL, threshold=True),
                "heatmap_final_loss": _heatmap(done, context, "final_loss", "final loss"),
                "loss_vs_P_over_N": _loss_vs_ratio(done, context)}
        return figures


def threshold_lines(thresholds, rows) -> list[dict]:
    """Per searched d: N* (the search's threshold), its bracket and bootstrap interval, and
    N*/d^2 and N*/P (P of the network at that d, from the rows)."""
    P_of_d = {}
    for r in rows:
        if _metric(r, "P") is not None:
            P_of_d[int(r["params"]["d"])] = int(_metric(r, "P"))
    out = []
    for t in thresholds:
        if "d" not in t:
            continue
        d = int(t["d"])
        d2, P = d * d, P_of_d.get(d)
        line = {"d": d, "d2": d2, "P": P, "status": t["status"], "N_star": t["threshold"],
                "lower": t["lower"], "upper": t["upper"], "ci_low": t.get("ci_low"),
                "ci_high": t.get("ci_high"), "n_cells": t["n_cells"]}
        n_star = t["threshold"]
        line["N_star_over_d2"] = n_star / d2 if n_star is not None else None
        line["N_star_over_P"] = n_star / P if n_star is not None and P else None
        out.append(line)
    return out


def threshold_fit(lines) -> dict | None:
    """N* = c d^2 through the origin over the d with a found threshold (bootstrap CI over d)."""
    from harness.fits import fit_proportional

    found = [t for t in lines if t["N_star"] is not None]
    if not found:
        return None
    return fit_proportional([t["d2"] for t in found], [t["N_star"] for t in found])


def _threshold_figure(lines, context):
    """N*(d) against d^2: the bracket as error bars, the bootstrap interval over repetitions as
    a thicker bar, the fit N* = c d^2, and the lines P = N and d^2 = N."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    found = [t for t in lines if t["N_star"] is not None]
    if found:
        x = np.array([t["d2"] for t in found], float)
        y = np.array([t["N_star"] for t in found], float)
        ax.errorbar(x, y, yerr=[y - [t["lower"] for t in found], np.array([t["upper"] for t in found]) - y],
                    fmt="o", color="C0", capsize=3, label="N* (bar: search bracket)")
        ci = [(t["ci_low"], t["ci_high"]) for t in found]
        if all(a is not None for a, _ in ci):
            ax.vlines(x, [a for a, _ in ci], [b for _, b in ci], color="C0", lw=4, alpha=0.35,
                      label="95% bootstrap interval over repetitions")
    for t in lines:
        if t["status"] == "above_upper":
            ax.scatter([t["d2"]], [t["lower"]], marker="^", color="gray")
        elif t["status"] == "below_lower":
            ax.scatter([t["d2"]], [t["upper"]], marker="v", color="gray")
    d2 = np.array(sorted(t["d2"] for t in lines), float)
    if d2.size:
        grid = np.linspace(0, d2.max() * 1.05, 50)
        ax.plot(grid, grid, "k:", label="d^2 = N")
        withP = [(t["d2"], t["P"]) for t in lines if t["P"]]
        if withP:
            ax.plot([a for a, _ in withP], [b for _, b in withP], "k--", label="P = N")
        fit = threshold_fit(lines)
        if fit is not None:
            ci = (f" [{fit['ci_low']:.3g}, {fit['ci_high']:.3g}]" if math.isfinite(fit["ci_low"]) else "")
            ax.plot(grid, fit["c"] * grid, color="C3",
                    label=f"fit N* = {fit['c']:.3g}{ci} d^2 (95% bootstrap over d)")
    ax.set_xlabel("d^2")
    ax.set_ylabel("N* (mean log10 reported_loss crosses -3)")
    ax.legend(fontsize=7)
    ax.set_title(f"{context.experiment_id}: memorisation threshold N*(d)", fontsize=10)
    fig.text(0.01, -0.03, context.caption("error bars: the search's final bracket; shaded: bootstrap "
                                          "interval of N* over repetitions"), fontsize=7, wrap=True)
    return fig


def _component_widths(components, d: int) -> list[int]:
    """Hidden widths of the architecture slot (``fc`` default ``[d, d]``), for estimates."""
    arch = (components or {}).get("architecture") or {}
    try:
        from harness.plugin_manager import get_registry

        instance = get_registry().create("architecture", arch.get("name", "fc"), arch.get("params", {}))
        return [n for n, _ in instance.layer_shapes(d)[:-1]]
    except Exception:
        return [d, d]


LOG10_FLOOR = -10
"""Heat maps clip every loss at 10**LOG10_FLOOR before averaging the logs over repetitions."""

MEMORISED_LOG10 = -3.0
"""A grid point counts as memorised when the mean over its repetitions of log10(reported_loss)
(the paper's quantity, averaged as the paper averages: mean of the logs) is <= this."""


def memorisation_threshold(cells) -> dict:
    """{d: N*}: per d, the largest N of the grid up to which every N is memorised (mean log10
    loss <= :data:`MEMORISED_LOG10`); d values whose smallest N is not memorised are left out.
    ``cells`` is ``{(d, N): [log10 values of the repetitions]}``, as :func:`_grid_means` builds
    it; the figures build it from ``reported_loss``, so memorised means mean log10(reported_loss)
    <= -3. A cell with an infinite entry (a repetition without a value) is not memorised."""
    out = {}
    for d in sorted({k[0] for k in cells}):
        best = None
        for N in sorted(N for dd, N in cells if dd == d):
            vals = cells[(d, N)]
            if not vals or float(np.mean(vals)) > MEMORISED_LOG10:
                break
            best = N
        if best is not None:
            out[d] = best
    return out


def _grid_means(rows, key: str):
    """{(d, N): [log10 values of the repetitions]} and {d: P} from memorization rows. Logs are
    clipped below at :data:`LOG10_FLOOR`; a repetition that diverged or has no finite value of
    ``key`` (e.g. ``reported_loss`` with no complete window) enters as ``+inf``, so its cell's
    mean is infinite: drawn blank and not memorised (as the threshold search counts it)."""
    cells: dict = defaultdict(list)
    params_of_d: dict = {}
    for r in rows:
        d, N = int(r["params"]["d"]), int(r["params"]["N"])
        value = _metric(r, key)
        if r.get("status") == "diverged":
            value = None
        logs = _log10([value])
        cells[(d, N)].append(max(logs[0], LOG10_FLOOR) if logs else math.inf)
        if _metric(r, "P") is not None:
            params_of_d[d] = int(_metric(r, "P"))
    return cells, params_of_d


def _edges(centers: Sequence[float]) -> np.ndarray:
    c = np.asarray(sorted(centers), float)
    if c.size == 1:
        return np.array([c[0] - 0.5, c[0] + 0.5]) if c[0] else np.array([-0.5, 0.5])
    mid = (c[1:] + c[:-1]) / 2
    return np.concatenate([[c[0] - (mid[0] - c[0])], mid, [c[-1] + (c[-1] - mid[-1])]])


def _heatmap(rows, context, key: str, label: str, threshold: bool = False):
    """Heat map of the mean over repetitions of log10(``key``) over (d^2, N), with the lines
    P = N and d^2 = N; with ``threshold``, also N*(d) (:func:`memorisation_threshold` on these
    means) and its linear fit in d^2. The figure reproducing Fig. 2 uses ``reported_loss``."""
    from matplotlib.figure import Figure

    cells, P_of_d = _grid_means(rows, key)
    ds = sorted({k[0] for k in cells})
    Ns = sorted({k[1] for k in cells})
    Z = np.full((len(Ns), len(ds)), np.nan)
    for (d, N), vals in cells.items():
        if vals:
            Z[Ns.index(N), ds.index(d)] = float(np.mean(vals))
    fig = Figure(figsize=(6.4, 4.8))
    ax = fig.subplots()
    x = [d * d for d in ds]
    finite = Z[np.isfinite(Z)]
    vmin = float(finite.min()) if finite.size else LOG10_FLOOR
    vmax = max(float(finite.max()), vmin + 1e-9) if finite.size else 0.0
    mesh = ax.pcolormesh(_edges(x), _edges(Ns), np.ma.masked_invalid(Z), cmap="viridis", shading="flat",
                         vmin=vmin, vmax=vmax)
    fig.colorbar(mesh, ax=ax, label=f"log10 {label}")
    if P_of_d:
        dd = sorted(P_of_d)
        ax.plot([d * d for d in dd], [P_of_d[d] for d in dd], color="red", lw=1.5, label="P = N")
        ax.plot([d * d for d in dd], [d * d for d in dd], color="white", lw=1.0, ls="--", label="d^2 = N")
    threshold = memorisation_threshold(cells) if threshold else {}
    fit_text = ""
    if len(threshold) >= 3:
        from harness.fits import fit_slope, plot_fit

        dd = sorted(threshold)
        ax.plot([d * d for d in dd], [threshold[d] for d in dd], "o", color="orange", ms=4, mfc="none",
                label=f"N*: largest N memorised (mean log10 {key} <= {MEMORISED_LOG10:g})")
        inside = [d for d in dd if threshold[d] < max(Ns)]  # N* at the grid's edge is censored
        if len(inside) >= 3:
            fit = fit_slope([d * d for d in inside], [threshold[d] for d in inside])
            plot_fit(ax, fit, label="fit N* against d^2", color="orange", band=False, lw=1.0)
            fit_text = ("; orange: N*(d) and its linear fit in d^2 over the d whose N* is inside "
                        "the grid (slope, 95% bootstrap CI in the legend)")
    if P_of_d:
        ax.set_ylim(_edges(Ns)[0], _edges(Ns)[-1])
        ax.legend(loc="upper left", fontsize=6, framealpha=0.6)
    ax.set_xlabel("d^2")
    ax.set_ylabel("N")
    ax.set_title(f"log10 {label}")
    return _finish(fig, context, f"cell colour: mean of log10({key}) over repetitions "
                                 f"(losses clipped at 1e{LOG10_FLOOR}; blank: not run, or a "
                                 f"repetition diverged or has no value); "
                                 f"red: P = N (trainable parameters); dashed: d^2 = N{fit_text}")


def _loss_vs_ratio(rows, context):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.6, 4.0))
    ax = fig.subplots()
    xs, ys = [], []
    for r in rows:
        v, ratio = _metric(r, "final_loss"), _metric(r, "P_over_N")
        if v is not None and ratio is not None and math.isfinite(v):
            xs.append(ratio)
            ys.append(max(v, 1e-300))
    ax.scatter(xs, ys, s=6, alpha=0.5)
    ax.axvline(1.0, color="red", lw=1, label="P = N")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("P / N")
    ax.set_ylabel("final training loss")
    ax.legend(fontsize=7)
    return _finish(fig, context, "one point per cell and repetition")


# ----------------------------------------------------------------------------- Daniely

def labels_of(y: np.ndarray) -> np.ndarray:
    """Labels ``sign(y)`` in {-1, +1} (+1 where ``y = 0``)."""
    return np.where(y < 0, -1.0, 1.0).astype(y.dtype, copy=False)


class TwoLayerMemorization(Experiment):
    name = "two_layer_memorization"
    help = "Daniely (2020) Alg. 1: symmetric-init two-layer net, frozen output, SGD on hinge/logistic; train accuracy vs qd/m"
    params = (
        Param("m", int, 200, "number of points", min=1),
        Param("d", int, 20, "input dimension", min=1),
        Param("steps", int, 2000, "SGD steps T", min=1),
        Param("tol", float, 0.0, "stop once an epoch's training loss is <= tol", min=0.0),
        Param("lr_rule", str, "", "step size as an expression in m, d, q, P ('' keeps the optimizer's lr)",
              check=_lr_rule_problem),
        _CURVE,
        _DIVERGENCE,
    )
    slots = {
        "activation": ("activation", "relu"),
        "architecture": ("architecture", "two_layer"),
        "initializer": ("initializer", "daniely_symmetric"),
        "dataset": ("dataset", "sphere"),
        "loss": ("loss", "hinge"),
        "optimizer": ("optimizer", "sgd"),
        "backend": ("backend", "numba"),
    }
    example = {
        "params": {"m": 40, "d": 8, "steps": 200},
        "components": {"architecture": {"name": "two_layer", "params": {"q": 16}},
                       "optimizer": {"name": "sgd", "params": {"lr": 0.5, "batch_size": 10}}},
    }

    def run(self, cell) -> dict:
        m, d = self.m, self.d
        X, y = cell.dataset.sample(m, d, cell.rng("data"))
        y = labels_of(y)
        arch = cell.architecture
        shapes, trainable = arch.layer_shapes(d), arch.trainable(d)
        q, P = shapes[0][0], arch.param_count(d)
        optimizer, lr = with_lr(cell.optimizer, self.lr_rule, {"m": m, "N": m, "d": d, "q": q, "P": P})
        batch = getattr(optimizer, "batch_size", None) or m
        steps_per_epoch = math.ceil(m / min(batch, m))
        result, w0 = _fit(cell, X, y, shapes, trainable, cell.initializer, optimizer,
                          cell.activation, cell.loss, max_epochs=math.ceil(self.steps / steps_per_epoch),
                          max_steps=self.steps, rules=[ToleranceRule(self.tol)],
                          divergence_factor=self.divergence_factor)
        from harness.engine.network import forward

        h0 = forward(w0, X, cell.activation).output
        accuracy = float(np.mean(y * result.final_output > 0)) if not result.diverged else 0.0
        return {
            "q": q, "m": m, "P": P, "qd_over_m": q * d / m, "P_over_N": P / m, "lr": lr,
            "batch_size": min(batch, m),
            "initial_output_max_abs": float(np.max(np.abs(h0))),
            "train_accuracy": accuracy,
            "inactive_fraction": float(np.mean(np.all(X @ result.weights[0].T <= 0, axis=1))),
            **training_record(result, self.curve_points),
        }

    def estimate(self, cell_params, components) -> dict:
        m, d = int(cell_params["m"]), int(cell_params["d"])
        q = _two_layer_q(components, d)
        opt = ((components or {}).get("optimizer") or {}).get("params") or {}
        batch = min(int(opt.get("batch_size") or m), m)
        # measured on benchmarks/daniely.toml: runs with q d >= 2 m usually reach zero hinge loss
        # (the tolerance rule) after 40-70% of the steps; the others use every step
        steps = int(cell_params["steps"]) * (0.6 if q * d >= 2 * m and cell_params.get("tol") is not None else 1.0)
        cost = _train_cost(m, q * d, steps / math.ceil(m / batch), batch=batch)
        cost["seconds"] += _train_cost(m, q * d, 2)["seconds"]
        return {"memory_bytes": int(8 * m * (d + 3 * q) + 32 * q * d), **cost}

    def figures(self, rows, context) -> dict:
        done = [r for r in rows if r.get("status") in ("ok", "diverged") and r.get("metrics")]
        if not done:
            return {}
        from matplotlib.figure import Figure

        groups: dict = defaultdict(lambda: defaultdict(list))
        for r in done:
            acc = _metric(r, "train_accuracy")
            if acc is not None:
                key = (int(r["params"]["d"]), int(r["params"]["m"]))
                groups[key][round(float(_metric(r, "qd_over_m")), 6)].append(acc)
        fig = Figure(figsize=(5.6, 4.0))
        ax = fig.subplots()
        ms = sorted({m for _, m in groups})
        for d, m in sorted(groups):
            xs = sorted(groups[(d, m)])
            mean = [np.mean(groups[(d, m)][x]) for x in xs]
            std = [np.std(groups[(d, m)][x]) for x in xs]
            ax.errorbar(xs, mean, yerr=std, marker="os^vD"[ms.index(m) % 5], ms=3, capsize=2,
                        label=f"d = {d}, m = {m}")
        ax.axvline(1.0, color="red", lw=1, ls="--", label="q d = m")
        ax.set_xscale("log")
        ax.set_xlabel("q d / m (trainable parameters per point)")
        ax.set_ylabel("training accuracy")
        ax.set_ylim(0.4, 1.02)
        ax.legend(fontsize=7)
        return {"accuracy_vs_qd_over_m": _finish(fig, context, "mean +- 1 std over repetitions")}


def _two_layer_q(components, d: int) -> int:
    arch = (components or {}).get("architecture") or {}
    try:
        from harness.plugin_manager import get_registry

        instance = get_registry().create("architecture", arch.get("name", "two_layer"), arch.get("params", {}))
        return int(instance.layer_shapes(d)[0][0])
    except Exception:
        return 16


# ----------------------------------------------------------------------------- capacity

MODELS = ("deep_adam", "deep_gd", "deep_gd_paper", "two_layer")
MODEL_LABELS = {"deep_gd": "deep_gd (GD, step rule gd_rule, default ntk_smooth)",
                "deep_gd_paper": "deep_gd_paper (GD, step rule paper)"}
"""Legend labels of the capacity figure: which step each GD model uses."""


def deep_width(P: float, d: int, depth: int) -> int:
    """The hidden width ``w >= 1`` whose network ``d -> w -> ... -> w -> 1`` (``depth`` layers)
    has the parameter count ``d w + (depth - 2) w^2 + w`` closest to ``P``."""
    a, b = depth - 2, d + 1
    root = P / b if a == 0 else (-b + math.sqrt(b * b + 4 * a * P)) / (2 * a)
    candidates = {max(1, math.floor(root)), max(1, math.ceil(root))}
    return min(candidates, key=lambda w: (abs(b * w + a * w * w - P), w))


def two_layer_units(P: float, d: int) -> int:
    """The even number of hidden units ``q >= 2`` whose ``q d`` is closest to ``P``."""
    return max(2, 2 * round(P / (2 * d)))


def _positive(x) -> str | None:
    return None if x > 0 else "must be > 0"


def _size_expression(text) -> str | None:
    from harness_plugins.optimizers import _size_expression as check

    return check(text)


class Capacity(Experiment):
    name = "capacity"
    help = ("deep net (Adam; GD with step rule ntk_smooth or paper) vs Daniely's two-layer net on the "
            "same data at P/N = ratio")
    params = (
        Param("N", int, 400, "number of training samples", min=1),
        Param("d", int, 10, "input dimension", min=1),
        Param("ratio", float, 1.0, "target trainable parameters per sample P / N", check=_positive),
        Param("model", str, "deep_adam", "which network and optimizer", choices=MODELS),
        Param("depth", int, 4, "layers of the deep network (depth - 1 hidden layers of width w)", min=2),
        Param("max_epochs", int, 3000, "epoch budget of every model", min=1),
        Param("window", int, 100, "deep_adam early-stopping window (0: none)", min=0),
        Param("lr_rule", str, "1/(10*sqrt(N))", "deep_adam learning rate (expression in N, d, P)",
              check=_lr_rule_problem),
        Param("gd_rule", str, "ntk_smooth", "step rule of deep_gd and of the two_layer SGD step (see gd_theory)",
              choices=("ntk_smooth", "paper", "ntk", "constant")),
        Param("gd_c", float, 1.0, "deep_gd and deep_gd_paper step multiplier c", check=_positive),
        Param("gd_gamma", (str, float), "1", "rule paper (deep_gd_paper): gamma, expression in N, d, "
              "n = n_{L-1}", check=_size_expression),
        Param("gd_C", (str, float), "N/2", "rule paper (deep_gd_paper): the constant C, expression in N, "
              "d, n = n_{L-1}; N/2 converts a step stated for the loss 1/2 sum (f - y)^2 to ours, "
              "mean (f - y)^2 (the paper's constant itself taken as 1)", check=_size_expression),
        Param("two_layer_c", float, 1.0, "two_layer SGD step = two_layer_c x the gd_rule step at init",
              check=_positive),
        Param("two_layer_lr", float, None, "two_layer SGD step, overriding two_layer_c", check=_positive),
        Param("two_layer_batch_size", int, 40, "two_layer SGD batch (>= N: full batch)", min=1),
        Param("two_layer_B", float, 1.0, "two_layer output weights +-B/sqrt(q)", check=_positive),
        Param("zero_tol", float, 1e-3, "a run reaches zero training loss when final_loss <= zero_tol "
              "(training also stops once an epoch's loss is <= zero_tol / 10)", min=0.0),
        _CURVE,
        _DIVERGENCE,
    )
    slots = {
        "activation": ("activation", "relu"),
        "dataset": ("dataset", "gaussian"),
        "loss": ("loss", "mse"),
        "deep_initializer": ("initializer", "fan_in_gaussian"),
        "backend": ("backend", "numba"),
    }
    example = {"params": {"N": 40, "d": 5, "ratio": 2.0, "model": "two_layer", "max_epochs": 100}}

    def run(self, cell) -> dict:
        from harness import TrainingProblem
        from harness.plugin_manager import get_registry

        registry = get_registry()
        N, d, target = self.N, self.d, self.ratio * self.N
        X, y = cell.dataset.sample(N, d, cell.rng("data"))
        if self.model == "two_layer":
            arch = registry.create("architecture", "two_layer", {"q": two_layer_units(target, d)})
            init = registry.create("initializer", "daniely_symmetric", {"B": self.two_layer_B})
        else:
            w = deep_width(target, d, self.depth)
            arch = registry.create("architecture", "fc", {"widths": [w] * (self.depth - 1)})
            init = cell.deep_initializer
        shapes, trainable = arch.layer_shapes(d), arch.trainable(d)
        P = arch.param_count(d)
        weights = init.initialize(shapes, cell.rng("init"), X.dtype)
        rules, lr, step = [], None, {}
        if self.model == "deep_adam":
            optimizer, lr = with_lr(registry.create("optimizer", "adam"), self.lr_rule, {"N": N, "d": d, "P": P})
            if self.window:
                rules.append(WindowRule(self.window))
        elif self.model in ("deep_gd", "deep_gd_paper"):
            rule = "paper" if self.model == "deep_gd_paper" else self.gd_rule
            optimizer = registry.create("optimizer", "gd_theory", {"rule": rule, "c": self.gd_c,
                                                                   "gamma": self.gd_gamma, "C": self.gd_C})
        else:
            lr = self.two_layer_lr
            if lr is None:  # the theory step of the same rule, used as the SGD step
                theory = registry.create("optimizer", "gd_theory", {"rule": self.gd_rule, "c": self.two_layer_c,
                                                                    "gamma": self.gd_gamma, "C": self.gd_C})
                step = theory.prepare(TrainingProblem(X, y, weights, cell.activation, trainable, cell.loss))
                lr = step["eta"]
                step["eta_rule"] = "sgd lr = " + step["eta_rule"]
            optimizer = registry.create("optimizer", "sgd", {"lr": lr, "batch_size": self.two_layer_batch_size})
        rules.append(ToleranceRule(self.zero_tol / 10))
        result = train(weights, X, y, cell.activation, cell.loss, optimizer, trainable=trainable,
                       max_epochs=self.max_epochs, rules=rules, rng=cell.rng("batches"),
                       divergence_factor=self.divergence_factor, backend=cell.backend)
        result.prepared.update(step)
        record = training_record(result, self.curve_points)
        return {
            "P": P, "P_over_N": P / N, "width": shapes[0][0], "lr": lr,
            "reached_zero": bool(record["final_loss"] <= self.zero_tol),
            **record,
        }

    def estimate(self, cell_params, components) -> dict:
        N, d, ratio = int(cell_params["N"]), int(cell_params["d"]), float(cell_params["ratio"])
        P = max(ratio * N, d)
        depth = int(cell_params.get("depth", 4))
        width = max(two_layer_units(P, d), deep_width(P, d, depth))
        memory = int(8 * N * (d + 4 * width) + 32 * P)
        epochs = int(cell_params.get("max_epochs", 3000))
        if cell_params["model"] == "two_layer":
            q = two_layer_units(P, d)
            cost = _train_cost(N, q * d, epochs, batch=int(cell_params.get("two_layer_batch_size", 40)))
        else:
            w = deep_width(P, d, depth)
            P_actual = d * w + (depth - 2) * w * w + w
            if cell_params["model"] == "deep_adam":
                epochs = _expected_epochs({**cell_params, "max_epochs": epochs}, P_actual, N)
            cost = _train_cost(N, P_actual, epochs)
        return {"memory_bytes": memory, **cost}

    @staticmethod
    def table(rows: Sequence[Mapping[str, Any]]) -> list[dict]:
        """One line per (model, target ratio): repetitions, fraction reaching zero training
        loss, mean and median final loss (diverged runs count as not reaching zero and are
        left out of the loss statistics), mean actual P / N."""
        groups: dict = defaultdict(list)
        for r in rows:
            if r.get("status") in ("ok", "diverged") and r.get("metrics"):
                groups[(r["params"]["model"], float(r["params"]["ratio"]))].append(r)
        lines = []
        for (model, ratio) in sorted(groups, key=lambda k: (MODELS.index(k[0]) if k[0] in MODELS else 99, k[1])):
            group = groups[(model, ratio)]
            losses = [float(_metric(r, "final_loss")) for r in group
                      if _metric(r, "final_loss") is not None and math.isfinite(_metric(r, "final_loss"))]
            lines.append({
                "model": model, "ratio": ratio,
                "P_over_N": float(np.mean([_metric(r, "P_over_N") for r in group])),
                "n": len(group),
                "fraction_zero": float(np.mean([bool(_metric(r, "reached_zero")) for r in group])),
                "final_loss_mean": float(np.mean(losses)) if losses else None,
                "final_loss_median": float(np.median(losses)) if losses else None,
                "diverged": sum(r.get("status") == "diverged" for r in group),
            })
        return lines

    def figures(self, rows, context) -> dict:
        lines = self.table(rows)
        if not lines:
            return {}
        return {"capacity": _capacity_figure(lines, context),
                "capacity_table": _table_figure(lines, context)}


def _capacity_figure(lines, context):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9.6, 3.9))
    ax1, ax2 = fig.subplots(1, 2)
    for model in [m for m in MODELS if any(l["model"] == m for l in lines)]:
        own = sorted((l for l in lines if l["model"] == model), key=lambda l: l["P_over_N"])
        x = [l["P_over_N"] for l in own]
        ax1.plot(x, [l["fraction_zero"] for l in own], marker="o", label=MODEL_LABELS.get(model, model))
        pts = [(l["P_over_N"], l["final_loss_median"]) for l in own if l["final_loss_median"] is not None]
        if pts:
            ax2.plot([p[0] for p in pts], [max(p[1], 1e-300) for p in pts], marker="o",
                     label=MODEL_LABELS.get(model, model))
    ticks = sorted({round(l["ratio"], 6) for l in lines})
    for ax in (ax1, ax2):
        ax.set_xscale("log")
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.minorticks_off()
        ax.axvline(1.0, color="gray", lw=1, ls="--")
        ax.set_xlabel("P / N (trainable parameters per sample)")
        ax.legend(fontsize=7)
    ax1.set_ylabel("fraction of seeds reaching zero loss")
    ax1.set_ylim(-0.03, 1.03)
    ax2.set_yscale("log")
    ax2.set_ylabel("final training loss (median over seeds)")
    return _finish(fig, context, "fraction: final loss <= zero_tol; right: median over repetitions")


def _table_figure(lines, context, cols=None, what="one line per model and target P / N"):
    from matplotlib.figure import Figure

    cols = cols or ["model", "ratio", "P_over_N", "n", "fraction_zero", "final_loss_mean",
                    "final_loss_median", "diverged"]

    def fmt(v):
        if isinstance(v, float):
            return f"{v:.3g}"
        return "-" if v is None else str(v)

    fig = Figure(figsize=(9.0, 0.5 + 0.2 * (len(lines) + 1)))
    ax = fig.subplots()
    ax.axis("off")
    table = ax.table(cellText=[[fmt(l[c]) for c in cols] for l in lines], colLabels=cols,
                     loc="upper center", bbox=(0, 0, 1, 1))
    table.auto_set_font_size(False)
    table.set_fontsize(7)
    return _finish(fig, context, what)


EXPERIMENTS = (Memorization, TwoLayerMemorization, Capacity)


@hookimpl
def harness_register_experiments(registry):
    for component in EXPERIMENTS:
        registry.add(component)

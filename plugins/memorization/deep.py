"""``memorization`` (Bombari, Amani and Mondelli 2022, Figure 2). A deep ReLU network (the
benchmark file picks ``architecture = {name = "fc", widths = ["d", "d", "d"]}``, i.e.
d -> d -> d -> d -> 1) is trained by full-batch Adam on N Gaussian inputs with N(0, 1) targets,
MSE without 1/2, at most ``max_epochs`` epochs with the paper's early stopping (windows of
``window`` epochs; stop when a window's loss sum exceeds the previous one). The learning rate
is the expression ``lr_rule`` in ``N``, ``d`` and ``P`` (the trainable parameter count), by
default the paper's ``"1/(10*sqrt(N))"``, unless the benchmark file sets the optimizer's ``lr``
(``optimizer = {name = "adam", lr = 0.0007}``): an explicit ``lr`` wins over the default rule,
``lr_rule = ""`` keeps the optimizer's own ``lr``, and an explicit ``lr`` with an explicit
``lr_rule`` is refused when the file loads (:mod:`harness.spec.slot_rules`); optimizers without
an ``lr``, such as ``gd_theory``, ignore it. The ``lr`` that ran is the row's metric ``lr`` and
its ``components.optimizer.params.lr``. Rows hold ``final_loss`` (the full-batch loss at the final weights),
``reported_loss`` (the authors' value, what the paper plots: the sum of the last complete
window that did not exceed its predecessor, i.e. at a window stop the window *before* the one
that triggered it and otherwise the last complete window, divided by ``window / 2`` = 50),
``reported_window_start`` / ``reported_window_end`` (that window's epochs, counted from 0,
start inclusive, end exclusive), ``stop_window_loss`` (the window that triggered the stop, sum /
50: right after a loss spike, *not* the paper's value), ``windows`` (complete windows), all from
:class:`harness.engine.stopping.WindowRule` and ``None`` without a window rule or a complete
window, then ``stop_epoch``, ``stop_reason``, ``P``, ``P_over_N``, the step actually used
(``lr``, or ``eta_rule`` and ``eta`` for ``gd_theory``), ``weights_unchanged`` (true when the
optimizer stepped yet no weight moved: a row that did not train) and the loss curve (``loss_curve``
against ``loss_curve_epoch``, subsampled to ``curve_points`` points). A diverged run reports
``final_loss = inf`` (so its row is marked diverged). Figures: ``heatmap``, the one that
reproduces Fig. 2: the mean over repetitions of log10(reported_loss) over (d^2, N) with the
lines P = N and d^2 = N and the memorisation threshold N*(d) (memorised: that mean <= -3,
:func:`memorisation_threshold`); ``heatmap_final_loss``, the same map of log10(final_loss)
(no threshold); and the final loss against P / N.

Precision (``dtype``, default ``"float64"``): ``"float32"`` trains in single precision, as the
authors did (torch's default): the data (the dataset's float64 draws rounded), the weights,
Adam's moments and steps, the matrix products (SGEMM) and each epoch's loss; the window sums
behind ``reported_loss`` accumulate in float64 either way. ``two_layer_memorization`` and
``capacity`` take the same parameter.

Batching (``batched = true``, the default): cells of one block with equal ``N``, ``d``, ``dtype`` and
components (initializer and dataset aside), such as the repetitions of a grid point, are
trained together by :func:`harness.engine.batched_training.train_batch` (``batch_key`` /
``run_batch``); each row is bit-identical to the cell's row alone except ``timings`` (on the
``torch`` backend, equal to rounding: the stack runs as batched torch products).
``batched = false`` trains every cell alone. ``two_layer_memorization`` and ``capacity`` batch
the same way, without a parameter (``HARNESS_BATCH=0`` turns batching off for every experiment).
"""
from __future__ import annotations

import numpy as np

from harness.engine.stopping import ToleranceRule, WindowRule
from harness.plugin import Experiment, Expr, Param, dataset_problem, hidden_widths_resolved

from ._common import (
    _BATCHED,
    _CURVE,
    _DIVERGENCE,
    _DTYPE,
    _SAVE_ARRAYS,
    REPORTED_LABEL,
    TRAINING_METRICS,
    WINDOW_FIELDS,
    _batch_key,
    _fit,
    _fit_cells,
    _timings,
    engine_model,
    finished_rows,
    lr_problem,
    save_training_arrays,
    training_data,
    training_problem,
    training_record,
    training_stopping,
    with_lr,
)
from .costs import _component_widths, _expected_epochs, _train_cost
from .figures import _heatmap, _loss_vs_ratio, _table_figure, loss_curves_figure
from .threshold_figures import TABLE_COLUMNS, search_map, threshold_figure, threshold_lines


class Memorization(Experiment):
    name = "memorization"
    help = ("Bombari et al. Fig. 2: deep ReLU net, full-batch Adam, window early stopping; reported (paper's) "
            "and final loss vs (d^2, N)")
    metrics = TRAINING_METRICS + ("N", "d", "d2", "P", "P_over_N", "ntk_path", "reported_loss",
                                  "reported_window_start", "reported_window_end", "stop_window_loss", "windows")
    params = (
        Param("N", int, 400, "number of training samples", min=1),
        Param("d", int, 22, "input dimension (also the hidden width with widths = [d, d, d])", min=1),
        Param("max_epochs", int, 10000, "epoch budget", min=1),
        Param("window", int, 100, "early-stopping window in epochs (0: no window rule)", min=0),
        Param("tol", float, None, "also stop once the loss is <= tol (unset: no tolerance rule)", min=0.0),
        Param("lr_rule", str, "1/(10*sqrt(N))",
              "learning rate as an expression in N, d, P, unless the optimizer's lr is set ('' keeps the "
              "optimizer's lr; an explicit optimizer.lr and lr_rule are refused together)",
              check=Expr("N", "d", "P", empty=True), sets="optimizer.lr"),
        _CURVE,
        _DIVERGENCE,
        _BATCHED,
        _DTYPE,
        _SAVE_ARRAYS,
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

    def check(self, params, components):
        """Widths >= 1 at this d, a usable lr from lr_rule, a dataset that works at this d."""
        arch = components["architecture"]
        P = arch.param_count(self.d)  # a width below 1 at this d: SpecError
        problem = training_problem(arch, self.d, components.get("backend"))
        if problem:
            return "architecture", problem
        problem = lr_problem(components.get("optimizer"), self.lr_rule, {"N": self.N, "d": self.d, "P": P})
        if problem:
            return "lr_rule", problem
        return dataset_problem(components.get("dataset"), self.d)

    def _job(self, cell) -> dict:
        """Data, network and optimizer of one cell (what :func:`_fit` takes)."""
        N, d = self.N, self.d
        X, y = training_data(cell, N, d, self.dtype)
        arch = cell.architecture
        shapes = arch.layer_shapes(d)
        model, trainable = engine_model(arch, d)
        P = arch.param_count(d)
        optimizer, lr = with_lr(cell.optimizer, self.lr_rule, {"N": N, "d": d, "P": P})
        rules = [WindowRule(self.window)] if self.window else []
        if self.tol is not None:
            rules.append(ToleranceRule(self.tol))
        return {"cell": cell, "X": X, "y": y, "shapes": shapes, "trainable": trainable, "P": P,
                "arch": arch, "model": model, "layer_trainable": arch.trainable(d),
                "lr": lr, "initializer": cell.initializer, "optimizer": optimizer, "rules": rules,
                "max_epochs": self.max_epochs, "divergence_factor": self.divergence_factor}

    def run(self, cell) -> dict:
        job = self._job(cell)
        result, _ = _fit(cell, job["X"], job["y"], job["shapes"], job["trainable"], cell.initializer,
                         job["optimizer"], cell.activation, cell.loss, max_epochs=self.max_epochs,
                         rules=job["rules"], divergence_factor=self.divergence_factor,
                         arch=job["arch"], model=job["model"], layer_trainable=job["layer_trainable"])
        return self._record(job, result)

    @classmethod
    def batch_key(cls, params, components):
        """Cells of equal N, d, dtype and components (initializer and dataset aside) train as one
        stack."""
        return _batch_key(params, components, ("N", "d", "batched", "dtype"))

    @classmethod
    def run_batch(cls, members) -> list:
        """The cells' networks trained together (:func:`harness.engine.batched_training.train_batch`):
        every result is the one ``run`` gives for that cell alone (bit for bit, but
        ``timings``; to rounding on the torch backend). Falls back to ``run`` per cell when the
        cells cannot share a stack."""
        return [experiment._record(job, result) for experiment, job, result, _ in _fit_cells(members)]

    def _record(self, job, result) -> dict:
        N, d, P, lr, shapes = self.N, self.d, job["P"], job["lr"], job["shapes"]
        window = result.rules
        resolved = hidden_widths_resolved(job["arch"], shapes)
        if lr is not None:
            resolved["optimizer.lr"] = lr
        if self.save_arrays:
            save_training_arrays(job["cell"], job["X"], job["y"], result, job["arch"], d)
        return {
            "d2": d * d, "P": P, "P_over_N": P / N, "lr": lr,
            "ntk_path": job["arch"].ntk_path(d),
            **training_record(result, self.curve_points, lr),
            **{key: window.get(key) for key in WINDOW_FIELDS},
            "timings": _timings(result),
            "resolved": resolved,
        }

    @classmethod
    def stopping(cls, metrics):
        return training_stopping(metrics)

    def estimate(self, cell_params, components) -> dict:
        N, d = int(cell_params["N"]), int(cell_params["d"])
        widths = _component_widths(self, d)
        P = sum(a * b for a, b in zip([d] + widths, widths + [1]))
        dtype = str(cell_params.get("dtype", "float64"))
        size = np.dtype(dtype).itemsize
        return {"memory_bytes": int(size * N * (d + 3 * sum(widths) + 4) + 4 * size * P),
                **_train_cost(N, P, _expected_epochs(cell_params, P, N), dtype=dtype)}

    def tables(self, rows, context) -> list:
        """N*(d) as over-parameterisation with the fit N* = c d^2 (a search over N); the float32 /
        float64 epoch-time ratios (a ``dtype`` axis); or the threshold and the points read off the
        grid (:mod:`harness_plugins.memorization.tables`)."""
        from .tables import dtype_speed_table, grid_tables, search_table

        if context.search:
            if context.search.get("axis") != "N" or not context.thresholds:
                return []
            done = finished_rows(rows)
            return search_table(context.thresholds, done, context)
        speed = dtype_speed_table(rows, context)  # a dtype axis: the run times the two precisions
        return [speed] if speed is not None else grid_tables(rows, context)

    def figures(self, rows, context) -> dict:
        done = finished_rows(rows)
        if not done:
            return {}
        if context.search:  # the searched points are scattered along N: no heat map of them
            if context.search.get("axis") != "N" or not context.thresholds:
                return {}
            lines = threshold_lines(context.thresholds, done)
            figures = {"thresholds": threshold_figure(lines, context)}
            figures["threshold_table"] = _table_figure(
                lines, context, cols=TABLE_COLUMNS, width=15.0, number_format=".4g",
                what="one line per d and level: N* with its search bracket and 95% bootstrap interval over "
                     "repetitions, N*/d^2 and N*/P; early_stop_fraction: the share of the runs at the bracket "
                     "stopped early by the window rule; median_stop_epoch: their median stop epoch")
            figures["search_map"] = search_map(done, lines, context)
            return figures
        from harness.plugin.series import slug, split_rows

        # one heat map per value of any grid axis besides (d, N) (architecture, activation, ...)
        groups = split_rows(done, lambda r: (int(r["params"]["d"]), int(r["params"]["N"])))
        figures = {}
        for i, (label, part) in enumerate(groups):
            suffix = f"-{slug(label, i + 1)}" if label else ""
            figures["heatmap" + suffix] = _heatmap(part, context, "reported_loss", REPORTED_LABEL,
                                                   threshold=True, series=label)
            figures["heatmap_final_loss" + suffix] = _heatmap(part, context, "final_loss", "final loss",
                                                              series=label)
        figures["loss_vs_P_over_N"] = _loss_vs_ratio(done, context, groups)
        curves = loss_curves_figure(done, context)
        if curves is not None:
            figures["loss_curves"] = curves
        return figures

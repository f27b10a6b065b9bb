"""``two_layer_memorization`` (Daniely 2020, Algorithm 1). ``h(x) = sum_i u_i sigma(<w_i, x>)``
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
with every hidden pre-activation <= 0 at the end of training.) ``dtype`` (``"float64"``,
default, or ``"float32"``) is the precision of the training (see ``memorization``).
"""
from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

from harness.engine.stopping import ToleranceRule
from harness.plugin import Experiment, Expr, Param, dataset_problem

from ._common import (
    _CURVE,
    _DIVERGENCE,
    _DTYPE,
    _SAVE_ARRAYS,
    TRAINING_METRICS,
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
from .costs import _train_cost, _two_layer_q
from .figures import _finish, _metric, loss_curves_figure


def labels_of(y: np.ndarray) -> np.ndarray:
    """Labels ``sign(y)`` in {-1, +1} (+1 where ``y = 0``)."""
    return np.where(y < 0, -1.0, 1.0).astype(y.dtype, copy=False)


class TwoLayerMemorization(Experiment):
    name = "two_layer_memorization"
    help = ("Daniely (2020) Alg. 1: symmetric-init two-layer net, frozen output, SGD on hinge/logistic; "
            "train accuracy vs qd/m")
    metrics = TRAINING_METRICS + ("N", "d", "m", "q", "P", "P_over_N", "batch_size", "ntk_path", "qd_over_m",
                                  "train_accuracy", "inactive_fraction", "initial_output_max_abs")
    params = (
        Param("m", int, 200, "number of points", min=1),
        Param("d", int, 20, "input dimension", min=1),
        Param("steps", int, 2000, "SGD steps T", min=1),
        Param("tol", float, 0.0, "stop once an epoch's training loss is <= tol", min=0.0),
        Param("lr_rule", str, "", "step size as an expression in m, d, q, P ('' keeps the optimizer's lr; "
              "an explicit optimizer.lr and a rule are refused together)",
              check=Expr("m", "N", "d", "q", "P", empty=True), sets="optimizer.lr"),
        _CURVE,
        _DIVERGENCE,
        _DTYPE,
        _SAVE_ARRAYS,
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

    def check(self, params, components):
        """q >= 1 at this d, a usable lr from lr_rule, a dataset that works at this d."""
        arch = components["architecture"]
        q, P = arch.layer_shapes(self.d)[0][0], arch.param_count(self.d)
        problem = training_problem(arch, self.d, components.get("backend"))
        if problem:
            return "architecture", problem
        problem = lr_problem(components.get("optimizer"), self.lr_rule,
                             {"m": self.m, "N": self.m, "d": self.d, "q": q, "P": P})
        if problem:
            return "lr_rule", problem
        try:  # the initializer takes these shapes (daniely_symmetric: an even q)
            components["initializer"].expected_variances(arch.layer_shapes(self.d))
        except (ValueError, NotImplementedError) as exc:
            if isinstance(exc, ValueError):
                return ("architecture.q" if "q" in getattr(arch, "config", {}) else "initializer"), str(exc)
        return dataset_problem(components.get("dataset"), self.d)

    def _job(self, cell) -> dict:
        """Data, network and optimizer of one cell (what :func:`_fit` takes)."""
        m, d = self.m, self.d
        X, y = training_data(cell, m, d, self.dtype)
        y = labels_of(y)
        arch = cell.architecture
        shapes = arch.layer_shapes(d)
        model, trainable = engine_model(arch, d)
        q, P = shapes[0][0], arch.param_count(d)
        optimizer, lr = with_lr(cell.optimizer, self.lr_rule, {"m": m, "N": m, "d": d, "q": q, "P": P})
        batch = getattr(optimizer, "batch_size", None) or m
        steps_per_epoch = math.ceil(m / min(batch, m))
        return {"cell": cell, "X": X, "y": y, "shapes": shapes, "trainable": trainable, "arch": arch,
                "model": model, "layer_trainable": arch.trainable(d), "q": q, "P": P, "lr": lr,
                "batch": batch, "initializer": cell.initializer, "optimizer": optimizer,
                "rules": [ToleranceRule(self.tol)], "max_epochs": math.ceil(self.steps / steps_per_epoch),
                "max_steps": self.steps, "divergence_factor": self.divergence_factor}

    def run(self, cell) -> dict:
        job = self._job(cell)
        result, w0 = _fit(cell, job["X"], job["y"], job["shapes"], job["trainable"], cell.initializer,
                          job["optimizer"], cell.activation, cell.loss, max_epochs=job["max_epochs"],
                          max_steps=job["max_steps"], rules=job["rules"],
                          divergence_factor=self.divergence_factor, arch=job["arch"], model=job["model"],
                          layer_trainable=job["layer_trainable"])
        return self._record(job, result, w0)

    @classmethod
    def batch_key(cls, params, components):
        """Cells of equal m and d and equal components (initializer and dataset aside) train as
        one stack (the repetitions of a grid point: Daniely's networks are small, so a stack of
        them costs little more than one), in one ``dtype``; ``HARNESS_BATCH=0`` turns it off."""
        return _batch_key(params, components, ("m", "d", "dtype"))

    @classmethod
    def run_batch(cls, members) -> list:
        """The cells' networks trained together (:func:`harness.engine.batched_training.train_batch`):
        every result is the one ``run`` gives for that cell alone (bit for bit, but ``timings``)."""
        return [experiment._record(job, result, w0) for experiment, job, result, w0 in _fit_cells(members)]

    def _record(self, job, result, w0) -> dict:
        m, d, X, y, arch, model = self.m, self.d, job["X"], job["y"], job["arch"], job["model"]
        activation = job["cell"].activation
        h0 = np.asarray(arch.forward(w0, X, activation))
        accuracy = float(np.mean(y * result.final_output > 0)) if not result.diverged else 0.0
        first = X @ result.weights[0].T  # first-layer pre-activations (with its bias, if any)
        if model is not None and getattr(model, "bias_index", [None])[0] is not None:
            first = first + result.weights[model.bias_index[0]][:, 0]
        if self.save_arrays:
            save_training_arrays(job["cell"], X, y, result, arch, d)
        q, lr = job["q"], job["lr"]
        return {
            "q": q, "m": m, "P": job["P"], "qd_over_m": q * d / m, "P_over_N": job["P"] / m, "lr": lr,
            "batch_size": min(job["batch"], m),
            "initial_output_max_abs": float(np.max(np.abs(h0))),
            "train_accuracy": accuracy,
            "inactive_fraction": float(np.mean(np.all(first <= 0, axis=1))),
            "ntk_path": arch.ntk_path(d),
            **training_record(result, self.curve_points, lr),
            "timings": _timings(result),
            "resolved": {"architecture.q": q, **({"optimizer.lr": lr} if lr is not None else {})},
        }

    @classmethod
    def stopping(cls, metrics):
        return training_stopping(metrics)

    def estimate(self, cell_params, components) -> dict:
        m, d = int(cell_params["m"]), int(cell_params["d"])
        q = _two_layer_q(self, d)
        opt = ((components or {}).get("optimizer") or {}).get("params") or {}
        batch = min(int(opt.get("batch_size") or m), m)
        # measured on benchmarks/daniely.toml: runs with q d >= 2 m usually reach zero hinge loss
        # (the tolerance rule) after 40-70% of the steps; the others use every step
        steps = int(cell_params["steps"]) * (0.6 if q * d >= 2 * m and cell_params.get("tol") is not None else 1.0)
        loss = ((components or {}).get("loss") or {}).get("name", "hinge")
        cost = _train_cost(m, q * d, steps / math.ceil(m / batch), batch=batch, margin_loss=loss != "mse")
        cost["seconds"] += _train_cost(m, q * d, 2)["seconds"]
        size = np.dtype(cell_params.get("dtype", "float64")).itemsize
        return {"memory_bytes": int(size * m * (d + 3 * q) + 4 * size * q * d), **cost}

    def tables(self, rows, context) -> list:
        """On a grid: training accuracy against q d / m with its intervals
        (:func:`harness_plugins.memorization.tables.two_layer_tables`); a threshold search's
        table comes from the harness."""
        from .tables import two_layer_tables

        return [] if context.search else two_layer_tables(rows, context)

    def figures(self, rows, context) -> dict:
        done = finished_rows(rows)
        if not done:
            return {}
        from matplotlib.figure import Figure

        from harness.plugin.series import split_rows

        def drawn(r):
            qd = _metric(r, "qd_over_m")
            return int(r["params"]["d"]), int(r["params"]["m"]), None if qd is None else round(float(qd), 6)

        # any grid axis besides d, m and q (an activation, a loss, ...) gets its own lines
        split = split_rows(done, drawn)
        series = {label: i for i, (label, _) in enumerate(split)}
        groups: dict = defaultdict(lambda: defaultdict(list))
        for label, part in split:
            for r in part:
                acc = _metric(r, "train_accuracy")
                if acc is not None:
                    key = (label, int(r["params"]["d"]), int(r["params"]["m"]))
                    groups[key][round(float(_metric(r, "qd_over_m")), 6)].append(acc)
        fig = Figure(figsize=(5.6, 4.0))
        ax = fig.subplots()
        ms = sorted({m for _, _, m in groups})
        for label, d, m in sorted(groups, key=lambda k: (series[k[0]], k[1], k[2])):
            xs = sorted(groups[(label, d, m)])
            mean = [np.mean(groups[(label, d, m)][x]) for x in xs]
            std = [np.std(groups[(label, d, m)][x]) for x in xs]
            ax.errorbar(xs, mean, yerr=std, marker="os^vD"[ms.index(m) % 5], ms=3, capsize=2,
                        label=f"{label + ': ' if label else ''}d = {d}, m = {m}")
        ax.axvline(1.0, color="red", lw=1, ls="--", label="q d = m")
        ax.set_xscale("log")
        ax.set_xlabel("q d / m (trainable parameters per point)")
        ax.set_ylabel("training accuracy")
        ax.set_ylim(0.4, 1.02)
        ax.legend(fontsize=7)
        figures = {"accuracy_vs_qd_over_m": _finish(fig, context, "mean +- 1 std over repetitions")}
        curves = loss_curves_figure(done, context)
        if curves is not None:
            figures["loss_curves"] = curves
        return figures

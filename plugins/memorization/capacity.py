"""``capacity``. On one data set (the dataset and loss slots; default Gaussian inputs and targets,
MSE), train at a target parameter count ``P = ratio * N``:

- ``deep_adam``: the deep network of depth ``depth`` (hidden widths all ``w``, with ``w`` the
  integer closest to the solution of ``P(w) = d w + (depth - 2) w^2 + w = ratio N``), full-batch
  Adam with ``lr_rule`` and the window rule;
- ``deep_gd``: the same network, full-batch ``gd_theory`` with rule ``gd_rule`` (default
  ``ntk_smooth``: eta = c N / (2 lambda_max(K0)) for the MSE) and multiplier ``gd_c``, for at
  most ``gd_max_epochs`` epochs (its own budget: see below);
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
  initialisation (so that the step follows the data's scale; recorded as ``eta_rule``/``eta``);
- ``slots``: the network and optimizer of the experiment's ``architecture`` and ``optimizer``
  slots, configured like any slot (``architecture = { name = "residual", blocks = 2 }``,
  ``optimizer = "adam"``; a plugin's component too). The architecture's width parameter, the
  first of ``WIDTH_PARAMS`` (``width``, ``widths``, ``q``) it declares (a list such as ``fc``'s
  ``widths`` has every entry set, keeping its length), is the integer ``w`` whose
  ``param_count(d)`` is closest to ``ratio N``, found by bisection; the optimizer is used as
  configured (its own ``lr``). The row's ``components`` show the architecture with the chosen
  width (``resolved``). The two slots are optional and unused by the four built-in models.

Budgets: every network stops on its own once its loss is <= ``zero_tol / 10`` (it memorises);
Adam, the two-layer SGD and ``slots`` train for at most ``max_epochs`` epochs, the two GD models
for at most ``gd_max_epochs`` (default 100,000). The NTK of these narrow networks is
ill-conditioned at initialisation (condition numbers of 1e4-1e5), so a 1/smoothness step needs
that many steps for its slowest mode: within Adam's 3000 epochs GD memorises at no P/N, which
says nothing about capacity. ``estimate`` costs a GD cell at its whole budget.

``dtype`` (``"float64"``, default, or ``"float32"``) is the precision every model trains in (see
``memorization``).

``model`` is a grid axis; keying the seed on the other axes only (``seed_by``) gives every model
the same data. Rows hold ``final_loss``, ``reached_zero`` (``final_loss <= zero_tol``), the
actual ``P`` and ``P_over_N``. Outputs: a table (:meth:`Capacity.table`, also drawn as the
figure ``capacity_table``), a figure of the fraction of seeds that reach zero loss and of the
final loss against P / N, per model (each labelled with its step rule and epoch budget:
:func:`model_label`), the answer tables (:meth:`Capacity.tables`: the fractions with Wilson
intervals; with a threshold search, P*/N per model with its rule and budget) and, for a search,
its figure with the same labels.
"""
from __future__ import annotations

import math
from collections import defaultdict
from typing import Any, Mapping, Sequence

import numpy as np

from harness.engine.stopping import ToleranceRule, WindowRule
from harness.engine.training import train
from harness.plugin import Experiment, Expr, Param, dataset_problem

from ._common import (
    _CURVE,
    _DIVERGENCE,
    _DTYPE,
    _SAVE_ARRAYS,
    MODELS,
    TRAINING_METRICS,
    _batch_key,
    _fit_cells,
    _timings,
    _warm_up_training,
    finished_rows,
    lr_problem,
    save_training_arrays,
    training_data,
    training_record,
    training_stopping,
    with_lr,
)
from .costs import _expected_epochs, _train_cost
from .figures import _capacity_figure, _metric, _table_figure, capacity_threshold_figure, loss_curves_figure


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


CAPACITY_MODELS = (*MODELS, "slots")

WIDTH_PARAMS = ("width", "widths", "q")
"""Model ``slots``: the architecture parameters that set its width, the first declared is sized."""


def width_param(arch) -> str | None:
    """The first of :data:`WIDTH_PARAMS` that ``arch`` declares, or ``None``."""
    return next((p for p in WIDTH_PARAMS if p in arch.config), None)


def sized_architecture(arch, d: int, P: float, width_param: str):
    """``(architecture, value)``: a copy of ``arch`` with its parameter ``width_param`` (an int,
    or every entry of a list) set to the integer ``w >= 1`` whose ``param_count(d)`` is closest
    to ``P`` (the smaller on a tie), found by bisection (the count grows with the width)."""
    current = arch.config[width_param]
    as_list = isinstance(current, (list, tuple))

    def build(w):
        value = [w] * len(current) if as_list else w
        return type(arch)(**{**arch.config, width_param: value}), value

    def count(w):
        return build(w)[0].param_count(d)

    hi = 1
    while count(hi) < P and hi < 2 ** 40:
        hi *= 2
    lo = max(1, hi // 2)
    while lo < hi:  # the smallest w with count(w) >= P
        mid = (lo + hi) // 2
        if count(mid) >= P:
            hi = mid
        else:
            lo = mid + 1
    w = min({max(1, lo - 1), lo}, key=lambda v: (abs(count(v) - P), v))
    return build(w)


GD_MODELS = ("deep_gd", "deep_gd_paper")


def epoch_budget(params: Mapping[str, Any]) -> int:
    """The epochs a cell may train: ``gd_max_epochs`` for the GD models, ``max_epochs`` otherwise."""
    if params.get("model") in GD_MODELS:
        return int(params.get("gd_max_epochs", 100000))
    return int(params.get("max_epochs", 3000))


def step_rule(params: Mapping[str, Any]) -> str:
    """How a model of ``params`` trains, in words: the optimizer and its step rule."""
    model = params.get("model")
    if model == "deep_gd":
        return f"GD, step rule {params.get('gd_rule', 'ntk_smooth')}"
    if model == "deep_gd_paper":
        return "GD, step rule paper"
    if model == "deep_adam":
        return f"Adam, lr {params.get('lr_rule', '1/(10*sqrt(N))')}"
    if model == "two_layer":
        return f"SGD, step of rule {params.get('gd_rule', 'ntk_smooth')}" if params.get("two_layer_lr") is None \
            else f"SGD, lr {params['two_layer_lr']:g}"
    return "the optimizer slot"


def model_label(params: Mapping[str, Any]) -> str:
    """``deep_gd (GD, step rule ntk_smooth, <= 100000 epochs)``: a model with the rule that ran and
    its epoch budget, from a row's ``params``."""
    return f"{params.get('model')} ({step_rule(params)}, <= {epoch_budget(params)} epochs)"


def model_labels(rows: Sequence[Mapping[str, Any]]) -> dict:
    """Each model's :func:`model_label`, from the rows' ``params`` (the last row of a model)."""
    return {r["params"].get("model"): model_label(r["params"]) for r in rows if r.get("params")}


def _positive(x) -> str | None:
    return None if x > 0 else "must be > 0"


PAPER_CONSTANT = Expr("N", "d", "n", shown="N, d, n (= n_{L-1})")
"""deep_gd_paper's gamma and C (gd_theory's rule paper): a number or an expression in N, d, n."""


class Capacity(Experiment):
    name = "capacity"
    help = ("deep net (Adam; GD with step rule ntk_smooth or paper) vs Daniely's two-layer net on the "
            "same data at P/N = ratio")
    metrics = TRAINING_METRICS + ("N", "d", "ratio", "model", "P", "P_over_N", "width", "q", "reached_zero")
    params = (
        Param("N", int, 400, "number of training samples", min=1),
        Param("d", int, 10, "input dimension", min=1),
        Param("ratio", float, 1.0, "target trainable parameters per sample P / N", check=_positive),
        Param("model", str, "deep_adam", "which network and optimizer (slots: the architecture and "
              "optimizer slots, the architecture's width sized to ratio N)", choices=CAPACITY_MODELS),
        Param("depth", int, 4, "layers of the deep network (depth - 1 hidden layers of width w)", min=2),
        Param("max_epochs", int, 3000, "epoch budget of deep_adam, two_layer and slots", min=1),
        Param("gd_max_epochs", int, 100000, "epoch budget of deep_gd and deep_gd_paper: GD runs until the "
              "network memorises (loss <= zero_tol / 10) or this many epochs", min=1),
        Param("window", int, 100, "deep_adam early-stopping window (0: none)", min=0),
        Param("lr_rule", str, "1/(10*sqrt(N))", "deep_adam learning rate (expression in N, d, P)",
              check=Expr("N", "d", "P", empty=True)),
        Param("gd_rule", str, "ntk_smooth", "step rule of deep_gd and of the two_layer SGD step (see gd_theory)",
              choices=("ntk_smooth", "paper", "ntk", "constant")),
        Param("gd_c", float, 1.0, "deep_gd and deep_gd_paper step multiplier c", check=_positive),
        PAPER_CONSTANT.param("gd_gamma", "1", "rule paper (deep_gd_paper): gamma, expression in N, d, "
                             "n = n_{L-1}"),
        PAPER_CONSTANT.param("gd_C", "N/2", "rule paper (deep_gd_paper): the constant C, expression in N, "
                             "d, n = n_{L-1}; N/2 converts a step stated for the loss 1/2 sum (f - y)^2 to "
                             "ours, mean (f - y)^2 (the paper's constant itself taken as 1)"),
        Param("two_layer_c", float, 1.0, "two_layer SGD step = two_layer_c x the gd_rule step at init",
              check=_positive),
        Param("two_layer_lr", float, None, "two_layer SGD step, overriding two_layer_c", check=_positive),
        Param("two_layer_batch_size", int, 40, "two_layer SGD batch (>= N: full batch)", min=1),
        Param("two_layer_B", float, 1.0, "two_layer output weights +-B/sqrt(q)", check=_positive),
        Param("zero_tol", float, 1e-3, "a run reaches zero training loss when final_loss <= zero_tol "
              "(training also stops once an epoch's loss is <= zero_tol / 10)", min=0.0),
        _CURVE,
        _DIVERGENCE,
        _DTYPE,
        _SAVE_ARRAYS,
    )
    slots = {
        "activation": ("activation", "relu"),
        "dataset": ("dataset", "gaussian"),
        "loss": ("loss", "mse"),
        "deep_initializer": ("initializer", "fan_in_gaussian"),
        "backend": ("backend", "numba"),
        "architecture": ("architecture", None),
        "optimizer": ("optimizer", None),
    }
    example = {"params": {"N": 40, "d": 5, "ratio": 2.0, "model": "two_layer", "max_epochs": 100}}

    def check(self, params, components):
        """deep_adam: a usable lr from lr_rule at the network's P; a dataset that works at d."""
        if self.model == "slots":
            for slot in ("architecture", "optimizer"):
                if components.get(slot) is None:
                    return "model", f"model 'slots' needs the {slot} slot (e.g. {slot} = \"...\")"
            arch = components["architecture"]
            if width_param(arch) is None:
                return "architecture", (f"model 'slots': architecture {arch.name!r} has no width parameter "
                                        f"({', '.join(WIDTH_PARAMS)}); its parameters: {', '.join(arch.config)}")
        if self.model == "deep_adam":
            w = deep_width(self.ratio * self.N, self.d, self.depth)
            P = self.d * w + (self.depth - 2) * w * w + w
            problem = lr_problem(None, self.lr_rule, {"N": self.N, "d": self.d, "P": P})
            if problem:
                return "lr_rule", problem
        if self.model in ("deep_gd", "deep_gd_paper") or (self.model == "two_layer" and self.two_layer_lr is None):
            problem = self._paper_constants_problem()
            if problem:
                return problem
        return dataset_problem(components.get("dataset"), self.d)

    def _paper_constants_problem(self) -> tuple[str, str] | None:
        """``gd_gamma`` and ``gd_C`` (expressions in N, d, n) give finite numbers > 0 at this cell's
        sizes (the step rule divides by gamma; a step C <= 0 does not descend)."""
        from harness.plugin.expressions import ExpressionError, evaluate

        P = self.ratio * self.N
        n = two_layer_units(P, self.d) if self.model == "two_layer" else deep_width(P, self.d, self.depth)
        for key, text in (("gd_gamma", self.gd_gamma), ("gd_C", self.gd_C)):
            try:
                value = float(evaluate(str(text), {"N": self.N, "d": self.d, "n": n}))
            except (ExpressionError, TypeError, ValueError) as exc:
                return key, f"{text!r}: {exc}"
            if not (math.isfinite(value) and value > 0):
                return key, f"{text!r} = {value:g} at N = {self.N}, d = {self.d}, n = {n}: expected a number > 0"
        return None

    def _job(self, cell) -> dict:
        """Data, sized network, initial weights, optimizer and rules of one cell."""
        from harness import TrainingProblem

        N, d, target = self.N, self.d, self.ratio * self.N
        X, y = training_data(cell, N, d, self.dtype)
        resolved: dict = {}
        if self.model == "slots":
            key = width_param(cell.architecture)
            arch, value = sized_architecture(cell.architecture, d, target, key)
            arch.bind(cell)
            resolved[f"architecture.{key}"] = value
            init = cell.deep_initializer
        elif self.model == "two_layer":
            arch = cell.create("architecture", "two_layer", {"q": two_layer_units(target, d)})
            init = cell.create("initializer", "daniely_symmetric", {"B": self.two_layer_B})
        else:
            w = deep_width(target, d, self.depth)
            arch = cell.create("architecture", "fc", {"widths": [w] * (self.depth - 1)})
            init = cell.deep_initializer
        shapes, trainable = arch.layer_shapes(d), arch.trainable(d)
        P = arch.param_count(d)
        weights = init.initialize(shapes, cell.rng("init"), X.dtype)
        rules, lr, step = [], None, {}
        if self.model == "slots":
            optimizer = cell.optimizer
            lr = float(optimizer.lr) if "lr" in optimizer.config else None
        elif self.model == "deep_adam":
            optimizer, lr = with_lr(cell.create("optimizer", "adam"), self.lr_rule, {"N": N, "d": d, "P": P})
            if self.window:
                rules.append(WindowRule(self.window))
        elif self.model in ("deep_gd", "deep_gd_paper"):
            rule = "paper" if self.model == "deep_gd_paper" else self.gd_rule
            optimizer = cell.create("optimizer", "gd_theory", {"rule": rule, "c": self.gd_c,
                                                               "gamma": self.gd_gamma, "C": self.gd_C})
        else:
            lr = self.two_layer_lr
            if lr is None:  # the gd_rule step at initialisation, used as the SGD step
                theory = cell.create("optimizer", "gd_theory", {"rule": self.gd_rule, "c": self.two_layer_c,
                                                                "gamma": self.gd_gamma, "C": self.gd_C},
                                     label="step_rule")
                step = theory.prepare(TrainingProblem(X, y, weights, cell.activation, trainable, cell.loss))
                lr = step["eta"]
                step["eta_rule"] = "sgd lr = " + step["eta_rule"]
            optimizer = cell.create("optimizer", "sgd", {"lr": lr, "batch_size": self.two_layer_batch_size})
        rules.append(ToleranceRule(self.zero_tol / 10))
        return {"cell": cell, "X": X, "y": y, "arch": arch, "shapes": shapes, "trainable": trainable,
                "P": P, "weights": weights, "optimizer": optimizer, "lr": lr, "rules": rules,
                "step": step, "resolved": resolved, "max_epochs": epoch_budget(self.config),
                "divergence_factor": self.divergence_factor}

    def run(self, cell) -> dict:
        job = self._job(cell)
        X = job["X"]
        warmup = _warm_up_training(cell.backend, cell.activation, cell.loss, job["optimizer"],
                                   job["shapes"], job["trainable"], X.dtype)
        result = train(job["weights"], X, job["y"], cell.activation, cell.loss, job["optimizer"],
                       trainable=job["trainable"], max_epochs=job["max_epochs"], rules=job["rules"],
                       rng=cell.rng("batches"), divergence_factor=self.divergence_factor,
                       backend=cell.backend)
        result.warmup_seconds = warmup
        return self._record(job, result)

    @classmethod
    def batch_key(cls, params, components):
        """The repetitions of a point (equal N, d, ratio, model, depth and dtype, equal components
        but the dataset) train as one stack; ``HARNESS_BATCH=0`` turns it off."""
        return _batch_key(params, components, ("N", "d", "ratio", "model", "depth", "dtype"))

    @classmethod
    def run_batch(cls, members) -> list:
        """The cells' networks trained together (:func:`harness.engine.batched_training.train_batch`):
        every result is the one ``run`` gives for that cell alone (bit for bit, but ``timings``)."""
        return [experiment._record(job, result) for experiment, job, result, _ in _fit_cells(members)]

    def _record(self, job, result) -> dict:
        cell, X, y, arch, shapes, P, lr = (job["cell"], job["X"], job["y"], job["arch"], job["shapes"],
                                           job["P"], job["lr"])
        N, d = self.N, self.d
        result.prepared.update(job["step"])
        if self.save_arrays:
            save_training_arrays(cell, X, y, result, arch, d)
        record = training_record(result, self.curve_points, lr)
        resolved = dict(job["resolved"])
        resolved["widths"] = [n for n, _ in shapes[:-1]]
        if lr is not None:
            resolved["lr"] = lr
        return {
            "P": P, "P_over_N": P / N, "width": shapes[0][0], "lr": lr,
            "reached_zero": bool(record["final_loss"] <= self.zero_tol),
            **record,
            "timings": _timings(result),
            "resolved": resolved,
        }

    @classmethod
    def stopping(cls, metrics):
        return training_stopping(metrics)

    def estimate(self, cell_params, components) -> dict:
        N, d, ratio = int(cell_params["N"]), int(cell_params["d"]), float(cell_params["ratio"])
        P = max(ratio * N, d)
        depth = int(cell_params.get("depth", 4))
        width = max(two_layer_units(P, d), deep_width(P, d, depth))
        size = np.dtype(cell_params.get("dtype", "float64")).itemsize
        memory = int(size * N * (d + 4 * width) + 4 * size * P)
        epochs = epoch_budget(cell_params)  # GD: the whole budget, what a cell that does not memorise uses
        if cell_params["model"] == "two_layer":
            q = two_layer_units(P, d)
            cost = _train_cost(N, q * d, epochs, batch=int(cell_params.get("two_layer_batch_size", 40)))
        else:
            w = deep_width(P, d, depth)
            P_actual = d * w + (depth - 2) * w * w + w
            if cell_params["model"] == "deep_adam":
                epochs = _expected_epochs({**cell_params, "max_epochs": epochs}, P_actual, N)
            cost = _train_cost(N, P_actual, epochs, dtype=str(cell_params.get("dtype", "float64")))
        return {"memory_bytes": memory, **cost}

    @staticmethod
    def table(rows: Sequence[Mapping[str, Any]]) -> list[dict]:
        """One line per (model, target ratio): its label (the step rule that ran and the epoch
        budget, :func:`model_label`), repetitions, number and fraction reaching zero training loss,
        mean and median final loss (diverged runs count as not reaching zero and are left out of
        the loss statistics), mean actual P / N."""
        groups: dict = defaultdict(list)
        for r in finished_rows(rows):
            groups[(r["params"]["model"], float(r["params"]["ratio"]))].append(r)
        lines = []
        for (model, ratio) in sorted(groups, key=lambda k: (MODELS.index(k[0]) if k[0] in MODELS else 99, k[1])):
            group = groups[(model, ratio)]
            losses = [float(_metric(r, "final_loss")) for r in group
                      if _metric(r, "final_loss") is not None and math.isfinite(_metric(r, "final_loss"))]
            reached = sum(bool(_metric(r, "reached_zero")) for r in group)
            lines.append({
                "model": model, "label": model_label(group[0]["params"]), "ratio": ratio,
                "P_over_N": float(np.mean([_metric(r, "P_over_N") for r in group])),
                "n": len(group), "reached": reached,
                "fraction_zero": reached / len(group),
                "final_loss_mean": float(np.mean(losses)) if losses else None,
                "final_loss_median": float(np.median(losses)) if losses else None,
                "diverged": sum(r.get("status") == "diverged" for r in group),
            })
        return lines

    def tables(self, rows, context) -> list:
        """The answer: with a threshold search, P*/N per model with its rule and budget (from the
        search's thresholds); then, per model and P/N, the fraction of seeds reaching zero
        training loss with its 95% Wilson interval and the median final loss."""
        from harness.plugin.tables import Interval, Table, bracket_text, fraction

        out = []
        labels = model_labels(rows)
        if context.thresholds:
            lines = [[labels.get(t.get("model"), t.get("model")),
                      Interval(t.get("threshold"), t.get("ci_low"), t.get("ci_high")),
                      bracket_text(t.get("lower"), t.get("upper")), t.get("status"),
                      t.get("n_cells")] for t in context.thresholds]
            out.append(Table(f"{context.experiment_id}: minimum parameters per sample P*/N", [
                "model (step rule, epoch budget)", "P*/N [95% bootstrap]", "bracket", "status", "cells"], lines, [
                "P*/N: the smallest P/N at which the mean over the seeds of log10(final loss) is <= -3, "
                "each network trained until its loss is <= zero_tol / 10 or its epoch budget ends; "
                "above_upper: not reached within the budget at the largest P/N searched"], headline=True))
        table = self.table(rows)
        if table:
            lines = [[l["label"], l["ratio"], l["P_over_N"], fraction(l["reached"], l["n"]), l["final_loss_median"],
                      l["diverged"]] for l in table]
            out.append(Table(f"{context.experiment_id}: reaching zero training loss", [
                "model (step rule, epoch budget)", "target P/N", "P/N", "reached zero [95% Wilson]",
                "median final loss", "diverged"], lines, [
                "Reached zero: final loss <= zero_tol over the repetitions, with its 95% Wilson interval; "
                "P/N: the mean actual parameter count over N of the sized networks"]))
        return out

    def figures(self, rows, context) -> dict:
        """The capacity figure and table; once per combination of any grid axis besides
        ``model`` and ``ratio`` (N, d, an activation, ...), never pooling it. With a threshold
        search, its figure with each model labelled by its rule and budget."""
        from harness.plugin.series import per_series

        def draw(part):
            lines = self.table(part)
            if not lines:
                return {}
            return {"capacity": _capacity_figure(lines, context),
                    "capacity_table": _table_figure(lines, context)}

        figures = per_series(rows, lambda r: (r["params"].get("model"), float(r["params"].get("ratio", 0))), draw)
        done = [r for r in rows if r.get("status") in ("ok", "diverged")]
        curves = loss_curves_figure(done, context)  # one panel per grid point: nothing pooled
        if curves is not None:
            figures["loss_curves"] = curves
        if context.search and context.thresholds and "model" in context.grid:
            labels = model_labels(rows)
            figures["thresholds"] = capacity_threshold_figure(context, labels)
        return figures

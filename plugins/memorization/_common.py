"""Shared pieces of the memorisation experiments: declared parameters, the learning-rate rule,
training one network (alone or batched) and the record a row keeps of it.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

from harness.engine.training import TrainResult, train
from harness.plugin import Param, save_arrays
from harness.plugin.expressions import evaluate

_CURVE = Param("curve_points", int, 200, "points kept of the per-epoch loss curve", min=2)


_DIVERGENCE = Param("divergence_factor", float, 1e8,
                    "stop as diverged once the loss exceeds this times the first epoch's", min=1.0)

DTYPES = ("float64", "float32")
"""The floating types a training experiment runs in (its ``dtype`` parameter)."""

_DTYPE = Param("dtype", str, "float64", "floating type of the training: data, weights, optimizer state, "
               "products and losses ('float32': as torch trains by default); the early-stopping window "
               "sums accumulate in float64 either way", choices=DTYPES)


def training_data(cell, n: int, d: int, dtype: str) -> tuple[np.ndarray, np.ndarray]:
    """``X (n, d)``, ``y (n,)`` from the cell's dataset in ``dtype`` (``"float64"`` or
    ``"float32"``: the dataset's float64 draws rounded, so both dtypes see the same points)."""
    real = np.dtype(dtype)
    X, y = cell.dataset.sample(n, d, cell.rng("data"), real)
    return np.asarray(X, dtype=real), np.asarray(y, dtype=real)


_SAVE_ARRAYS = Param("save_arrays", bool, False, "write arrays/<cell_id>.npz in the run directory: X, y, "
                     "the final parameters (W1, b1, W2, ... in forward order) and outputs f")


def lr_problem(optimizer, lr_rule: str, variables: Mapping[str, Any]) -> str | None:
    """Why ``lr_rule`` gives no usable learning rate at ``variables`` (for ``check``), or ``None``."""
    from harness.plugin.expressions import ExpressionError

    if optimizer is not None and "lr" not in optimizer.config or not lr_rule:
        return None
    at = ", ".join(f"{k} = {v}" for k, v in variables.items())
    try:
        lr = evaluate(lr_rule, dict(variables))
    except ExpressionError as exc:
        return f"{exc} (at {at})"
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not (math.isfinite(lr) and lr > 0):
        return f"gives {lr!r} at {at}; a learning rate must be a finite number > 0"
    return None


def _warm_up_training(backend, activation, loss, optimizer, shapes, trainable, dtype,
                      batched: bool = False) -> float:
    """Compile the training kernels for this network depth, activation, loss, optimizer and
    dtype once per process (two epochs on a tiny network; ``batched``: on a stack of two, with
    :func:`train_batch` on ``backend``, ``None`` for the CPU engine), so that compilation (and
    a device's first-call set-up) stays out of ``train_seconds``; returns the seconds spent
    (0.0 when already done)."""
    from harness import warm_up

    full = getattr(optimizer, "batch_size", None) is None
    key = ("training", type(backend).__name__, repr(backend), repr(activation), repr(loss),
           type(optimizer).__name__, len(shapes), tuple(trainable), str(np.dtype(dtype)), full, batched)

    def run():
        rng = np.random.default_rng(0)
        sizes = [3] + [3] * (len(shapes) - 1) + [1]
        tiny = [0.3 * rng.standard_normal((sizes[l + 1], sizes[l])).astype(dtype) for l in range(len(shapes))]
        X, y = rng.standard_normal((8, 3)).astype(dtype), rng.standard_normal(8).astype(dtype)
        try:
            if batched:
                from harness.engine.batched_training import Member, train_batch

                train_batch([Member(tiny, X, y, optimizer, max_epochs=2, rng=np.random.default_rng(i))
                             for i in range(2)], activation, loss, trainable=trainable, threads=1,
                            backend=backend)
                return
            train(tiny, X, y, activation, loss, optimizer, trainable=trainable, max_epochs=2,
                  rng=rng, backend=backend)
        except Exception:  # a warm-up is an optimisation, never a reason to fail the cell
            pass

    return warm_up(key, run)


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


STEP_FIELDS = ("eta_rule", "eta", "lambda_max_K0", "eta_ntk_smooth", "eta_paper", "gamma_paper", "C_paper")
"""Step-size fields every training row has, ``None`` when the optimizer's ``prepare()`` does not
give them (gd_theory gives all: its rule, the step, lambda_max(K0) and both theory rules at the
same c), so that rows of different optimizers share their columns."""

OWN_NAME_FIELDS = STEP_FIELDS + ("lr",)
"""``prepare()`` keys recorded under their own name: the step-size fields and the learning rate
(the ``lr`` the experiments record themselves, the same value)."""


def optimizer_record(prepared: Mapping[str, Any]) -> dict:
    """Every key the optimizer's ``prepare()`` returned, for the result row: the
    :data:`OWN_NAME_FIELDS` under their own names (the step-size ones ``None`` when absent), any
    other key as ``optimizer.<key>`` (a scalar becomes a metric, a list of numbers a curve)."""
    out: dict[str, Any] = dict.fromkeys(STEP_FIELDS)
    for key, value in prepared.items():
        out[key if key in OWN_NAME_FIELDS else f"optimizer.{key}"] = value
    return out


def weights_unchanged(result: TrainResult, lr: float | None) -> bool:
    """The row's ``weights_unchanged``: the optimizer stepped (on a finite loss) with a step size
    > 0 (``lr``, or ``gd_theory``'s ``eta``; ``None``: not known, taken as > 0), yet every weight
    ended where it started: an optimizer whose ``step`` updates nothing, or gradients exactly 0.
    Such a row did not train; ``harness show`` names it."""
    step = lr if lr is not None else result.prepared.get("eta")
    return bool(result.steps > 0 and (step is None or step > 0) and not result.moved)


TRAINING_METRICS = ("final_loss", "initial_loss", "weights_unchanged", "stop_epoch", "steps", "stop_reason",
                    *OWN_NAME_FIELDS, "optimizer.*")
"""The metrics of :func:`training_record` (``optimizer.*``: any other key of the optimizer's
``prepare()``), which every training experiment returns."""


def training_record(result: TrainResult, curve_points: int, lr: float | None = None) -> dict:
    """The result-row entries every training experiment shares: the training outcome (with
    :func:`weights_unchanged`; ``lr``: the learning rate that ran), what the optimizer's
    ``prepare()`` returned (:func:`optimizer_record`) and the loss curve."""
    epochs, values = result.curve(curve_points)
    return {
        "final_loss": math.inf if result.diverged else result.final_loss,
        "initial_loss": result.initial_loss,
        "weights_unchanged": weights_unchanged(result, lr),
        "stop_epoch": result.epochs,
        "steps": result.steps,
        "stop_reason": result.stop_reason,
        **optimizer_record(result.prepared or {}),
        "loss_curve": values,
        "loss_curve_epoch": epochs,
        "timings": {"train_seconds": result.seconds},
    }


def engine_model(arch, d: int):
    """``(model, trainable)`` for the training engine: ``model`` is ``None`` for a plain
    bias-free chain (the original engine; ``trainable`` per layer), else the architecture's
    :class:`~harness.engine.network.Network` (biases, residual blocks) or its
    :class:`~harness.engine.structured.GenericModel` (``trainable`` per parameter)."""
    model = arch.model(d)
    if getattr(model, "plain", False):
        return None, arch.trainable(d)
    return model, model.parameter_trainable()


def initial_parameters(arch, d: int, initializer, rng, dtype, shapes=None):
    """The initial parameters of ``arch`` (a plain chain: ``initializer.initialize(shapes)``,
    the draws of the original engine; otherwise :meth:`Architecture.init_parameters`)."""
    if arch is None:
        return initializer.initialize(shapes, rng, dtype)
    return arch.init_parameters(d, initializer, rng, dtype)


def training_problem(arch, d: int, backend) -> str | None:
    """Why ``arch`` cannot train at ``d`` on ``backend`` (inconsistent declarations, or a
    network with biases / residual blocks / a generic forward on a backend other than numba)."""
    problem = arch.problem(d)
    if problem:
        return problem
    model = arch.model(d)
    name = getattr(backend, "name", "numba")
    if not getattr(model, "plain", False) and name != "numba":
        return (f"backend {name!r} trains bias-free chains only; this network "
                f"({arch.ntk_path(d)} path) trains on backend 'numba'")
    return None


def save_training_arrays(cell, X, y, result: TrainResult, arch, d: int) -> None:
    """``arrays/<cell_id>.npz``: ``X``, ``y``, the final parameters ``W1, b1, ...`` (forward
    order, output last) and the final outputs ``f``."""
    save_arrays(cell, X=X, params=result.weights, names=arch.parameter_names(d), y=y,
                f=result.final_output)


def _fit(cell, X, y, shapes, trainable, initializer, optimizer, activation, loss, *,
         max_epochs: int, rules=(), max_steps: int | None = None,
         divergence_factor: float = 1e8, arch=None, model=None,
         layer_trainable=None) -> tuple[TrainResult, list[np.ndarray]]:
    weights = initial_parameters(arch if model is not None else None, X.shape[1], initializer,
                                 cell.rng("init"), X.dtype, shapes)
    warmup = _warm_up_training(cell.components.get("backend"), activation, loss, optimizer, shapes,
                               layer_trainable if layer_trainable is not None else trainable, X.dtype)
    result = train(weights, X, y, activation, loss, optimizer, trainable=trainable,
                   max_epochs=max_epochs, max_steps=max_steps, rules=rules,
                   rng=cell.rng("batches"), divergence_factor=divergence_factor,
                   backend=cell.components.get("backend"), model=model)
    result.warmup_seconds = warmup
    return result, weights


_BATCHED = Param("batched", bool, True,
                  "train the repetitions of a grid point (and other cells of the same shapes) together "
                  "as one stacked problem: the same rows, faster; false: each cell alone")


BATCHED_BACKENDS = ("numba", "torch")
"""Backends whose cells train batched (:func:`_batch_key`): numba on the CPU engine's stacks,
torch through its ``stacked_gradient_engine``."""


def _batch_key(params, components, shape_params: Sequence[str]):
    """Cells that can train in one stack: the same experiment parameters that fix the shapes
    (``shape_params``) and the same components except the initializer and the dataset (drawn per
    cell anyway; the backend is one of them, so cells of one backend group together only);
    ``None`` with ``batched = false``, and for a backend that cannot train stacks (other than
    numba and torch)."""
    from harness.plugin.seeds import canonical

    if not params.get("batched", True):
        return None
    comps = dict(components or {})
    backend = (comps.get("backend") or {}).get("name", "numba")
    if backend not in BATCHED_BACKENDS:
        return None
    fixed = {k: v for k, v in comps.items() if k not in ("initializer", "dataset")}
    return canonical([{k: params.get(k) for k in shape_params}, fixed])


def _fit_batch(jobs, activation, loss, trainable) -> list:
    """Train the networks of several cells together (:func:`train_batch`); ``jobs`` are dicts
    with what :func:`_fit` takes per cell (cell, X, y, shapes, initializer, optimizer, max_epochs,
    rules, max_steps, divergence_factor; or the initial ``weights`` instead of the initializer).
    Returns ``(result, initial weights)`` per job, the
    same as :func:`_fit` gives for each alone (the same weights, data and random streams; on
    the numba backend bit for bit, on a device backend to rounding). The cells' backend (the
    first job's) trains the stack: numba is the CPU engine on threads, any other backend its
    ``stacked_gradient_engine``."""
    from harness.engine.batched_training import Member, train_batch

    members, initial = [], []
    model = jobs[0].get("model")
    for job in jobs:
        cell, X = job["cell"], job["X"]
        weights = job.get("weights")
        if weights is None:
            weights = initial_parameters(job.get("arch") if model is not None else None, X.shape[1],
                                         job["initializer"], cell.rng("init"), X.dtype, job["shapes"])
        initial.append(weights)
        members.append(Member(weights, X, job["y"], job["optimizer"], rules=job["rules"],
                              max_epochs=job["max_epochs"], max_steps=job.get("max_steps"),
                              rng=cell.rng("batches"), divergence_factor=job["divergence_factor"]))
    first = jobs[0]
    backend = first["cell"].components.get("backend")
    if getattr(backend, "name", "numba") == "numba":
        backend = None  # the CPU engine, with its threads
    warmup = _warm_up_training(backend, activation, loss, first["optimizer"], first["shapes"],
                               first.get("layer_trainable", trainable), first["X"].dtype, batched=True)
    results = train_batch(members, activation, loss, trainable=trainable, model=model, backend=backend)
    for result in results:
        result.warmup_seconds = warmup / len(results)
    return list(zip(results, initial))


def _fit_cells(members) -> list:
    """The ``run_batch`` of the training experiments: ``members`` are ``(experiment, cell)``
    pairs of one group; each experiment's ``_job(cell)`` gives what :func:`_fit_batch` takes.
    Returns ``(experiment, job, result, initial weights)`` per member, in order."""
    jobs = [experiment._job(cell) for experiment, cell in members]
    first = members[0][1]
    fitted = _fit_batch(jobs, first.activation, first.loss, jobs[0]["trainable"])
    return [(experiment, job, result, initial)
            for (experiment, _), job, (result, initial) in zip(members, jobs, fitted)]


def _timings(result: TrainResult) -> dict:
    out = {"train_seconds": result.seconds}
    if getattr(result, "warmup_seconds", 0.0):
        out["warmup_seconds"] = result.warmup_seconds
    return out


WINDOW_FIELDS = ("reported_loss", "reported_window_start", "reported_window_end",
                 "stop_window_loss", "windows")
"""The row fields taken from :class:`WindowRule`'s summary (``None`` without a window rule)."""


REPORTED_LABEL = "reported loss (authors' value)"


LOG10_FLOOR = -10
"""Heat maps clip every loss at 10**LOG10_FLOOR before averaging the logs over repetitions."""


MEMORISED_LOG10 = -3.0
"""A grid point counts as memorised when the mean over its repetitions of log10(reported_loss)
(the paper's quantity, averaged as the paper averages: mean of the logs) is <= this."""


LEVEL_LINES = (-3.0, -4.0, -6.0)
"""The levels of mean log10(reported_loss) the Fig. 2 heat map draws as lines (those the threshold
search of benchmarks/memorization_threshold.toml reports N* at)."""


MODELS = ("deep_adam", "deep_gd", "deep_gd_paper", "two_layer")


def finished_rows(rows: Sequence[Mapping[str, Any]]) -> list:
    """The rows of cells that trained to their end, ``ok`` or ``diverged`` (a network that
    diverged did not memorise: a result), with metrics: what the tables and figures read."""
    return [r for r in rows if r.get("status") in ("ok", "diverged") and r.get("metrics")]


EARLY_STOP_REASONS = ("window",)
"""``stop_reason`` values of an early stop: the paper's window rule ended training (not the epoch
budget, a loss tolerance or divergence)."""


def training_stopping(metrics: Mapping[str, Any]) -> tuple[bool, float] | None:
    """``(stopped early, stop epoch)`` of one training row (``stop_reason``, ``stop_epoch``), as
    :meth:`harness.Experiment.stopping` gives it; ``None`` when the row has neither."""
    reason, epoch = metrics.get("stop_reason"), metrics.get("stop_epoch")
    if not isinstance(reason, str) or isinstance(epoch, bool) or not isinstance(epoch, (int, float)):
        return None
    return reason in EARLY_STOP_REASONS, float(epoch)

"""Semi-flat minima by embedding (Fukumizu, Yamaguchi, Mototake and Tanaka, NeurIPS 2019).

Experiment ``embedding_generalization``: a one-hidden-layer network ``N_H0`` with ``H0`` units is
trained to (near) zero error on a tiny noisy data set, embedded into ``N_H`` with ``H >= H0``
units by a function-preserving map (:mod:`harness_plugins.semi_flat.embedding`), and both are perturbed by
the same Gaussian noise; the ratio of their generalisation errors says how much flatter (ratio
near 1) or sharper (ratio above 1) the wide network's minimum is in the added directions.

One trial (our reading of the paper's protocol, every constant a parameter):

1. training set: ``n_train`` inputs ``x ~ N(0, input_std^2)``, targets from the one-unit teacher
   ``f*(x) = v* phi(w* x + b*) + c*`` (``teacher = [w*, b*, v*, c*]``, same activation as the
   student) plus noise ``N(0, noise_variance)`` (the paper's ``N(0, 1e-2)`` read as variance
   ``1e-2``, standard deviation 0.1);
2. the ``H0``-unit student, started from ``N(0, init_std^2)`` parameters, is trained by
   Levenberg-Marquardt (:mod:`harness_plugins.semi_flat.levenberg_marquardt`) on the sum of squared errors
   until it is ``<= target_error``, with up to ``max_restarts`` fresh starts (the best run is kept
   when none reaches the target);
3. ``N_H`` = the embedding of the trained ``N_H0``;
4. one perturbation ``delta ~ N(0, rho^2 I)``, ``rho = rho_relative * ||theta(H0)||``, drawn unit by
   unit (``c`` first, then ``(w_j, b_j, v_j)`` for ``j = 1, 2, ...``), so that ``N_H0`` receives
   exactly the perturbation of its own units in ``N_H``;
5. generalisation error: the mean squared difference to the noiseless teacher over ``n_test``
   fresh inputs ``x ~ N(0, input_std^2)``; the trial's ratio is ``err(N_H + delta) /
   err(N_H0 + delta)``.

Every random draw of trial ``t`` comes from streams keyed by the cell seed and ``t`` only, never by
``H``: with ``seed_by = []`` in the benchmark file all cells of an activation share the seed, so
every ``H`` sees the same trained networks, perturbations and test inputs (the ratio at ``H = H0``
is exactly 1). Trained students are cached in-process, so the cells of one run train each trial's
student once.

The Hessian of the training error at the (unperturbed) embedded point is diagonalised for the first
``hessian_trials`` trials; eigenvalues with ``|lambda| <= hessian_rtol * max |lambda|`` count as zero.
At an interpolating point the Hessian is ``2 J^T J`` (positive semi-definite, rank at most
``n_train``), so the zero count grows with ``H``; its trace says how sharp the added directions are.
Negative eigenvalues come from trials whose training stopped above zero error: there, added
inactive units with ``v != 0`` on a smooth activation make the embedded point a saddle, while dead
ReLU units add only zero eigenvalues.

ReLU training (``relu_start = "constructive"``, the default): on the data range a ReLU network with
``H0`` units is a continuous piecewise-linear function with at most ``H0`` knots, so each data set is
first classified by the exact minimum number of knots ``K*`` of a continuous piecewise-linear
interpolant (:func:`harness_plugins.semi_flat.relu_interpolation.min_knots`, a dynamic programme over slopes):
``K* > H0`` proves that no ``H0``-unit ReLU network interpolates it (the trial then falls back to the
random restarts below and ends at a local minimum); ``K* <= H0 - 1``: an interpolating network is
built (knots strictly inside the gaps between sorted inputs, the affine part from units kinked left
of the data) and polished by Levenberg-Marquardt to ``target_error``; ``K* = H0``: the knot units'
directions must also produce the right affine part, searched from interpolating splines
(:func:`harness_plugins.semi_flat.relu_interpolation.interpolate`). With 10 points from the ReLU teacher and
noise variance 1e-2, ``K* >= 6`` for most data sets: ``H0 = 5`` ReLU units cannot reach 1e-29 there
(``relu_impossible`` counts them), and the ratio compares perturbations of the local minimum
reached. ``relu_start = "random"`` gives the plain random restarts. A few per cent of tanh trials miss the target:
most stop just above ``1e-29`` at the float64 rounding floor of steep interpolants (large weights),
a few at local minima; ``require_target`` drops them from the aggregates.

What each trial's trained point is (:func:`harness_plugins.semi_flat.points.trained_point_class`,
computed once per trial): ``interpolating`` when it reached the target; for ReLU, ``kink`` when a
unit's kink lies within ``kink_tol`` of a training input (the error is not differentiable there:
the smooth piece's gradient and Hessian decide nothing); otherwise ``minimum`` only where the
second-order check certifies one (relative gradient <= ``point_gradient_rtol``, every Hessian
eigenvalue positive), ``flat_directions`` (flat or undecided: some zero eigenvalue, as every ReLU
point has from each unit's rescaling), ``saddle`` or ``not_critical``. The 1e-29 target sits at the
float64 floor of these interpolants, where Levenberg-Marquardt reaches or misses it by the last
bits of the arithmetic: ``target_borderline`` counts the trials whose training error lies within a
factor 10 of the target, the number of decisions another machine could turn either way.

Result: ``mean_ratio``, ``sem_ratio`` (standard error), ``std_ratio``, ``median_ratio``, ``n_trials``
(trials aggregated: all, or those that reached the target when ``require_target``), the mean
errors ``error_H``, ``error_H0`` and ``error_unperturbed`` (``N_H0`` itself; also its median
``error_unperturbed_median``: interpolants with large weights give a heavy tail), ``rho_mean``; training:
``target_reached`` (count), ``target_reached_fraction``, ``train_error_median``, ``train_error_max``,
``restarts_mean``, ``restarts_max``, ``target_borderline``; the trained points, one count per class:
``point_interpolating``, ``point_minimum``, ``point_flat_directions``, ``point_saddle``,
``point_not_critical``, ``point_kink``; ReLU (constructive start, else ``None``): ``relu_min_knots_median``,
``relu_impossible`` (trials with ``K* > H0``), ``relu_constructed`` (``K* < H0``, reached),
``relu_searched`` (``K* = H0``, reached), ``relu_not_found`` (``K* <= H0``, missed) and
``relu_reached_fraction_of_possible``; checks: ``embedding_deviation_max`` (``max |N_H - N_H0|`` on the
test inputs) and ``gradient_max`` (largest gradient entry at the embedded point); Hessian:
``hessian_negative``, ``hessian_zero``, ``hessian_positive`` (medians over the Hessian trials),
``hessian_negative_max``, ``hessian_tol_median``, ``hessian_trace_mean``, ``parameters`` (``3 H + 1``);
curve ``ratio`` (one value per aggregated trial).
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Any, Mapping, Sequence

import numpy as np

import harness_plugins.semi_flat.shallow as shallow
from harness.plugin import Experiment, Param
from harness.plugin.seeds import stream_key

from .costs import generalization_cost
from .embedding import EMBEDDINGS, embed
from .figures import _activation_of, _hessian_figure, _ratio_figure
from .levenberg_marquardt import train_with_restarts
from .points import TRAINED_CLASSES, trained_point_class

_TRAINING_PARAMS = ("H0", "n_train", "noise_variance", "teacher", "input_std", "init_std",
                    "target_error", "max_restarts", "max_iterations", "relu_start", "kink_tol",
                    "point_gradient_rtol", "hessian_rtol")
"""What a trial's trained student, and the class of its point, depend on (the in-process cache's key)."""


def _teacher_check(value: Sequence[float]) -> str | None:
    return None if len(value) == 4 else "expected [w, b, v, c] (4 numbers)"


@dataclass(frozen=True)
class TrainedStudent:
    """One trial's training set ``x, y`` ``(n_train,)`` and trained ``theta`` ``(3 H0 + 1,)``."""

    x: np.ndarray
    y: np.ndarray
    theta: np.ndarray
    error: float
    reached: bool
    restarts: int
    min_knots: int | None = None
    """ReLU with the constructive start: ``K*`` of the training set (else ``None``)."""
    relu_status: str | None = None
    """ReLU with the constructive start: ``"constructed"``, ``"searched"``, ``"not_found"`` or
    ``"impossible"`` (:class:`harness_plugins.semi_flat.relu_interpolation.InterpolationResult`)."""
    point_class: str | None = None
    """What the trained point is (:func:`harness_plugins.semi_flat.points.trained_point_class`)."""


_CACHE: "OrderedDict[tuple, TrainedStudent]" = OrderedDict()
_CACHE_SIZE = 100_000


class EmbeddingGeneralization(Experiment):
    """Generalisation-error ratio of a perturbed embedded network; the protocol, the trial and
    the result keys are described in the module docstring of
    :mod:`harness_plugins.semi_flat.generalization`."""

    name = "embedding_generalization"
    help = ("generalisation-error ratio of a perturbed embedded network N_H over the perturbed "
            "trained N_H0, and the Hessian spectrum at the embedded point")
    slots = {"activation": ("activation", "tanh")}
    metrics = ("H", "H0", "embedding_deviation_max", "error_H", "error_H0", "error_unperturbed",
               "error_unperturbed_median", "gradient_max", "hessian_negative", "hessian_negative_max",
               "hessian_positive", "hessian_zero", "hessian_tol_median", "hessian_trace_mean", "mean_ratio",
               "median_ratio", "n_trials", "parameters", "relu_constructed", "relu_impossible",
               "relu_min_knots_median", "relu_not_found", "relu_reached_fraction_of_possible", "relu_searched",
               "restarts_max", "restarts_mean", "rho_mean", "sem_ratio", "std_ratio", "target_reached",
               "target_reached_fraction", "train_error_max", "train_error_median", "target_borderline",
               *(f"point_{c}" for c in TRAINED_CLASSES))
    params = (
        Param("H", int, 10, "width of the embedded network (H >= H0)", min=1),
        Param("H0", int, 5, "width of the trained network", min=1),
        Param("embedding", str, "inactive_units", "embedding map", choices=EMBEDDINGS),
        Param("split", float, 0.5, "unit replication: output-weight split lambda"),
        Param("new_bias", float, -1.0, "inactive units / inactive propagation: bias b of each added unit"),
        Param("new_output_weight", float, 1.0, "inactive units: output weight v of each added unit"),
        Param("new_input_weight", float, 1.0, "inactive propagation: input weight w of each added unit"),
        Param("trials", int, 1000, "trials per cell (fresh data, training, perturbation, test inputs)", min=1),
        Param("n_train", int, 10, "training points", min=1),
        Param("noise_variance", float, 1e-2, "variance of the Gaussian output noise on training targets", min=0.0),
        Param("teacher", list, [1.0, 0.0, 1.0, 0.0], "one-unit teacher [w, b, v, c]",
              item_type=float, check=_teacher_check),
        Param("input_std", float, 1.0, "inputs x ~ N(0, input_std^2), training and test", min=0.0),
        Param("init_std", float, 1.0, "student starts: every parameter ~ N(0, init_std^2)", min=0.0),
        Param("target_error", float, 1e-29, "training target: sum of squared errors", min=0.0),
        Param("max_restarts", int, 10, "fresh starts after the first when the target is missed", min=0),
        Param("max_iterations", int, 300, "Levenberg-Marquardt iterations per start", min=1),
        Param("relu_start", str, "constructive",
              "ReLU only: constructive interpolating start (with the K* certificate) or random restarts",
              choices=("constructive", "random")),
        Param("rho_relative", float, 0.01, "perturbation std rho = rho_relative * ||theta(H0)||", min=0.0),
        Param("n_test", int, 1000, "fresh test inputs per trial", min=1),
        Param("require_target", bool, False, "aggregate only trials whose training reached the target"),
        Param("hessian_trials", int, 100, "trials whose Hessian spectrum is computed", min=0),
        Param("hessian_rtol", float, 1e-10, "|eigenvalue| <= hessian_rtol * max |eigenvalue| counts as zero",
              min=0.0),
        Param("kink_tol", float, 1e-6, "ReLU: a trained point with a unit's kink within this distance of a "
              "training input is undecided (class kink): its error is not differentiable there", min=0.0),
        Param("point_gradient_rtol", float, 1e-6, "a trained point that missed the target is critical when its "
              "relative gradient is <= this (else class not_critical)", min=0.0),
    )
    example = {"params": {"H": 7, "trials": 3, "n_test": 200, "hessian_trials": 2},
               "components": {"activation": {"name": "tanh", "params": {}}}}

    # ------------------------------------------------------------------ one cell

    def check(self, params, components):
        """An embedding adds units: H >= H0."""
        return None if self.H >= self.H0 else ("H", f"H = {self.H} is smaller than H0 = {self.H0}: an embedding "
                                                     "needs H >= H0")

    def run(self, cell) -> dict:
        act = cell.activation
        H, H0 = self.H, self.H0
        if H < H0:
            raise ValueError(f"H = {H} is smaller than H0 = {H0}")
        teacher = shallow.pack([self.teacher[0]], [self.teacher[1]], [self.teacher[2]], self.teacher[3])
        base_key = tuple(cell.seed.spawn_key) + (stream_key("trials"),)
        entropy = cell.seed.entropy

        def rng(t: int, stream: str) -> np.random.Generator:
            return np.random.default_rng(np.random.SeedSequence(entropy, spawn_key=base_key + (t, stream_key(stream))))

        ratios, err_H, err_H0, err_0, rhos, used = [], [], [], [], [], []
        train_err, reached, restarts, relu_info, points = [], [], [], [], []
        deviation, grad_max = 0.0, 0.0
        hess = []
        for t in range(self.trials):
            student = self._student(act, teacher, rng(t, "data"), rng(t, "init"), (entropy, base_key, t))
            train_err.append(student.error)
            reached.append(student.reached)
            restarts.append(student.restarts)
            points.append(student.point_class)
            if student.min_knots is not None:
                relu_info.append((student.min_knots, student.relu_status))
            theta0 = student.theta
            wide = embed(theta0, H, self.embedding, act, split=self.split, bias=self.new_bias,
                         output_weight=self.new_output_weight, input_weight=self.new_input_weight)
            rho = self.rho_relative * float(np.linalg.norm(theta0))
            delta_H, delta_H0 = _unitwise_normal(rng(t, "perturb"), H, H0)
            x_test = self.input_std * rng(t, "test").standard_normal(self.n_test)
            f_star = shallow.forward(teacher, x_test, act)
            f0 = shallow.forward(theta0, x_test, act)
            fH = shallow.forward(wide, x_test, act)
            deviation = max(deviation, float(np.max(np.abs(fH - f0))))
            e_H = _mse(shallow.forward(wide + rho * delta_H, x_test, act), f_star)
            e_H0 = _mse(shallow.forward(theta0 + rho * delta_H0, x_test, act), f_star)
            if t < self.hessian_trials:
                g = shallow.error_gradient(wide, student.x, student.y, act)
                grad_max = max(grad_max, float(np.max(np.abs(g))))
                hessian = shallow.error_hessian(wide, student.x, student.y, act)
                lam = np.linalg.eigvalsh(hessian)
                hess.append((*shallow.inertia(lam, self.hessian_rtol), float(np.trace(hessian))))
            if self.require_target and not student.reached:
                continue
            used.append(t)
            ratios.append(e_H / e_H0)
            err_H.append(e_H)
            err_H0.append(e_H0)
            err_0.append(_mse(f0, f_star))
            rhos.append(rho)

        out: dict[str, Any] = {"n_trials": len(used), "parameters": 3 * H + 1}
        out.update(_ratio_stats(np.array(ratios)))
        out.update({
            "error_H": _mean(err_H), "error_H0": _mean(err_H0), "error_unperturbed": _mean(err_0),
            "error_unperturbed_median": float(np.median(err_0)) if err_0 else None,
            "rho_mean": _mean(rhos),
            "target_reached": int(np.sum(reached)), "target_reached_fraction": float(np.mean(reached)),
            "train_error_median": float(np.median(train_err)), "train_error_max": float(np.max(train_err)),
            "restarts_mean": float(np.mean(restarts)), "restarts_max": int(np.max(restarts)),
            "embedding_deviation_max": deviation,
            "target_borderline": int(np.sum([self.target_error / 10 <= e <= 10 * self.target_error
                                             for e in train_err])),
        })
        out.update({f"point_{c}": points.count(c) for c in TRAINED_CLASSES})
        out.update(_relu_summary(relu_info))
        if hess:
            h = np.array(hess)
            out.update({
                "gradient_max": grad_max,
                "hessian_negative": int(np.median(h[:, 0])), "hessian_zero": int(np.median(h[:, 1])),
                "hessian_positive": int(np.median(h[:, 2])), "hessian_negative_max": int(np.max(h[:, 0])),
                "hessian_tol_median": float(np.median(h[:, 3])), "hessian_trace_mean": float(np.mean(h[:, 4])),
            })
        else:
            out.update({k: None for k in ("gradient_max", "hessian_negative", "hessian_zero", "hessian_positive",
                                          "hessian_negative_max", "hessian_tol_median", "hessian_trace_mean")})
        out["ratio"] = [float(r) for r in ratios]
        return out

    def _student(self, act, teacher, data_rng, init_rng, trial_key) -> TrainedStudent:
        """Train (or fetch from the in-process cache) one trial's ``H0``-unit student."""
        key = (trial_key, type(act).__module__, type(act).__qualname__, repr(act),
               tuple(repr(getattr(self, p)) for p in _TRAINING_PARAMS))
        hit = _CACHE.get(key)
        if hit is not None:
            _CACHE.move_to_end(key)
            return hit
        x = self.input_std * data_rng.standard_normal(self.n_train)
        y = shallow.forward(teacher, x, act) + np.sqrt(self.noise_variance) * data_rng.standard_normal(self.n_train)
        student = train_student(x, y, act, self.H0, init_rng, init_std=self.init_std,
                                target_error=self.target_error, max_restarts=self.max_restarts,
                                max_iterations=self.max_iterations, relu_start=self.relu_start)
        label, _, _ = trained_point_class(student.theta, x, y, act, student.reached, relu=is_relu(act),
                                          kink_tol=self.kink_tol, gradient_rtol=self.point_gradient_rtol,
                                          hessian_rtol=self.hessian_rtol)
        student = replace(student, point_class=label)
        _CACHE[key] = student
        if len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
        return student

    # ------------------------------------------------------------------ cost and figures

    def estimate(self, cell_params: Mapping[str, Any], components) -> dict:
        """``seconds``: the cell's own work per trial (embedding, perturbed forward passes,
        Hessians); the training of the trials' students is a set-up cost (``setup_key`` scoped
        by the cell's seed): a worker process trains them once for all the cells that share the
        seed and the training parameters (the in-process cache). Rates: the ``shallow_lm`` probe
        of :mod:`harness_plugins.semi_flat.costs`; Levenberg-Marquardt iterations per trial as measured on
        benchmarks/semi_flat_minima.toml (about 600 for tanh, which mostly reaches the target
        after 1-3 starts; about 235 for ReLU, whose 11 starts stall quickly)."""
        p = {prm.name: prm.default for prm in self.params}
        p.update(cell_params)
        key = ("semi_flat_students", repr(sorted(((components or {}).get("activation") or {}).items())),
               tuple(repr(p[k]) for k in _TRAINING_PARAMS), int(p["trials"]))
        return {**generalization_cost(p, components), "setup_key": key, "setup_scope": "seed"}

    def tables(self, rows: Sequence[Mapping[str, Any]], context) -> list:
        """The ratio per activation, map and H, and how the trials trained
        (:func:`harness_plugins.semi_flat.tables.generalization_tables`)."""
        from .tables import generalization_tables

        return generalization_tables(rows, context)

    def figures(self, rows: Sequence[Mapping[str, Any]], context) -> dict:
        done = [r for r in rows if r.get("status") == "ok" and (r.get("metrics") or {}).get("n_trials")]
        if not done:
            return {}
        from harness.plugin.series import per_series

        # any grid axis besides the drawn ones (embedding, activation, H) gets its own figures
        return per_series(done, lambda r: (r["params"].get("embedding"), _activation_of(r), int(r["params"]["H"])),
                          lambda part: {"ratio_vs_H": _ratio_figure(part, context),
                                        "hessian_vs_H": _hessian_figure(part, context)})


# ---------------------------------------------------------------------- helpers

def is_relu(act) -> bool:
    return getattr(act, "name", None) == "relu"


def train_student(x, y, act, H0: int, init_rng: np.random.Generator, *, init_std: float = 1.0,
                  target_error: float = 1e-29, max_restarts: int = 10, max_iterations: int = 300,
                  relu_start: str = "constructive") -> TrainedStudent:
    """Train an ``H0``-unit network on ``(x, y)`` by Levenberg-Marquardt to ``target_error``.

    ReLU with ``relu_start = "constructive"``: the interpolating start of
    :func:`harness_plugins.semi_flat.relu_interpolation.interpolate` (polished by Levenberg-Marquardt), and the
    random restarts only when it fails (``K* > H0``: impossible; or not found). Otherwise random
    starts ``N(0, init_std^2)`` with up to ``max_restarts`` restarts."""
    P = 3 * H0 + 1
    res = lambda th: shallow.residuals(th, x, y, act)  # noqa: E731
    jac = lambda th: shallow.jacobian(th, x, act)  # noqa: E731
    knots = status = None
    if is_relu(act) and relu_start == "constructive":
        from .levenberg_marquardt import levenberg_marquardt
        from .relu_interpolation import interpolate

        def polish(theta):
            r = levenberg_marquardt(res, jac, theta, target=target_error, max_iterations=max_iterations)
            return r.theta, r.reached

        built = interpolate(x, y, H0, polish, init_rng)
        knots, status = built.min_knots, built.status
        if built.theta is not None:
            return TrainedStudent(x, y, built.theta, shallow.training_error(built.theta, x, y, act), True, 0,
                                  knots, status)
    result = train_with_restarts(res, jac, lambda g: init_std * g.standard_normal(P), init_rng,
                                 max_restarts=max_restarts, target=target_error, max_iterations=max_iterations)
    return TrainedStudent(x, y, result.theta, result.error, result.reached, result.restarts, knots, status)


def _relu_summary(info) -> dict:
    keys = ("relu_min_knots_median", "relu_impossible", "relu_constructed", "relu_searched",
            "relu_not_found", "relu_reached_fraction_of_possible")
    if not info:
        return {k: None for k in keys}
    status = [s for _, s in info]
    possible = sum(s != "impossible" for s in status)
    reached = sum(s in ("constructed", "searched") for s in status)
    return {"relu_min_knots_median": float(np.median([k for k, _ in info])),
            "relu_impossible": status.count("impossible"), "relu_constructed": status.count("constructed"),
            "relu_searched": status.count("searched"), "relu_not_found": status.count("not_found"),
            "relu_reached_fraction_of_possible": reached / possible if possible else None}


def _unitwise_normal(rng: np.random.Generator, H: int, H0: int) -> tuple[np.ndarray, np.ndarray]:
    """Standard normal perturbations ``(3 H + 1,)`` and its restriction to the first ``H0`` units
    ``(3 H0 + 1,)``, drawn ``c`` first and then unit by unit, so that the first units' values do not
    depend on ``H``."""
    dc = rng.standard_normal()
    U = rng.standard_normal((H, 3))
    return (shallow.pack(U[:, 0], U[:, 1], U[:, 2], dc),
            shallow.pack(U[:H0, 0], U[:H0, 1], U[:H0, 2], dc))


def _mse(f: np.ndarray, g: np.ndarray) -> float:
    d = f - g
    return float(d @ d) / d.shape[0]


def _mean(values: Sequence[float]) -> float | None:
    return float(np.mean(values)) if len(values) else None


def _ratio_stats(r: np.ndarray) -> dict:
    n = r.shape[0]
    if n == 0:
        return {"mean_ratio": None, "sem_ratio": None, "std_ratio": None, "median_ratio": None}
    std = float(np.std(r, ddof=1)) if n > 1 else None
    return {"mean_ratio": float(np.mean(r)), "std_ratio": std,
            "sem_ratio": std / np.sqrt(n) if std is not None else None, "median_ratio": float(np.median(r))}

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

Result: ``mean_ratio``, ``sem_ratio`` (standard error), ``std_ratio``, ``median_ratio``, ``n_trials``
(trials aggregated: all, or those that reached the target when ``require_target``), the mean
errors ``error_H``, ``error_H0`` and ``error_unperturbed`` (``N_H0`` itself; also its median
``error_unperturbed_median``: interpolants with large weights give a heavy tail), ``rho_mean``; training:
``target_reached`` (count), ``target_reached_fraction``, ``train_error_median``, ``train_error_max``,
``restarts_mean``, ``restarts_max``; ReLU (constructive start, else ``None``): ``relu_min_knots_median``,
``relu_impossible`` (trials with ``K* > H0``), ``relu_constructed`` (``K* < H0``, reached),
``relu_searched`` (``K* = H0``, reached), ``relu_not_found`` (``K* <= H0``, missed) and
``relu_reached_fraction_of_possible``; checks: ``embedding_deviation_max`` (``max |N_H - N_H0|`` on the
test inputs) and ``gradient_max`` (largest gradient entry at the embedded point); Hessian:
``hessian_negative``, ``hessian_zero``, ``hessian_positive`` (medians over the Hessian trials),
``hessian_negative_max``, ``hessian_tol_median``, ``hessian_trace_mean``, ``parameters`` (``3 H + 1``);
curve ``ratio`` (one value per aggregated trial).
"""
from __future__ import annotations

from collections import OrderedDict, defaultdict
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from harness.plugin import Experiment, Param, hookimpl
from harness.plugin.seeds import stream_key

from . import shallow
from .costs import generalization_cost
from .embedding import EMBEDDINGS, embed
from .levenberg_marquardt import train_with_restarts

_TRAINING_PARAMS = ("H0", "n_train", "noise_variance", "teacher", "input_std", "init_std",
                    "target_error", "max_restarts", "max_iterations", "relu_start")


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


_CACHE: "OrderedDict[tuple, TrainedStudent]" = OrderedDict()
_CACHE_SIZE = 100_000


class EmbeddingGeneralization(Experiment):
    """Generalisation-error ratio of a perturbed embedded network; the protocol, the trial and
    the result keys are described in the module docstring of :mod:`harness_plugins.semi_flat`."""

    name = "embedding_generalization"
    help = ("generalisation-error ratio of a perturbed embedded network N_H over the perturbed "
            "trained N_H0, and the Hessian spectrum at the embedded point")
    slots = {"activation": ("activation", "tanh")}
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
    )
    example = {"params": {"H": 7, "trials": 3, "n_test": 200, "hessian_trials": 2},
               "components": {"activation": {"name": "tanh", "params": {}}}}

    # ------------------------------------------------------------------ one cell

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
        train_err, reached, restarts, relu_info = [], [], [], []
        deviation, grad_max = 0.0, 0.0
        hess = []
        for t in range(self.trials):
            student = self._student(act, teacher, rng(t, "data"), rng(t, "init"), (entropy, base_key, t))
            train_err.append(student.error)
            reached.append(student.reached)
            restarts.append(student.restarts)
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
        })
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


def pooled(stats: Sequence[tuple[int, float, float | None]]) -> tuple[float, float | None]:
    """Mean and standard error of the union of groups given as ``(n, mean, std)`` (ddof 1)."""
    n = np.array([s[0] for s in stats], float)
    m = np.array([s[1] for s in stats], float)
    s = np.array([s[2] if s[2] is not None else 0.0 for s in stats], float)
    N = n.sum()
    mean = float(n @ m / N)
    if N < 2:
        return mean, None
    var = (np.sum((n - 1) * s ** 2) + np.sum(n * (m - mean) ** 2)) / (N - 1)
    return mean, float(np.sqrt(var / N))


def _activation_of(row: Mapping[str, Any]) -> str:
    return ((row.get("components") or {}).get("activation") or {}).get("name", "?")


def _label(row: Mapping[str, Any], embeddings: set) -> str:
    act = _activation_of(row)
    return f"{act} / {row['params'].get('embedding')}" if len(embeddings) > 1 else act


def _by_line(rows) -> dict:
    """``{label: {H: [rows]}}``, one line per activation (and embedding, when several)."""
    embeddings = {r["params"].get("embedding") for r in rows}
    lines: dict = defaultdict(lambda: defaultdict(list))
    for r in rows:
        lines[_label(r, embeddings)][int(r["params"]["H"])].append(r)
    return lines


def _ratio_figure(rows, context):
    """One panel per embedding map, one line per activation (pooled mean +- standard error)."""
    from matplotlib.figure import Figure

    maps = [m for m in EMBEDDINGS if any(r["params"].get("embedding") == m for r in rows)]
    fig = Figure(figsize=(4.6 * len(maps) + 0.6, 4.6))
    axes = fig.subplots(1, len(maps), squeeze=False, sharey=True)[0]
    for ax, emb in zip(axes, maps):
        own = [r for r in rows if r["params"].get("embedding") == emb]
        lines: dict = defaultdict(lambda: defaultdict(list))
        for r in own:
            act = _activation_of(r)
            lines[act][int(r["params"]["H"])].append(r)
        for label, by_H in sorted(lines.items()):
            Hs = sorted(by_H)
            stats = [pooled([(r["metrics"]["n_trials"], r["metrics"]["mean_ratio"], r["metrics"].get("std_ratio"))
                             for r in by_H[H]]) for H in Hs]
            errs = [st[1] if st[1] is not None else 0.0 for st in stats]
            reached = np.mean([r["metrics"].get("target_reached_fraction", np.nan) for H in Hs for r in by_H[H]])
            ax.errorbar(Hs, [st[0] for st in stats], yerr=errs, marker="o", markersize=3, capsize=2,
                        label=f"{label} (target reached: {reached:.0%} of trials)")
        ax.axhline(1.0, color="0.6", linewidth=0.8, linestyle="--")
        ax.set_xlabel("H (hidden units of the embedded network)")
        ax.set_title(emb.replace("_", " "), fontsize=10)
        ax.legend(title="activation", fontsize=7)
    axes[0].set_ylabel("mean of err(N_H + delta) / err(N_H0 + delta)")
    first = rows[0]["params"]
    fig.suptitle(f"Generalisation-error ratio after embedding (H0 = {first['H0']}, "
                 f"rho = {first['rho_relative']:g} ||theta(H0)||)", fontsize=10)
    fig.text(0.01, 0.01, context.caption("bars: ± 1 standard error over trials; all trials, interpolating "
                                         "or not (see target reached)"), fontsize=6, wrap=True)
    fig.subplots_adjust(bottom=0.2, top=0.86, wspace=0.08)
    return fig


def _hessian_figure(rows, context):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9.6, 4.4))
    ax_count, ax_trace = fig.subplots(1, 2)
    for label, by_H in sorted(_by_line(rows).items()):
        Hs = [H for H in sorted(by_H) if by_H[H][0]["metrics"].get("hessian_zero") is not None]
        if not Hs:
            continue
        zero = [np.mean([r["metrics"]["hessian_zero"] for r in by_H[H]]) for H in Hs]
        neg = [np.max([r["metrics"]["hessian_negative_max"] for r in by_H[H]]) for H in Hs]
        trace = [np.mean([r["metrics"]["hessian_trace_mean"] for r in by_H[H]]) for H in Hs]
        line, = ax_count.plot(Hs, zero, marker="o", markersize=3, label=f"{label}: zero (median)")
        ax_count.plot(Hs, neg, marker="v", markersize=3, linestyle=":", color=line.get_color(),
                      label=f"{label}: negative (max over trials)")
        ax_trace.plot(Hs, trace, marker="o", markersize=3, label=label)
    first = rows[0]["params"]
    ax_count.set_xlabel("H")
    ax_count.set_ylabel("eigenvalue count")
    ax_count.set_title(f"zero: |lambda| <= {first['hessian_rtol']:g} max |lambda|", fontsize=9)
    ax_count.legend(fontsize=7)
    ax_trace.set_xlabel("H")
    ax_trace.set_ylabel("trace (mean over trials)")
    ax_trace.set_yscale("log")
    ax_trace.legend(fontsize=7)
    fig.suptitle("Hessian of the training error at the embedded point", fontsize=10)
    fig.text(0.01, 0.01, context.caption(f"Hessian of the first {first['hessian_trials']} trial(s) per cell"),
             fontsize=6, wrap=True)
    fig.subplots_adjust(bottom=0.2, wspace=0.3)
    return fig


# ---------------------------------------------------------------------- minimum or saddle

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


class EmbeddingCriticalPoint(Experiment):
    """Minimum or saddle: embed a non-interpolating critical point and classify it by the Hessian.

    One trial: the training set of :class:`EmbeddingGeneralization` (same streams: ``n_train``
    inputs ``x ~ N(0, input_std^2)``, one-unit teacher plus noise ``N(0, noise_variance)``); an
    ``H0``-unit network (``H0 = 1`` or ``2``: it cannot interpolate 10 noisy points) trained by
    Levenberg-Marquardt with target 0 (it stalls at a critical point with positive loss), then
    ``newton_steps`` Newton steps to bring the gradient to round-off. The trial is kept when that
    point is critical (relative gradient, :func:`relative_gradient`, ``<= gradient_rtol``), has loss
    ``>= min_loss`` and no negative Hessian eigenvalue (a local minimum to second order) and, for
    ReLU with ``require_active``, every unit is active on some training input (a dead unit would make
    it a narrower network); restarts (up to ``max_restarts``) otherwise. A ReLU point always has zero
    eigenvalues (each unit's scaling ``(w, b, v) -> (a w, a b, v / a)``), so the narrow point's
    inertia is recorded too. It is embedded into ``H`` units by ``embedding`` with the
    free constants of the parameters, and the embedded point is classified by :func:`classify`:
    gradient first (not every map gives a critical point off interpolation, see
    :mod:`harness_plugins.semi_flat.embedding`: inactive units need ``v phi'(b) = 0``, i.e. ``new_output_weight
    = 0`` for tanh or a dead ReLU unit; inactive propagation needs ``sum_i r_i phi(w x_i + b) = 0``,
    i.e. ``new_input_weight = 0`` for tanh or a ReLU unit dead on every training input), then the
    Hessian's inertia with zero meaning ``|lambda| <= hessian_rtol * max |lambda|``. The Hessian is
    the exact one of :func:`harness_plugins.semi_flat.shallow.error_hessian`; for ReLU it is the Hessian of the
    smooth piece the point lies in (no training input sits on a kink, checked: ``kink_margin_min``).

    Metrics: ``n_kept`` (trials kept), ``discarded`` (starts whose narrow point was not kept), ``narrow_loss_median``,
    ``narrow_gradient_max``, the narrow Hessian's ``narrow_negative_max``, ``narrow_zero``,
    ``narrow_positive`` (medians), ``embedded_gradient_max`` (relative), one count per class
    (``minimum``, ``flat_directions``, ``saddle``, ``not_critical``), ``class`` (the majority), the
    inertia ``hessian_negative`` / ``hessian_zero`` / ``hessian_positive`` (min and max over trials
    when they differ: ``*_min``, ``*_max``), the floor ``hessian_tol_max`` (largest absolute floor
    used), the largest |eigenvalue| called zero relative to max |lambda| (``zero_rel_max``) and the
    smallest called non-zero (``nonzero_rel_min``): a wide gap between them says the split is not
    a matter of the threshold; ``most_negative_rel`` (most negative eigenvalue / max |lambda|).
    """

    name = "embedding_critical_point"
    help = ("embed a non-interpolating local minimum of a narrow network by each map and classify the "
            "embedded point (minimum, flat directions, saddle) from the Hessian's spectrum")
    slots = {"activation": ("activation", "tanh")}
    params = (
        Param("H0", int, 1, "width of the trained (non-interpolating) network", min=1),
        Param("H", int, 2, "width of the embedded network (H > H0)", min=2),
        Param("embedding", str, "unit_replication", "embedding map", choices=EMBEDDINGS),
        Param("split", float, 0.5, "unit replication: output-weight split lambda"),
        Param("new_bias", float, -1.0, "inactive units / inactive propagation: bias of each added unit"),
        Param("new_output_weight", float, 0.0, "inactive units: output weight of each added unit"),
        Param("new_input_weight", float, 0.0, "inactive propagation: input weight of each added unit"),
        Param("trials", int, 50, "data sets (trials) per cell", min=1),
        Param("n_train", int, 10, "training points", min=1),
        Param("noise_variance", float, 1e-2, "variance of the output noise", min=0.0),
        Param("teacher", list, [1.0, 0.0, 1.0, 0.0], "one-unit teacher [w, b, v, c]",
              item_type=float, check=_teacher_check),
        Param("input_std", float, 1.0, "inputs x ~ N(0, input_std^2)", min=0.0),
        Param("init_std", float, 1.0, "starts: every parameter ~ N(0, init_std^2)", min=0.0),
        Param("max_restarts", int, 10, "fresh starts when the narrow point is not kept", min=0),
        Param("max_iterations", int, 500, "Levenberg-Marquardt iterations per start", min=1),
        Param("newton_steps", int, 20, "Newton polishing steps after Levenberg-Marquardt", min=0),
        Param("gradient_rtol", float, 1e-10, "critical: relative gradient <= gradient_rtol", min=0.0),
        Param("min_loss", float, 1e-8, "keep narrow points with training error >= min_loss", min=0.0),
        Param("require_active", bool, True,
              "ReLU: keep narrow points whose every unit is active on at least one training input"),
        Param("hessian_rtol", float, 1e-9, "|eigenvalue| <= hessian_rtol * max |eigenvalue| counts as zero",
              min=0.0),
    )
    example = {"params": {"trials": 2}, "components": {"activation": {"name": "tanh", "params": {}}}}

    def run(self, cell) -> dict:
        act = cell.activation
        H0, H = self.H0, self.H
        if H <= H0:
            raise ValueError(f"H = {H} must exceed H0 = {H0}")
        teacher = shallow.pack([self.teacher[0]], [self.teacher[1]], [self.teacher[2]], self.teacher[3])
        base_key = tuple(cell.seed.spawn_key) + (stream_key("trials"),)
        entropy = cell.seed.entropy

        def rng(t: int, stream: str) -> np.random.Generator:
            return np.random.default_rng(np.random.SeedSequence(entropy, spawn_key=base_key + (t, stream_key(stream))))

        kept, discarded = [], 0
        for t in range(self.trials):
            data = rng(t, "data")
            x = self.input_std * data.standard_normal(self.n_train)
            y = shallow.forward(teacher, x, act) + np.sqrt(self.noise_variance) * data.standard_normal(self.n_train)
            narrow, n_bad = self._narrow(x, y, act, rng(t, "init"))
            discarded += n_bad
            if narrow is None:
                continue
            theta0, g0, inert0, loss0 = narrow
            wide = embed(theta0, H, self.embedding, act, split=self.split, bias=self.new_bias,
                         output_weight=self.new_output_weight, input_weight=self.new_input_weight)
            g = relative_gradient(wide, x, y, act)
            lam = np.linalg.eigvalsh(shallow.error_hessian(wide, x, y, act))
            label, inert = classify(lam, g, self.gradient_rtol, self.hessian_rtol)
            top = float(np.max(np.abs(lam)))
            zero = np.abs(lam) <= inert.tol
            margin = float(np.min(np.abs(shallow.preactivations(wide, x)))) if is_relu(act) else None
            kept.append(dict(loss=loss0, g0=g0, inert0=inert0, g=g, label=label, inert=inert, margin=margin,
                             zero_rel=float(np.max(np.abs(lam[zero]))) / top if zero.any() else 0.0,
                             nonzero_rel=float(np.min(np.abs(lam[~zero]))) / top if (~zero).any() else None,
                             neg_rel=float(lam.min()) / top))
        out: dict[str, Any] = {"n_kept": len(kept), "discarded": discarded, "parameters": 3 * H + 1}
        counts = {c: sum(k["label"] == c for k in kept) for c in CLASSES}
        out.update(counts)
        out["class"] = max(CLASSES, key=lambda c: counts[c]) if kept else None
        if not kept:
            return out
        for name, idx in (("hessian_negative", 0), ("hessian_zero", 1), ("hessian_positive", 2)):
            vals = [k["inert"][idx] for k in kept]
            out[name] = int(np.median(vals))
            out[name + "_min"], out[name + "_max"] = int(min(vals)), int(max(vals))
        nonzero = [k["nonzero_rel"] for k in kept if k["nonzero_rel"] is not None]
        margins = [k["margin"] for k in kept if k["margin"] is not None]
        out.update({
            "narrow_loss_median": float(np.median([k["loss"] for k in kept])),
            "narrow_gradient_max": float(max(k["g0"] for k in kept)),
            "narrow_negative_max": int(max(k["inert0"].negative for k in kept)),
            "narrow_zero": int(np.median([k["inert0"].zero for k in kept])),
            "narrow_positive": int(np.median([k["inert0"].positive for k in kept])),
            "embedded_gradient_max": float(max(k["g"] for k in kept)),
            "hessian_tol_max": float(max(k["inert"].tol for k in kept)),
            "zero_rel_max": float(max(k["zero_rel"] for k in kept)),
            "nonzero_rel_min": float(min(nonzero)) if nonzero else None,
            "most_negative_rel": float(min(k["neg_rel"] for k in kept)),
            "kink_margin_min": float(min(margins)) if margins else None,
        })
        return out

    def _narrow(self, x, y, act, init_rng):
        """``(theta, relative gradient, zero eigenvalues, loss)`` of a kept narrow point, or ``None``,
        and the number of discarded starts."""
        from .levenberg_marquardt import levenberg_marquardt

        P = 3 * self.H0 + 1
        bad = 0
        for _ in range(self.max_restarts + 1):
            r = levenberg_marquardt(lambda th: shallow.residuals(th, x, y, act),
                                    lambda th: shallow.jacobian(th, x, act),
                                    self.init_std * init_rng.standard_normal(P), target=0.0,
                                    max_iterations=self.max_iterations)
            theta = newton_polish(r.theta, x, y, act, self.newton_steps)
            g = relative_gradient(theta, x, y, act)
            loss = shallow.training_error(theta, x, y, act)
            inert = shallow.inertia(np.linalg.eigvalsh(shallow.error_hessian(theta, x, y, act)), self.hessian_rtol)
            active = (not (is_relu(act) and self.require_active)
                      or bool(np.all(np.any(shallow.preactivations(theta, x) > 0, axis=0))))
            if g <= self.gradient_rtol and loss >= self.min_loss and inert.negative == 0 and active:
                return (theta, g, inert, loss), bad
            bad += 1
        return None, bad

    def estimate(self, cell_params: Mapping[str, Any], components) -> dict:
        trials = int(cell_params.get("trials", 50))
        return {"memory_bytes": 1_000_000, "seconds": 0.05 * trials}

    def figures(self, rows: Sequence[Mapping[str, Any]], context) -> dict:
        from harness.plugin.series import per_series

        def draw(part):
            lines = self.table(part)
            return {"classification_table": _critical_table_figure(lines, context)} if lines else {}

        # one table per combination of any grid axis the table's columns do not show
        return per_series(rows, lambda r: (_activation_of(r), r["params"].get("H0"), r["params"].get("H"),
                                           r["params"].get("embedding"), r["params"].get("split")), draw)

    @staticmethod
    def table(rows: Sequence[Mapping[str, Any]]) -> list[dict]:
        """One line per (activation, H0, H, map): counts per class and the inertia."""
        out = []
        for r in rows:
            m = r.get("metrics") or {}
            if r.get("status") != "ok" or not m.get("n_kept"):
                continue
            p = r["params"]
            act = _activation_of(r)

            def span(name):
                lo, hi = m.get(name + "_min"), m.get(name + "_max")
                return f"{lo}" if lo == hi else f"{lo}-{hi}"

            out.append({"activation": act, "H0": p["H0"], "H": p["H"], "map": p["embedding"],
                        "split": p["split"] if p["embedding"] == "unit_replication" else None,
                        "kept": m["n_kept"],
                        "narrow n/z/p": f"{m['narrow_negative_max']}/{m['narrow_zero']}/{m['narrow_positive']}",
                        "minimum": m["minimum"], "flat": m["flat_directions"],
                        "saddle": m["saddle"], "not critical": m["not_critical"],
                        "neg": span("hessian_negative"), "zero": span("hessian_zero"), "pos": span("hessian_positive"),
                        "grad (rel)": m["embedded_gradient_max"], "zero <=": m["zero_rel_max"],
                        "nonzero >=": m["nonzero_rel_min"]})
        order = {e: i for i, e in enumerate(EMBEDDINGS)}
        return sorted(out, key=lambda l: (l["activation"], l["H0"], order.get(l["map"], 9), l["split"] or 0))


def _critical_table_figure(lines, context):
    from harness.plugin.figures import table_figure

    fig = table_figure(lines, list(lines[0]), width=11.0, base_height=0.9, row_height=0.22,
                       number_format=".1e", bbox=(0, 0.18, 1, 0.82))
    fig.text(0.01, 0.01, context.caption(
        "counts of trials per class; neg/zero/pos: Hessian eigenvalue counts (range over trials); zero: "
        "|lambda| <= hessian_rtol max |lambda|; 'zero <=' / 'nonzero >=': largest zero and smallest "
        "non-zero |lambda| / max |lambda|; grad (rel): max |grad E| / (2 sum |r_i| max |J_i.|)"),
        fontsize=6, wrap=True)
    return fig


@hookimpl
def harness_register_experiments(registry):
    registry.add(EmbeddingGeneralization)
    registry.add(EmbeddingCriticalPoint)

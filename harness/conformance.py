"""The plugin conformance suite: every registered component through the interface of its kind.

``check_component(kind, name_or_class)`` returns one :class:`CheckResult` per check; a check
that cannot apply (an experiment without an ``example`` cell, a component with required
parameters) is reported as skipped with its reason. ``assert_conforms(kind, name)`` is the
one-line pytest helper for plugin authors::

    from harness.conformance import assert_conforms

    def test_my_activation_conforms():
        assert_conforms("activation", "my_softplus")

What is checked, by kind (see the ``_check_<kind>`` functions, collected in
:data:`KIND_CHECKS`; add a check by adding a line to the function of its kind):

- every kind: the declaration (name, help, params), that the declared defaults validate, and
  that the component can be built with its defaults;
- activation: shapes and float32/float64 dtypes kept, vectorised (array = element by element),
  finite without floating-point warnings for large ``|x|``, and ``dphi`` / ``d2phi`` against
  central finite differences of ``phi`` / ``dphi`` at points away from kinks;
- initializer: shapes, dtypes, finite, equal seeds give equal weights, per-layer entry
  variance against ``expected_variances()`` within 5 standard errors;
- architecture: the layer shapes chain from ``d`` to 1, ``trainable`` and ``param_count`` agree
  with them, ``forward`` gives ``(N,)`` and agrees with :func:`harness.engine.network.forward`;
- dataset: shapes, dtypes, finite, equal seeds give equal data, different seeds differ;
- loss: ``grad`` against central finite differences of ``value``, shapes, and that the loss
  is a mean over samples;
- optimizer: ``prepare`` returns a dict; steps keep shapes and dtypes, leave frozen layers
  (gradient ``None``) untouched, move the trainable ones, and are deterministic;
- experiment: the ``example`` cell run twice with the same seed gives identical results (timing
  metrics excepted, see :data:`TIMING_KEY`), as a flat dict of scalars and lists of numbers;
- backend: ``ntk`` (full kernel, default arguments) agrees with ``sum_l (F_{l-1} F_{l-1}^T) o
  (B_l B_l^T)`` computed from :mod:`harness.engine.network`.
"""
from __future__ import annotations

import json
import math
import re
import time
import warnings
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from .components import (KINDS, Activation, Component, Loss, Registry, TrainingProblem,
                         CellContext)
from .params import Param

SEED = 20240501
"""Root seed of every random draw the suite makes (the suite itself is deterministic)."""

N_SE = 5.0
"""Statistical checks allow this many standard errors."""

TIMING_KEY = re.compile(r"(^|_)(seconds|secs|time|wall|elapsed|duration)(_|$)|_s$")
"""Result keys that hold wall-clock timings, left out of the experiment determinism check."""


@dataclass
class CheckResult:
    """The outcome of one check: ``passed`` is True for a skipped check (``skipped`` says so)."""

    name: str
    passed: bool
    detail: str = ""
    skipped: bool = False

    def __str__(self) -> str:
        status = "SKIP" if self.skipped else ("ok" if self.passed else "FAIL")
        return f"[{status}] {self.name}" + (f": {self.detail}" if self.detail else "")


class Skip(Exception):
    """Raised by a check that does not apply to the component; the message is the reason."""


class _Results(list):
    """Runs checks and records a :class:`CheckResult` for each.

    A check is a function that returns an optional detail text when it passes, raises
    :class:`AssertionError` when it fails and :class:`Skip` when it does not apply; any other
    exception is a failure that names the exception.
    """

    def run(self, name: str, fn: Callable[..., str | None], *args: Any) -> Any:
        try:
            detail = fn(*args)
        except Skip as exc:
            self.append(CheckResult(name, True, str(exc), skipped=True))
        except AssertionError as exc:
            self.append(CheckResult(name, False, str(exc) or "assertion failed"))
        except Exception as exc:
            self.append(CheckResult(name, False, f"raised {type(exc).__name__}: {exc}"))
        else:
            self.append(CheckResult(name, True, detail or ""))
            return True
        return False


def _rng(*key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(SEED, spawn_key=key))


# ----------------------------------------------------------------------------- every kind

def _check_declaration(cls: type[Component], kind: str) -> str:
    assert cls.kind == kind, f"class kind is {cls.kind!r}, checked as {kind!r}"
    assert isinstance(cls.name, str) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.\-]*", cls.name), \
        f"name {cls.name!r} must be a non-empty identifier-like string"
    assert isinstance(cls.help, str) and cls.help.strip(), "help must be a non-empty one-line string"
    names = [p.name for p in cls.params]
    assert all(isinstance(p, Param) for p in cls.params), "params must be Param objects"
    assert len(set(names)) == len(names), f"duplicate parameter names in {names}"
    json.dumps(cls.describe())
    return f"{len(names)} parameter(s)"


def _check_defaults_validate(cls: type[Component]) -> str:
    checked = 0
    for p in cls.params:
        if p.required or p.default is None:
            continue
        p.validate(p.default, None, f"{cls.kind}.{cls.name}.{p.name}")
        checked += 1
    return f"{checked} default(s) valid"


def _instance(cls: type[Component], params: dict | None = None) -> Component:
    """``cls(**params)``; :class:`Skip` when a required parameter is not given."""
    params = dict(params or {})
    missing = [p.name for p in cls.params if p.required and p.name not in params]
    if missing:
        raise Skip(f"required parameter(s) {', '.join(missing)} have no default")
    return cls(**params)


def _check_construct(cls: type[Component]) -> str:
    component = _instance(cls)
    assert set(component.config) == {p.name for p in cls.params}, \
        f"config keys {sorted(component.config)} differ from the declared parameters"
    repr(component)
    return repr(component)


def _check_common(cls: type[Component], kind: str) -> list[CheckResult]:
    results = _Results()
    results.run("declaration", _check_declaration, cls, kind)
    results.run("defaults validate", _check_defaults_validate, cls)
    results.run("construct with defaults", _check_construct, cls)
    return results


# ----------------------------------------------------------------------------- activation

def _activation_shapes(act: Activation) -> str:
    rng = _rng(1)
    for shape in [(), (7,), (3, 4, 5), (0,), (2, 0)]:
        x = rng.standard_normal(shape)
        for fname in ("phi", "dphi", "d2phi"):
            out = getattr(act, fname)(x)
            assert np.shape(out) == shape, f"{fname} maps shape {shape} to {np.shape(out)}"
    return "shapes (), (7,), (3,4,5), (0,), (2,0) kept"


def _activation_dtypes(act: Activation) -> str:
    x = _rng(2).standard_normal(11)
    for dtype in (np.float32, np.float64):
        for fname in ("phi", "dphi", "d2phi"):
            out = np.asarray(getattr(act, fname)(x.astype(dtype)))
            assert out.dtype == dtype, f"{fname} turns {np.dtype(dtype).name} into {out.dtype}"
    return "float32 and float64 kept"


def _activation_vectorised(act: Activation) -> str:
    x = np.concatenate([_rng(3).uniform(-5, 5, 40), [0.0, -1.0, 1.0]])
    for fname in ("phi", "dphi", "d2phi"):
        f = getattr(act, fname)
        whole = np.asarray(f(x))
        single = np.array([np.asarray(f(x[i:i + 1])).reshape(()) for i in range(x.size)])
        assert np.allclose(whole, single, rtol=1e-12, atol=1e-300, equal_nan=True), \
            f"{fname} on an array differs from {fname} element by element"
    return "array results equal element-wise results"


def _activation_large_inputs(act: Activation) -> str:
    x = np.array([-1000.0, -710.0, -100.0, -30.0, 30.0, 100.0, 710.0, 1000.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(over="raise", invalid="raise", divide="raise"):
            for fname in ("phi", "dphi", "d2phi"):
                out = np.asarray(getattr(act, fname)(x))
                assert np.all(np.isfinite(out)), f"{fname} is not finite at {x[~np.isfinite(out)]}"
    return "finite, no overflow or invalid-value warnings for |x| up to 1000"


def _fd_points() -> np.ndarray:
    return np.concatenate([_rng(4).uniform(-6, 6, 400), [0.0, -12.0, 12.0, -20.0, 20.0]])


def _finite_difference_check(f, df, x: np.ndarray, what: str, rtol: float = 1e-6,
                             min_smooth: float = 0.95) -> str:
    """Compare ``df(x)`` with central differences of ``f`` at the points where the two
    one-sided differences agree (no kink within a step)."""
    h = 1e-5 * np.maximum(1.0, np.abs(x))
    fp, f0, fm = (np.asarray(f(x + h), float), np.asarray(f(x), float), np.asarray(f(x - h), float))
    right, left = (fp - f0) / h, (f0 - fm) / h
    central = (fp - fm) / (2 * h)
    smooth = np.abs(right - left) <= 1e-2 * (1 + np.abs(central))
    assert smooth.mean() >= min_smooth, \
        f"{what}: one-sided differences disagree at {np.sum(~smooth)} of {x.size} points (not differentiable?)"
    analytic = np.asarray(df(x), float)
    err = np.abs(analytic - central)
    tol = rtol * (1 + np.abs(central))
    bad = smooth & ~(err <= tol)
    if bad.any():
        i = np.flatnonzero(bad)[np.argmax((err / tol)[bad])]
        raise AssertionError(f"{what}: at x = {x[i]:.6g} analytic {analytic[i]:.10g}, finite "
                             f"difference {central[i]:.10g} ({bad.sum()} bad point(s))")
    return f"{what}: agrees to {rtol:g} at {smooth.sum()} points ({np.sum(~smooth)} at kinks skipped)"


def _check_activation(cls, registry) -> list[CheckResult]:
    results = _Results()
    try:
        act = _instance(cls)
    except Exception:
        return results  # reported by "construct with defaults"
    x = _fd_points()
    results.run("shapes kept", _activation_shapes, act)
    results.run("dtypes kept", _activation_dtypes, act)
    results.run("vectorised", _activation_vectorised, act)
    results.run("large inputs", _activation_large_inputs, act)
    results.run("dphi vs finite differences", _finite_difference_check, act.phi, act.dphi, x, "dphi")
    results.run("d2phi vs finite differences", _finite_difference_check, act.dphi, act.d2phi, x, "d2phi")
    return results


# ----------------------------------------------------------------------------- initializer

DEFAULT_INIT_SHAPES = [(400, 200), (600, 400), (1, 600)]
"""Shapes the initializer checks draw with: fan-in differs from fan-out in every layer, so that
a variance scaled by the wrong one is caught."""

N_INIT_DRAWS = 16


def _init_shapes(cls) -> list[tuple[int, int]]:
    shapes = cls.example_shapes if getattr(cls, "example_shapes", None) else DEFAULT_INIT_SHAPES
    return [(int(n), int(m)) for n, m in shapes]


def _initializer_shapes_dtypes(init, shapes) -> str:
    for dtype in (np.float64, np.float32):
        weights = init.initialize(shapes, _rng(10), dtype)
        assert isinstance(weights, list) and len(weights) == len(shapes), \
            f"expected a list of {len(shapes)} arrays, got {type(weights).__name__} of {len(weights)}"
        for l, (W, shape) in enumerate(zip(weights, shapes)):
            assert isinstance(W, np.ndarray), f"layer {l} is {type(W).__name__}, not an ndarray"
            assert W.shape == shape, f"layer {l} has shape {W.shape}, expected {shape}"
            assert W.dtype == dtype, f"layer {l} has dtype {W.dtype}, expected {np.dtype(dtype).name}"
            assert np.all(np.isfinite(W)), f"layer {l} has non-finite entries"
    return f"shapes {shapes}, float64 and float32, finite"


def _initializer_determinism(init, shapes) -> str:
    a = init.initialize(shapes, _rng(11), np.float64)
    b = init.initialize(shapes, _rng(11), np.float64)
    assert all(np.array_equal(x, y) for x, y in zip(a, b)), "equal seeds gave different weights"
    c = init.initialize(shapes, _rng(12), np.float64)
    assert any(not np.array_equal(x, y) for x, y in zip(a, c)), "different seeds gave equal weights"
    return "equal seeds equal, different seeds differ"


def _initializer_variances(init, shapes) -> str:
    expected = init.expected_variances(shapes)
    assert len(expected) == len(shapes), f"expected_variances has {len(expected)} items for {len(shapes)} layers"
    if all(v is None for v in expected):
        raise Skip("expected_variances() gives no fixed variance")
    draws = [init.initialize(shapes, _rng(13, k), np.float64) for k in range(N_INIT_DRAWS)]
    lines = []
    for l, v_exp in enumerate(expected):
        if v_exp is None:
            continue
        layers = [d[l].ravel() for d in draws]
        per_draw = np.array([np.var(w) for w in layers])
        pooled = np.concatenate(layers)
        v_hat = per_draw.mean()
        # Standard error: the larger of the spread across independent draws (valid even when
        # entries within a draw are dependent) and the independent-entries formula
        # sqrt((m4 - var^2) / n) (valid when they are not).
        m4 = np.mean((pooled - pooled.mean()) ** 4)
        se_entries = math.sqrt(max(m4 - v_hat ** 2, 0.0) / pooled.size)
        se_draws = per_draw.std(ddof=1) / math.sqrt(len(per_draw))
        se = max(se_entries, se_draws)
        tol = N_SE * se + 1e-9 * abs(v_exp)
        line = f"layer {l}: {v_hat:.5g} +- {se:.2g} vs expected {v_exp:.5g}"
        assert abs(v_hat - v_exp) <= tol, line + f" (off by {abs(v_hat - v_exp) / max(se, 1e-300):.1f} SE)"
        lines.append(line)
    return "; ".join(lines)


def _check_initializer(cls, registry) -> list[CheckResult]:
    results = _Results()
    try:
        init = _instance(cls)
    except Exception:
        return results
    shapes = _init_shapes(cls)
    results.run("shapes and dtypes", _initializer_shapes_dtypes, init, shapes)
    results.run("deterministic", _initializer_determinism, init, shapes)
    results.run("entry variances", _initializer_variances, init, shapes)
    return results


# ----------------------------------------------------------------------------- architecture

ARCH_DIMS = (3, 8)


class _Tanh(Activation):
    """A fixed activation for the checks that need one (independent of what is registered)."""

    name = "_conformance_tanh"
    help = "tanh"

    def phi(self, x):
        return np.tanh(x)

    def dphi(self, x):
        return 1 - np.tanh(x) ** 2

    def d2phi(self, x):
        return -2 * np.tanh(x) * (1 - np.tanh(x) ** 2)


def _gaussian_weights(shapes, rng) -> list[np.ndarray]:
    return [rng.standard_normal(shape) / math.sqrt(shape[1]) for shape in shapes]


def _architecture_shapes(arch) -> str:
    out = []
    for d in ARCH_DIMS:
        shapes = arch.layer_shapes(d)
        assert len(shapes) >= 1, f"d = {d}: no layers"
        for l, s in enumerate(shapes):
            assert len(s) == 2 and all(isinstance(v, (int, np.integer)) and v >= 1 for v in s), \
                f"d = {d}: layer {l} shape {s} is not two integers >= 1"
        assert shapes[0][1] == d, f"d = {d}: first layer has fan-in {shapes[0][1]}"
        for l in range(1, len(shapes)):
            assert shapes[l][1] == shapes[l - 1][0], f"d = {d}: layer {l} fan-in {shapes[l][1]} != " \
                                                     f"layer {l - 1} fan-out {shapes[l - 1][0]}"
        assert shapes[-1][0] == 1, f"d = {d}: output layer has {shapes[-1][0]} outputs, expected n_L = 1"
        out.append(f"d={d}: {shapes}")
    return "; ".join(out)


def _architecture_counts(arch) -> str:
    for d in ARCH_DIMS:
        shapes = arch.layer_shapes(d)
        mask = arch.trainable(d)
        assert len(mask) == len(shapes), f"d = {d}: trainable has {len(mask)} items for {len(shapes)} layers"
        assert all(isinstance(t, (bool, np.bool_)) for t in mask), f"d = {d}: trainable must hold bools"
        total = sum(a * b for a, b in shapes)
        trained = sum(a * b for (a, b), t in zip(shapes, mask) if t)
        assert arch.param_count(d, trainable_only=False) == total, \
            f"d = {d}: param_count(all) = {arch.param_count(d, trainable_only=False)}, shapes give {total}"
        assert arch.param_count(d) == trained, \
            f"d = {d}: param_count(trainable) = {arch.param_count(d)}, shapes and mask give {trained}"
    return "trainable and param_count consistent with the shapes"


def _architecture_forward(arch) -> str:
    from .engine.network import forward

    act = _Tanh()
    for d in ARCH_DIMS:
        rng = _rng(20, d)
        weights = _gaussian_weights(arch.layer_shapes(d), rng)
        X = rng.standard_normal((6, d))
        out = np.asarray(arch.forward(weights, X, act))
        assert out.shape == (6,), f"d = {d}: forward gives shape {out.shape}, expected (6,)"
        assert np.all(np.isfinite(out)), f"d = {d}: forward is not finite"
        ref = forward(weights, X, act).output
        assert np.allclose(out, ref, rtol=1e-10, atol=1e-12), \
            f"d = {d}: forward differs from harness.engine.network.forward by {np.max(np.abs(out - ref)):.3g}"
    return "output (N,), equal to the engine's forward pass"


def _check_architecture(cls, registry) -> list[CheckResult]:
    results = _Results()
    try:
        arch = _instance(cls)
    except Exception:
        return results
    if results.run("layer shapes", _architecture_shapes, arch):
        results.run("trainable and param_count", _architecture_counts, arch)
        results.run("forward", _architecture_forward, arch)
    return results


# ----------------------------------------------------------------------------- dataset

def _dataset_shapes_dtypes(ds) -> str:
    n, d = 13, 5
    for dtype in (np.float64, np.float32):
        X, y = ds.sample(n, d, _rng(30), dtype)
        assert isinstance(X, np.ndarray) and X.shape == (n, d), f"X has shape {np.shape(X)}, expected {(n, d)}"
        assert isinstance(y, np.ndarray) and y.shape == (n,), f"y has shape {np.shape(y)}, expected {(n,)}"
        assert X.dtype == dtype and y.dtype == dtype, \
            f"asked for {np.dtype(dtype).name}, got X {X.dtype} and y {y.dtype}"
        assert np.all(np.isfinite(X)) and np.all(np.isfinite(y)), "non-finite data"
    return "X (13, 5), y (13,), float64 and float32, finite"


def _dataset_determinism(ds) -> str:
    X1, y1 = ds.sample(17, 4, _rng(31), np.float64)
    X2, y2 = ds.sample(17, 4, _rng(31), np.float64)
    assert np.array_equal(X1, X2) and np.array_equal(y1, y2), "equal seeds gave different data"
    X3, _ = ds.sample(17, 4, _rng(32), np.float64)
    assert not np.array_equal(X1, X3), "different seeds gave equal inputs"
    return "equal seeds equal, different seeds differ"


def _check_dataset(cls, registry) -> list[CheckResult]:
    results = _Results()
    try:
        ds = _instance(cls)
    except Exception:
        return results
    results.run("shapes and dtypes", _dataset_shapes_dtypes, ds)
    results.run("deterministic", _dataset_determinism, ds)
    return results


# ----------------------------------------------------------------------------- loss

def _loss_data(n: int = 40) -> tuple[np.ndarray, np.ndarray]:
    rng = _rng(40)
    return rng.standard_normal(n), 2.0 * rng.integers(0, 2, n) - 1.0


def _loss_shapes(loss) -> str:
    f, y = _loss_data()
    value = loss.value(f, y)
    assert np.ndim(value) == 0 and np.isfinite(float(value)), f"value is {value!r}, not a finite scalar"
    g = np.asarray(loss.grad(f, y))
    assert g.shape == f.shape, f"grad has shape {g.shape}, expected {f.shape}"
    assert np.all(np.isfinite(g)), "grad is not finite"
    return "value a finite scalar, grad (N,)"


def _loss_grad(loss) -> str:
    f, y = _loss_data()
    n = f.size
    h = 1e-6 * np.maximum(1.0, np.abs(f))
    step = lambda i, s: loss.value(np.where(np.arange(n) == i, f + s * h, f), y)  # noqa: E731
    v0 = loss.value(f, y)
    plus = np.array([step(i, 1) for i in range(n)])
    minus = np.array([step(i, -1) for i in range(n)])
    right, left, central = (plus - v0) / h, (v0 - minus) / h, (plus - minus) / (2 * h)
    scale = np.max(np.abs(central)) + 1.0 / n
    smooth = np.abs(right - left) <= 1e-2 * scale
    assert smooth.mean() >= 0.9, f"the loss is not differentiable at {np.sum(~smooth)} of {n} points"
    g = np.asarray(loss.grad(f, y), float)
    err = np.abs(g - central)
    tol = 1e-6 * scale + 1e-5 * np.abs(central)
    bad = smooth & ~(err <= tol)
    if bad.any():
        i = np.flatnonzero(bad)[0]
        raise AssertionError(f"at f = {f[i]:.6g}, y = {y[i]:g}: grad {g[i]:.10g}, finite difference "
                             f"{central[i]:.10g} ({bad.sum()} bad coordinate(s))")
    return f"grad agrees with finite differences at {smooth.sum()} coordinates"


def _loss_is_mean(loss) -> str:
    f, y = _loss_data()
    v1, v2 = loss.value(f, y), loss.value(np.concatenate([f, f]), np.concatenate([y, y]))
    assert np.isclose(v1, v2, rtol=1e-12, atol=1e-300), \
        f"value on the data twice over is {v2!r}, on the data once {v1!r}: not a mean over samples"
    g1 = np.asarray(loss.grad(f, y))
    g2 = np.asarray(loss.grad(np.concatenate([f, f]), np.concatenate([y, y])))
    assert np.allclose(g2[: f.size], g1 / 2, rtol=1e-12, atol=1e-300), \
        "grad on the data twice over is not half the grad on the data once (missing 1/N?)"
    return "a mean over samples (grad carries 1/N)"


def _check_loss(cls, registry) -> list[CheckResult]:
    results = _Results()
    try:
        loss = _instance(cls)
    except Exception:
        return results
    if results.run("shapes", _loss_shapes, loss):
        results.run("grad vs finite differences", _loss_grad, loss)
        results.run("mean over samples", _loss_is_mean, loss)
    return results


# ----------------------------------------------------------------------------- optimizer

class _HalfSquaredError(Loss):
    """``mean (f - y)^2 / 2``: a fixed loss for the optimizer checks."""

    name = "_conformance_half_mse"
    help = "mean (f - y)^2 / 2"
    curvature = 1.0

    def value(self, f, y):
        return float(np.mean((f - y) ** 2) / 2)

    def grad(self, f, y):
        return (f - y) / f.size


OPT_SHAPES = [(6, 4), (5, 6), (1, 5)]
OPT_TRAINABLE = [True, False, True]
OPT_STEPS = 3


def _optimizer_problem() -> TrainingProblem:
    rng = _rng(50)
    X = rng.standard_normal((12, OPT_SHAPES[0][1]))
    y = rng.standard_normal(12)
    return TrainingProblem(X=X, y=y, weights=_gaussian_weights(OPT_SHAPES, rng), activation=_Tanh(),
                           trainable=list(OPT_TRAINABLE), loss=_HalfSquaredError())


def _gradients(problem: TrainingProblem, weights) -> list[np.ndarray | None]:
    from .engine.network import backward_signals, forward, weight_gradients

    fp = forward(weights, problem.X, problem.activation)
    B = backward_signals(weights, fp, problem.activation)
    r = problem.loss.grad(fp.output, problem.y)
    return weight_gradients(weights, fp, B, r, problem.trainable)


def _optimizer_trajectory(cls) -> tuple[dict, list[list[np.ndarray]]]:
    """A fresh optimizer on the fixed problem: ``prepare``'s dict and the weights after each step."""
    problem = _optimizer_problem()
    opt = _instance(cls)
    info = opt.prepare(problem)
    weights = [W.copy() for W in problem.weights]
    state = opt.init_state(weights)
    history = []
    for _ in range(OPT_STEPS):
        opt.step(weights, _gradients(problem, weights), state)
        history.append([np.array(W, copy=True) for W in weights])
    return info, history


def _optimizer_steps(cls) -> str:
    problem = _optimizer_problem()
    info, history = _optimizer_trajectory(cls)
    assert isinstance(info, dict), f"prepare returned {type(info).__name__}, expected a dict"
    json.dumps(info, default=float)
    for k, weights in enumerate(history):
        assert len(weights) == len(OPT_SHAPES), f"step {k}: {len(weights)} layers, expected {len(OPT_SHAPES)}"
        for l, (W, W0) in enumerate(zip(weights, problem.weights)):
            assert W.shape == W0.shape and W.dtype == W0.dtype, \
                f"step {k}: layer {l} became {W.shape} {W.dtype}, was {W0.shape} {W0.dtype}"
            assert np.all(np.isfinite(W)), f"step {k}: layer {l} is not finite"
            if not OPT_TRAINABLE[l]:
                assert np.array_equal(W, W0), f"step {k}: frozen layer {l} (gradient None) changed"
    trained = [l for l, t in enumerate(OPT_TRAINABLE) if t]
    moved = [l for l in trained if not np.array_equal(history[0][l], problem.weights[l])]
    assert moved == trained, f"after one step only layers {moved} of the trainable {trained} moved"
    return f"{OPT_STEPS} steps: shapes and dtypes kept, frozen layer untouched, trainable layers moved"


def _optimizer_determinism(cls) -> str:
    info1, h1 = _optimizer_trajectory(cls)
    info2, h2 = _optimizer_trajectory(cls)
    assert _same(info1, info2), f"prepare gave {info1!r} then {info2!r}"
    for k, (a, b) in enumerate(zip(h1, h2)):
        assert all(np.array_equal(x, y) for x, y in zip(a, b)), f"step {k} differs between two equal runs"
    return "two equal runs give identical weights"


def _optimizer_reference(cls) -> str:
    """Each of ``OPT_STEPS`` steps against the optimizer's own ``reference_step`` (the update
    rule in plain NumPy), which must also leave its arguments untouched."""
    import copy

    problem = _optimizer_problem()
    opt = _instance(cls)
    opt.prepare(problem)
    weights = [W.copy() for W in problem.weights]
    state = opt.init_state(weights)
    for k in range(OPT_STEPS):
        grads = _gradients(problem, weights)
        args = ([W.copy() for W in weights], [None if g is None else g.copy() for g in grads],
                copy.deepcopy(state))
        kept = copy.deepcopy(args)
        try:
            expected, _ = opt.reference_step(*args)
        except NotImplementedError:
            raise Skip("the optimizer declares no reference_step") from None
        assert _same(list(args), list(kept)), f"step {k}: reference_step modified its arguments"
        opt.step(weights, grads, state)
        for l, (W, E) in enumerate(zip(weights, expected)):
            assert np.allclose(W, E, rtol=1e-10, atol=1e-13), \
                f"step {k}: layer {l} differs from reference_step by {np.max(np.abs(W - E)):.3g}"
    return f"{OPT_STEPS} steps match reference_step"


def _check_optimizer(cls, registry) -> list[CheckResult]:
    results = _Results()
    if results.run("steps", _optimizer_steps, cls):
        results.run("deterministic", _optimizer_determinism, cls)
        results.run("matches reference_step", _optimizer_reference, cls)
    return results


# ----------------------------------------------------------------------------- experiment

def _same(a: Any, b: Any) -> bool:
    """Equality of results, NaN equal to NaN, lists and dicts item by item."""
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.array_equal(np.asarray(a), np.asarray(b), equal_nan=True)
    if isinstance(a, (float, np.floating)) and isinstance(b, (float, np.floating)) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and a == b


_SCALARS = (type(None), bool, int, float, str, np.bool_, np.integer, np.floating)
_NUMBERS = (int, float, np.integer, np.floating)


def _experiment_cell(cls, registry: Registry) -> tuple[Component, CellContext]:
    example = dict(cls.example or {})
    if not example:
        raise Skip("the experiment has no example cell")
    experiment = _instance(cls, example.get("params", {}))
    components = {}
    chosen = example.get("components", {})
    unknown = set(chosen) - set(cls.slots)
    assert not unknown, f"example names unknown slot(s) {sorted(unknown)}; slots: {sorted(cls.slots)}"
    for slot, (kind, default) in cls.slots.items():
        spec = chosen.get(slot, {})
        name = spec.get("name", default)
        if name is None:
            continue
        components[slot] = registry.create(kind, name, spec.get("params", {}))
    cell = CellContext(components=components, seed=np.random.SeedSequence(SEED, spawn_key=(60,)),
                       coords=dict(example.get("params", {})))
    return experiment, cell


def _experiment_example(cls, registry: Registry) -> str:
    runs, seconds = [], []
    for _ in range(2):
        experiment, cell = _experiment_cell(cls, registry)
        start = time.perf_counter()
        runs.append(experiment.run(cell))
        seconds.append(time.perf_counter() - start)
    first, second = runs
    assert isinstance(first, dict), f"run returned {type(first).__name__}, expected a dict"
    for key, value in first.items():
        assert isinstance(key, str), f"result key {key!r} is not a string"
        if isinstance(value, list):
            assert all(isinstance(v, _NUMBERS) and not isinstance(v, bool) for v in value), \
                f"result {key!r} is a list but not a list of numbers (a curve)"
        else:
            assert isinstance(value, _SCALARS), \
                f"result {key!r} is a {type(value).__name__}: results must be scalars or lists of numbers"
    assert isinstance(second, dict) and second.keys() == first.keys(), \
        f"two runs returned different keys: {sorted(first)} vs {sorted(second)}"
    differ = [k for k in first if not TIMING_KEY.search(k) and not _same(first[k], second[k])]
    assert not differ, f"two runs with the same seed differ in {differ}"
    return f"{len(first)} result(s), identical over two runs ({max(seconds):.2f} s per run)"


def _check_experiment(cls, registry) -> list[CheckResult]:
    results = _Results()
    results.run("example cell", _experiment_example, cls, registry)
    return results


# ----------------------------------------------------------------------------- backend

def _reference_ntk(weights, X, activation) -> np.ndarray:
    """``K = sum_l (F_{l-1} F_{l-1}^T) o (B_l B_l^T)`` (N, N) from the plain NumPy forward pass."""
    from .engine.network import backward_signals, forward

    fp = forward(weights, X, activation)
    B = backward_signals(weights, fp, activation)
    return sum((F @ F.T) * (b @ b.T) for F, b in zip(fp.F, B))


def _backend_ntk(cls) -> str:
    backend = _instance(cls)
    rng = _rng(70)
    weights = _gaussian_weights([(7, 5), (6, 7), (1, 6)], rng)
    X = rng.standard_normal((9, 5))
    try:
        got = np.asarray(backend.ntk(weights, X, _Tanh()), dtype=float)
    except ImportError as exc:
        raise Skip(f"backend not usable here: {exc}") from None
    ref = _reference_ntk(weights, X, _Tanh())
    assert got.shape == ref.shape, f"ntk has shape {got.shape}, expected {ref.shape}"
    err = np.max(np.abs(got - ref)) / np.max(np.abs(ref))
    assert err <= 1e-10, f"ntk differs from sum_l (F F^T) o (B B^T) by {err:.3g} (relative)"
    return f"full NTK (9, 9) agrees with the NumPy reference to {err:.1g}"


def _check_backend(cls, registry) -> list[CheckResult]:
    results = _Results()
    results.run("ntk", _backend_ntk, cls)
    return results


# ----------------------------------------------------------------------------- entry points

KIND_CHECKS: dict[str, Callable[[type[Component], Registry], list[CheckResult]]] = {
    "activation": _check_activation,
    "initializer": _check_initializer,
    "architecture": _check_architecture,
    "dataset": _check_dataset,
    "loss": _check_loss,
    "optimizer": _check_optimizer,
    "experiment": _check_experiment,
    "backend": _check_backend,
}
"""The checks of each kind, after the checks common to all kinds."""

assert set(KIND_CHECKS) == set(KINDS), "every kind needs its checks"


def check_component(kind: str, name_or_class: str | type[Component],
                    registry: Registry | None = None) -> list[CheckResult]:
    """Run every check that applies to the component ``name_or_class`` of ``kind``.

    ``name_or_class`` is a registered name (looked up in ``registry``, by default the process
    registry) or a component class (registered or not).
    """
    if kind not in KIND_CHECKS:
        raise ValueError(f"unknown kind {kind!r}; kinds: {', '.join(KIND_CHECKS)}")
    if registry is None:
        from .plugin_manager import get_registry

        registry = get_registry()
    cls = registry.get(kind, name_or_class) if isinstance(name_or_class, str) else name_or_class
    from threadpoolctl import threadpool_limits

    # The problems are small: one BLAS thread is fastest, and never oversubscribes the machine
    # when several test processes run side by side.
    with threadpool_limits(limits=1, user_api="blas"):
        return _check_common(cls, kind) + KIND_CHECKS[kind](cls, registry)


def assert_conforms(kind: str, name_or_class: str | type[Component],
                    registry: Registry | None = None) -> list[CheckResult]:
    """Raise :class:`AssertionError` listing every failed check; return all results otherwise."""
    results = check_component(kind, name_or_class, registry)
    failed = [r for r in results if not r.passed]
    if failed:
        label = name_or_class if isinstance(name_or_class, str) else name_or_class.__name__
        raise AssertionError(f"{kind} {label!r} fails {len(failed)} conformance check(s):\n"
                             + "\n".join(f"  {r}" for r in failed))
    return results

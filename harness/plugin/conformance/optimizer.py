"""Optimizer checks: steps keep shapes and dtypes, leave frozen layers alone, move the
trainable ones, are deterministic, match ``reference_step``, keep float32 weights and state in
float32, and a stack of members stepped as batched training steps them
(:func:`harness.engine.stack_steppers.make_stepper`) moves every member exactly as the
single-network loop moves it alone.
"""
from __future__ import annotations

import json

import numpy as np

from harness.plugin.components import TrainingProblem
from harness.plugin.conformance.core import (
    Skip,
    _gaussian_weights,
    _HalfSquaredError,
    _instance,
    _rng,
    _same,
    _Tanh,
    check,
    class_arg,
)

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
    from harness.engine.network import backward_signals, forward, weight_gradients

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


@check("optimizer", "steps", args=class_arg)
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


@check("optimizer", "deterministic", args=class_arg, after="steps")
def _optimizer_determinism(cls) -> str:
    info1, h1 = _optimizer_trajectory(cls)
    info2, h2 = _optimizer_trajectory(cls)
    assert _same(info1, info2), f"prepare gave {info1!r} then {info2!r}"
    for k, (a, b) in enumerate(zip(h1, h2)):
        assert all(np.array_equal(x, y) for x, y in zip(a, b)), f"step {k} differs between two equal runs"
    return "two equal runs give identical weights"


@check("optimizer", "matches reference_step", args=class_arg, after="steps")
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


BATCH_MEMBERS = 3
"""Members of the stack in the batched-stepper check (each its own data and weights)."""


def _member_problem(i: int) -> TrainingProblem:
    rng = _rng(51, i)
    X = rng.standard_normal((12, OPT_SHAPES[0][1]))
    return TrainingProblem(X=X, y=rng.standard_normal(12), weights=_gaussian_weights(OPT_SHAPES, rng),
                           activation=_Tanh(), trainable=list(OPT_TRAINABLE), loss=_HalfSquaredError())


@check("optimizer", "batched stepper", args=class_arg, after="steps")
def _optimizer_batched(cls) -> str:
    """Batched training steps a stack of members with the optimizer's ``batch_stepper`` or, without
    one, each member's ``step`` on its slices of the stacks; after each of ``OPT_STEPS`` steps
    every member's weights must equal those the single-network loop gives it (which keeps what
    its weight list holds, updated in place or rebound), and the trainable layers must move."""
    from harness.engine.stack_steppers import make_stepper

    problems = [_member_problem(i) for i in range(BATCH_MEMBERS)]
    single, batched = [_instance(cls) for _ in problems], [_instance(cls) for _ in problems]
    for opt, other, problem in zip(single, batched, problems):
        opt.prepare(problem)
        other.prepare(problem)
    alone = [[W.copy() for W in p.weights] for p in problems]
    states = [opt.init_state(w) for opt, w in zip(single, alone)]
    stacks = [np.stack([p.weights[l] for p in problems]) for l in range(len(OPT_SHAPES))]
    stepper = make_stepper(batched, stacks)
    mask = np.ones(BATCH_MEMBERS, dtype=np.bool_)
    for k in range(OPT_STEPS):
        grads = [_gradients(p, [W[i] for W in stacks]) for i, p in enumerate(problems)]
        stepper.step(stacks, [None if grads[0][l] is None else np.stack([g[l] for g in grads])
                              for l in range(len(OPT_SHAPES))], mask)
        for i, (opt, problem) in enumerate(zip(single, problems)):
            opt.step(alone[i], _gradients(problem, alone[i]), states[i])
            for l, W in enumerate(alone[i]):
                B = stacks[l][i]
                assert np.allclose(B, W, rtol=1e-12, atol=1e-14), (
                    f"step {k}: member {i}, layer {l}: batched training moves it differently from training "
                    f"alone (by {np.max(np.abs(B - W)):.3g}; {type(stepper).__name__})")
    for l, trained in enumerate(OPT_TRAINABLE):
        unmoved = [i for i, p in enumerate(problems) if np.array_equal(stacks[l][i], p.weights[l])]
        if trained:
            assert not unmoved, f"batched training left trainable layer {l} of members {unmoved} where it started"
        else:
            assert len(unmoved) == BATCH_MEMBERS, f"batched training moved frozen layer {l}"
    return (f"{BATCH_MEMBERS} members, {OPT_STEPS} steps with {type(stepper).__name__}: the same weights as "
            "each member alone, trainable layers moved")


def _float_arrays(state) -> list[np.ndarray]:
    """Every floating-point array of at least one dimension in ``state`` (dicts, lists, tuples)."""
    if isinstance(state, np.ndarray):
        return [state] if state.ndim and np.issubdtype(state.dtype, np.floating) else []
    if isinstance(state, dict):
        state = list(state.values())
    if isinstance(state, (list, tuple)):
        return [a for item in state for a in _float_arrays(item)]
    return []


@check("optimizer", "float32 kept", args=class_arg, after="steps")
def _optimizer_float32(cls) -> str:
    """``OPT_STEPS`` steps on float32 weights and gradients: the weights and every array of the
    state stay float32, and the weights follow the float64 trajectory to float32 rounding."""
    problem = _optimizer_problem()
    _, reference = _optimizer_trajectory(cls)
    problem32 = TrainingProblem(X=problem.X.astype(np.float32), y=problem.y.astype(np.float32),
                                weights=[W.astype(np.float32) for W in problem.weights],
                                activation=problem.activation, trainable=problem.trainable, loss=problem.loss)
    opt = _instance(cls)
    opt.prepare(problem32)
    weights = [W.copy() for W in problem32.weights]
    state = opt.init_state(weights)
    for k in range(OPT_STEPS):
        grads = _gradients(problem32, weights)
        opt.step(weights, grads, state)
        for l, W in enumerate(weights):
            assert W.dtype == np.float32, f"step {k}: layer {l} became {W.dtype}"
        wide = [a.dtype for a in _float_arrays(state) if a.dtype != np.float32]
        assert not wide, f"step {k}: the state holds arrays of {sorted({str(t) for t in wide})}, not float32"
        for l, (W, E) in enumerate(zip(weights, reference[k])):
            assert np.allclose(W, E, rtol=1e-4, atol=1e-5), \
                f"step {k}: layer {l} differs from the float64 steps by {np.max(np.abs(W - E)):.3g}"
    return f"{OPT_STEPS} steps on float32: weights and state float32, within float32 rounding of float64"

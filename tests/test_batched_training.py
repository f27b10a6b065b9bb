"""Batched training (harness.engine.batched_training): every member's result is the one the
single-network path (harness.engine.training.train) gives for it alone, bit for bit, through the
compiled kernel (the mean squared error) and through the NumPy engine (the same loss without
``jit_code``, as any other loss), in float64 and in float32."""
import numpy as np
import pytest

from harness.engine.batched_training import Member, train_batch
from harness.engine.stacked_gradients import StackedGradientEngine
from harness.engine.stopping import ToleranceRule, WindowRule
from harness.engine.training import train

SHAPES = [(7, 5), (7, 7), (7, 7), (1, 7)]
N = 48


def problems(registry, R, shapes=SHAPES, n=N, dtype=np.float64):
    init = registry.create("initializer", "fan_in_gaussian")
    out = []
    for i in range(R):
        rng = np.random.default_rng(100 + i)
        X = rng.standard_normal((n, shapes[0][1])).astype(dtype)
        y = rng.standard_normal(n).astype(dtype)
        out.append((X, y, init.initialize(shapes, rng, dtype)))
    return out


def assert_same(single, batched):
    assert batched.epochs == single.epochs and batched.steps == single.steps
    assert batched.stop_reason == single.stop_reason
    assert np.array_equal(batched.losses, single.losses)
    for a, b in zip(single.weights, batched.weights):
        assert np.array_equal(a, b)
    assert np.array_equal(single.final_output, batched.final_output)
    assert batched.final_loss == single.final_loss and batched.initial_loss == single.initial_loss
    assert batched.rules == single.rules and batched.prepared == single.prepared


CASES = [
    ("adam", {"lr": 0.05}, "relu"),
    ("adam", {"lr": 0.02, "batch_size": 10}, "tanh"),
    ("sgd", {"lr": 0.05, "batch_size": 16, "momentum": 0.9}, "relu"),
    ("sgd", {"lr": 0.03, "batch_size": 20}, "relu"),
    ("gd_theory", {}, "relu"),
    ("gd_theory", {"rule": "constant", "c": 0.05}, "tanh"),
]


def mse(registry, kernel: bool):
    loss = registry.create("loss", "mse")
    if not kernel:
        loss.jit_code = None  # the NumPy engine's path
    return loss


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kernel", [True, False])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("name,params,activation", CASES)
def test_members_equal_the_single_path(registry, name, params, activation, threads, kernel, dtype):
    """Per-member learning rates and windows: the window rule fires at different epochs in
    different members; mini-batch members shuffle with their own generators. float32 members
    train in float32: weights, outputs and the optimizer's state."""
    act, loss = registry.create("activation", activation), mse(registry, kernel)
    data = problems(registry, 5, dtype=dtype)

    def optimizer(i):
        p = dict(params)
        if "lr" in p:
            p["lr"] *= 1 + 0.15 * i
        return registry.create("optimizer", name, p)

    def rules(i):
        return [WindowRule(4 + 3 * i)]

    singles = [train(W, X, y, act, loss, optimizer(i), max_epochs=300, rules=rules(i),
                     rng=np.random.default_rng(7 + i)) for i, (X, y, W) in enumerate(data)]
    members = [Member(W, X, y, optimizer(i), rules=rules(i), max_epochs=300, rng=np.random.default_rng(7 + i))
               for i, (X, y, W) in enumerate(data)]
    batched = train_batch(members, act, loss, threads=threads)
    for s, b in zip(singles, batched):
        assert_same(s, b)
        assert all(W.dtype == dtype for W in b.weights) and b.final_output.dtype == dtype
    assert len({b.epochs for b in batched}) > 1  # members stopped at different epochs


@pytest.mark.parametrize("kernel", [True, False])
def test_budgets_tolerance_divergence_and_frozen_layers(registry, kernel):
    act, loss = registry.create("activation", "relu"), mse(registry, kernel)
    data = problems(registry, 4)
    trainable = [True, False, True, True]
    settings = [dict(max_epochs=40), dict(max_epochs=500, rules=[ToleranceRule(0.05)]),
                dict(max_epochs=500, max_steps=123), dict(max_epochs=200, divergence_factor=1.0001)]
    lrs = [0.01, 0.05, 0.02, 5.0]
    singles, members = [], []
    for (X, y, W), kw, lr in zip(data, settings, lrs):
        opt = registry.create("optimizer", "sgd", {"lr": lr, "batch_size": 16})
        singles.append(train(W, X, y, act, loss, opt, trainable=trainable, rng=np.random.default_rng(1),
                             **{k: (list(v) if k == "rules" else v) for k, v in kw.items()}))
        kw = dict(kw)
        if "rules" in kw:
            kw["rules"] = [ToleranceRule(0.05)]
        members.append(Member(W, X, y, opt, rng=np.random.default_rng(1), **kw))
    batched = train_batch(members, act, loss, trainable=trainable, threads=1)
    for s, b in zip(singles, batched):
        assert_same(s, b)
    assert [b.stop_reason for b in batched][0] == "max_epochs"
    assert batched[2].steps == 123 and batched[2].stop_reason == "max_steps"
    assert np.array_equal(batched[0].weights[1], data[0][2][1])  # the frozen layer


def test_members_of_different_shapes_train_in_separate_stacks(registry):
    act, loss = registry.create("activation", "relu"), registry.create("loss", "mse")
    small = problems(registry, 2, [(4, 3), (1, 4)], 20)
    large = problems(registry, 2)
    members = [Member(W, X, y, registry.create("optimizer", "adam", {"lr": 0.01}), max_epochs=30)
               for X, y, W in [small[0], large[0], small[1], large[1]]]
    out = train_batch(members, act, loss)
    for (X, y, W), b in zip([small[0], large[0], small[1], large[1]], out):
        assert_same(train(W, X, y, act, loss, registry.create("optimizer", "adam", {"lr": 0.01}), max_epochs=30), b)


@pytest.mark.parametrize("kernel", [True, False])
@pytest.mark.parametrize("block", [1, 3, 8])
def test_stacked_gradients_match_the_single_engine(registry, block, kernel):
    from harness.engine.gradients import GradientEngine

    act, loss = registry.create("activation", "tanh"), mse(registry, kernel)
    data = problems(registry, 8)
    W = [np.stack([w[l] for _, _, w in data]) for l in range(len(SHAPES))]
    X = np.stack([x for x, _, _ in data])
    y = np.stack([t for _, t, _ in data])
    engine = StackedGradientEngine(SHAPES, act, 8, block=block)
    values, grads = engine.loss_and_grads(W, X, y, loss, 8)
    single = GradientEngine(SHAPES, act, max_rows=N)
    for i, (Xi, yi, Wi) in enumerate(data):
        res = single.loss_and_grads(Wi, Xi, yi, loss)
        assert values[i] == res.loss
        for g, h in zip(grads, res.grads):
            assert np.array_equal(g[i], h)


def test_members_too_large_to_stack_train_one_by_one(registry, monkeypatch):
    """Members past SMALL_STEP_FLOPS on the NumPy engine train with the single loop (all BLAS
    threads), members the kernel evaluates still stack."""
    import harness.engine.batched_training as bt
    import harness.engine.evaluation_cost as cost

    act = registry.create("activation", "relu")
    data = problems(registry, 3)
    monkeypatch.setattr(cost, "SMALL_STEP_FLOPS", 1.0)
    calls = []
    real = bt._Chunk.run
    monkeypatch.setattr(bt._Chunk, "run", lambda self: calls.append(len(self.members)) or real(self))
    for kernel, stacked in ((False, []), (True, [3])):
        calls.clear()
        loss = mse(registry, kernel)
        members = [Member(W, X, y, registry.create("optimizer", "adam", {"lr": 0.01}), max_epochs=20)
                   for X, y, W in data]
        out = train_batch(members, act, loss, threads=1)
        assert calls == stacked
        for (X, y, W), b in zip(data, out):
            assert_same(train(W, X, y, act, loss, registry.create("optimizer", "adam", {"lr": 0.01}),
                              max_epochs=20), b)


@pytest.mark.parametrize("frozen", [False, True])
def test_float64_weights_train_in_the_dtype_of_the_data(registry, frozen):
    """Weights given in float64 with float32 data: both paths train in float32, give the same
    result, and judge whether the weights moved against the start rounded to float32 (a network
    with every layer frozen has not moved)."""
    act, loss = registry.create("activation", "relu"), registry.create("loss", "mse")
    data = [(X.astype(np.float32), y.astype(np.float32), W) for X, y, W in problems(registry, 3)]
    trainable = [not frozen] * len(SHAPES)

    def opt():
        return registry.create("optimizer", "adam", {"lr": 0.01})

    singles = [train(W, X, y, act, loss, opt(), max_epochs=20, trainable=trainable) for X, y, W in data]
    batched = train_batch([Member(W, X, y, opt(), max_epochs=20) for X, y, W in data], act, loss,
                          trainable=trainable)
    for s, b in zip(singles, batched):
        assert_same(s, b)
        assert all(W.dtype == np.float32 for W in b.weights)
        assert s.moved == b.moved == (not frozen)

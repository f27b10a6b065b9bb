"""The training loop (harness.engine.training) and its stopping rules (harness.engine.stopping)."""
import math

import numpy as np
import pytest

from harness.engine.gradients import loss_and_gradients
from harness.engine.network import forward
from harness.engine.stopping import DivergenceRule, MaxEpochs, ToleranceRule, WindowRule
from harness.engine.training import subsample_curve, train
from harness.plugin_manager import get_registry

SHAPES = [(9, 4), (9, 9), (1, 9)]


@pytest.fixture(scope="module")
def registry():
    return get_registry()


@pytest.fixture
def setup(registry):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((50, 4))
    y = rng.standard_normal(50)
    weights = registry.create("initializer", "fan_in_gaussian").initialize(SHAPES, rng)
    return X, y, weights, registry.create("activation", "tanh"), registry.create("loss", "mse")


def feed(rule, losses):
    """Feed losses to a rule; the epoch at which it stops, or None."""
    for epoch, loss in enumerate(losses):
        if rule.update(epoch, loss):
            return epoch
    return None


def test_window_rule_stops_when_a_window_sum_exceeds_the_previous():
    rule = WindowRule(3)
    # window sums: 12, 6, 9 -> stop at the end of the third window (epoch 8)
    assert feed(rule, [5, 4, 3, 2, 2, 2, 3, 3, 3, 1, 1, 1]) == 8
    assert rule.sums == [12, 6, 9]
    summary = rule.summary()
    assert summary["window_loss"] == pytest.approx(9 / 1.5)  # window sum / (window / 2)
    assert summary["best_window_loss"] == pytest.approx(6 / 1.5)
    assert summary["windows"] == 3


def test_window_rule_paper_scale_and_equal_sums():
    rule = WindowRule(100)
    losses = [1.0] * 100 + [0.5] * 100 + [0.5] * 100 + [0.6] * 100
    assert feed(rule, losses) == 399  # equal sums do not stop; 60 > 50 does
    assert rule.summary()["window_loss"] == pytest.approx(60 / 50)  # the paper's window sum / 50
    assert feed(WindowRule(100), [1.0] * 99) is None
    assert WindowRule(100).summary()["window_loss"] is None
    with pytest.raises(ValueError):
        WindowRule(0)


def test_tolerance_max_epochs_and_divergence_rules():
    assert feed(ToleranceRule(0.1), [1, 0.5, 0.1, 0.01]) == 2
    assert feed(MaxEpochs(3), [5, 5, 5, 5, 5]) == 2
    assert feed(DivergenceRule(10.0), [1.0, 5.0, 10.0, 10.5]) == 3
    assert feed(DivergenceRule(10.0), [1.0, math.nan]) == 1
    assert feed(DivergenceRule(10.0), [1.0, math.inf]) == 1
    assert feed(DivergenceRule(10.0), [0.0, 5.0, 100.0]) is None  # no scale from a zero first loss


def test_full_batch_training_reproduces_manual_gd_steps(registry, setup):
    X, y, weights, act, loss = setup
    opt = registry.create("optimizer", "gd_theory", {"rule": "constant", "c": 0.05})
    result = train(weights, X, y, act, loss, opt, max_epochs=4)
    manual = [W.copy() for W in weights]
    manual_losses = []
    for _ in range(4):
        res = loss_and_gradients(manual, X, y, act, loss)
        manual_losses.append(res.loss)
        manual = [W - 0.05 * g for W, g in zip(manual, res.grads)]
    np.testing.assert_allclose(result.losses, manual_losses, rtol=1e-12)  # loss before each step
    for W, M in zip(result.weights, manual):
        np.testing.assert_allclose(W, M, rtol=1e-12, atol=1e-14)
    assert result.epochs == 4 and result.steps == 4 and result.stop_reason == "max_epochs"
    assert result.initial_loss == pytest.approx(manual_losses[0], rel=1e-14)
    final = loss.value(forward(manual, X, act).output, y)
    assert result.final_loss == pytest.approx(final, rel=1e-12)
    np.testing.assert_allclose(result.final_output, forward(manual, X, act).output, rtol=1e-12)
    assert result.prepared["eta"] == 0.05


def test_training_does_not_modify_the_given_weights(registry, setup):
    X, y, weights, act, loss = setup
    before = [W.copy() for W in weights]
    train(weights, X, y, act, loss, registry.create("optimizer", "adam"), max_epochs=3)
    for W, B in zip(weights, before):
        np.testing.assert_array_equal(W, B)


def test_minibatch_epochs_steps_and_determinism(registry, setup):
    X, y, weights, act, loss = setup
    opt = registry.create("optimizer", "sgd", {"lr": 0.05, "batch_size": 16})
    a = train(weights, X, y, act, loss, opt, max_epochs=5, rng=np.random.default_rng(3))
    b = train(weights, X, y, act, loss, opt, max_epochs=5, rng=np.random.default_rng(3))
    assert a.epochs == 5 and a.steps == 5 * 4  # ceil(50 / 16) = 4 steps per epoch
    np.testing.assert_array_equal(a.losses, b.losses)
    for W, V in zip(a.weights, b.weights):
        np.testing.assert_array_equal(W, V)
    # max_steps stops mid-epoch
    c = train(weights, X, y, act, loss, opt, max_epochs=100, max_steps=6, rng=np.random.default_rng(3))
    assert c.steps == 6 and c.epochs == 2 and c.stop_reason == "max_steps"
    d = train(weights, X, y, act, loss, opt, max_epochs=2, max_steps=8, rng=np.random.default_rng(3))
    assert d.steps == 8 and d.stop_reason == "max_steps"
    with pytest.raises(ValueError, match="rng"):
        train(weights, X, y, act, loss, opt, max_epochs=1)


def test_minibatch_epoch_loss_is_the_mean_of_the_batch_losses(registry, setup):
    X, y, weights, act, loss = setup
    opt = registry.create("optimizer", "sgd", {"lr": 0.05, "batch_size": 20})
    result = train(weights, X, y, act, loss, opt, max_epochs=1, rng=np.random.default_rng(5))
    perm = np.random.default_rng(5).permutation(50)
    w = [W.copy() for W in weights]
    total = 0.0
    for k in range(0, 50, 20):
        idx = perm[k:k + 20]
        res = loss_and_gradients(w, X[idx], y[idx], act, loss)
        total += res.loss * len(idx)
        w = [W - 0.05 * g for W, g in zip(w, res.grads)]
    assert result.losses[0] == pytest.approx(total / 50, rel=1e-12)
    for W, V in zip(result.weights, w):
        np.testing.assert_allclose(W, V, rtol=1e-12, atol=1e-14)


def test_frozen_layers_stay_frozen(registry, setup):
    X, y, weights, act, loss = setup
    result = train(weights, X, y, act, loss, registry.create("optimizer", "adam", {"lr": 0.01}),
                   trainable=[True, False, False], max_epochs=20)
    np.testing.assert_array_equal(result.weights[1], weights[1])
    np.testing.assert_array_equal(result.weights[2], weights[2])
    assert not np.array_equal(result.weights[0], weights[0])
    assert result.final_loss < result.initial_loss


def test_stopping_rules_in_the_loop(registry, setup):
    X, y, weights, act, loss = setup
    adam = registry.create("optimizer", "adam", {"lr": 0.01})
    result = train(weights, X, y, act, loss, adam, max_epochs=500, rules=[ToleranceRule(0.5)])
    assert result.stop_reason == "tolerance"
    assert result.losses[-1] <= 0.5 < result.losses[-2]
    window = train(weights, X, y, act, loss, adam, max_epochs=400, rules=[WindowRule(10)])
    assert window.rules["windows"] == window.epochs // 10
    assert window.stop_reason in ("window", "max_epochs")


def test_divergence_is_detected(registry, setup):
    X, y, weights, act, loss = setup
    opt = registry.create("optimizer", "gd_theory", {"rule": "constant", "c": 50.0})
    result = train(weights, X, y, act, loss, opt, max_epochs=1000)
    assert result.stop_reason == "diverged" and result.diverged
    assert result.epochs < 1000


def test_subsample_curve():
    values = np.arange(1000.0)
    idx, vals = subsample_curve(values, 50)
    assert len(idx) == 50 and idx[0] == 0 and idx[-1] == 999
    assert vals == [float(i) for i in idx]
    assert subsample_curve([3.0, 2.0], 10) == ([0, 1], [3.0, 2.0])
    idx, vals = subsample_curve([1.0, 2.0, math.inf, math.nan], 10)
    assert idx == [0, 1] and vals == [1.0, 2.0]
    assert subsample_curve([], 5) == ([], [])

"""The training loop (harness.engine.training) and its stopping rules (harness.engine.stopping)."""
import math

import numpy as np
import pytest

from harness.engine.gradients import loss_and_gradients
from harness.engine.network import forward
from harness.engine.stopping import DivergenceRule, MaxEpochs, ToleranceRule, WindowRule
from harness.engine.training import subsample_curve, train

SHAPES = [(9, 4), (9, 9), (1, 9)]


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


def authors_value(losses, window=100):
    """The authors' loop, written out independently of WindowRule: sum each window, stop when a
    window's sum exceeds the previous one's, keep the last sum that did not; report it / 50
    (window / 2). Returns (reported, its first epoch, epochs run) or (None, None, epochs)."""
    prev, kept, start, running = None, None, None, 0.0
    for epoch, loss in enumerate(losses):
        running += loss
        if (epoch + 1) % window == 0:
            if prev is not None and running > prev:
                return kept / (window / 2), start, epoch + 1
            prev = kept = running
            start, running = epoch + 1 - window, 0.0
    return (None if kept is None else kept / (window / 2)), start, len(losses)


def test_window_rule_stops_when_a_window_sum_exceeds_the_previous():
    rule = WindowRule(3)
    # window sums: 12, 6, 9 -> stop at the end of the third window (epoch 8)
    assert feed(rule, [5, 4, 3, 2, 2, 2, 3, 3, 3, 1, 1, 1]) == 8
    assert rule.sums == [12, 6, 9]
    summary = rule.summary()
    # the authors' value is the window before the one that triggered the stop: 6 / (3 / 2)
    assert summary["reported_loss"] == pytest.approx(6 / 1.5, rel=1e-15)
    assert (summary["reported_window_start"], summary["reported_window_end"]) == (3, 6)
    assert summary["stop_window_loss"] == pytest.approx(9 / 1.5, rel=1e-15)
    assert summary["windows"] == 3
    assert "window_loss" not in summary and "best_window_loss" not in summary
    assert rule.update(12, 0.0) is True and rule.sums == [12, 6, 9]  # a stopped rule stays stopped


def test_window_sums_accumulate_in_float64_from_float32_losses():
    """A float32 training hands the rule float32 losses: the sums are float64 sums of them."""
    losses = (np.float32(0.1) + np.float32(1e-3) * np.arange(200, 0, -1, dtype=np.float32)).astype(np.float32)
    rule = WindowRule(100)
    for epoch, value in enumerate(losses):
        assert rule.update(epoch, value) is False
    wide = [sum(float(v) for v in losses[k:k + 100]) for k in (0, 100)]
    assert rule.sums == wide and all(type(t) is float for t in rule.sums)
    assert rule.summary()["reported_loss"] == wide[1] / 50
    narrow = np.float32(0)
    for v in losses[100:]:
        narrow += v
    assert float(narrow) != wide[1]  # summed in float32 the value would differ


def test_window_rule_reported_loss_with_adam_spikes_at_paper_scale():
    # window sums: w0 = 100, w1 = 10, w2 = 99 x 0.01 + 5 (a spike) = 5.99 < 10: no stop,
    # w3 = 100 x 1e-4 = 0.01, w4 = 99 x 1e-6 + 0.5 (an Adam-like spike) = 0.500099 > 0.01: stop
    loss = [1.0] * 100 + [0.1] * 100 + [0.01] * 100 + [1e-4] * 100 + [1e-6] * 100 + [1e-8] * 100
    loss[250] = 5.0
    loss[420] = 0.5
    rule = WindowRule(100)
    assert feed(rule, loss) == 499
    assert rule.sums == pytest.approx([100.0, 10.0, 5.99, 0.01, 0.500099], rel=1e-12)
    s = rule.summary()
    assert s["reported_loss"] == pytest.approx(0.01 / 50, rel=1e-12)  # window 3, not the spike
    assert (s["reported_window_start"], s["reported_window_end"]) == (300, 400)
    assert s["stop_window_loss"] == pytest.approx(0.500099 / 50, rel=1e-12)  # about 1e-2
    assert s["windows"] == 5
    assert authors_value(loss) == (pytest.approx(2e-4, rel=1e-12), 300, 500)


def test_window_rule_reported_loss_without_a_stop():
    # decreasing with a spike inside windows 1 and 3 that never makes a window exceed its
    # predecessor; the budget ends at 450 epochs: the incomplete window 4 is ignored
    loss = [2.0] * 100 + [0.5] * 100 + [0.1] * 100 + [0.01] * 100 + [1e-7] * 50
    loss[150] = 30.0  # window 1: 99 * 0.5 + 30 = 79.5 < 200
    loss[330] = 5.0   # window 3: 99 * 0.01 + 5 = 5.99 < window 2's 10
    rule = WindowRule(100)
    assert feed(rule, loss) is None
    s = rule.summary()
    assert rule.sums == pytest.approx([200.0, 79.5, 10.0, 5.99], rel=1e-12)
    assert s["reported_loss"] == pytest.approx(5.99 / 50, rel=1e-12)
    assert (s["reported_window_start"], s["reported_window_end"]) == (300, 400)
    assert s["stop_window_loss"] is None and s["windows"] == 4
    assert authors_value(loss) == (pytest.approx(5.99 / 50, rel=1e-12), 300, 450)


def test_window_rule_stop_at_the_second_window_and_equal_sums():
    rule = WindowRule(100)
    # window 0: 100 x 0.3 = 30; window 1: 99 x 0.2 + 20 = 39.8 > 30 -> stop at epoch 199
    loss = [0.3] * 100 + [0.2] * 99 + [20.0] + [0.0] * 100
    assert feed(rule, loss) == 199
    s = rule.summary()
    assert s["reported_loss"] == pytest.approx(30 / 50, rel=1e-12)
    assert (s["reported_window_start"], s["reported_window_end"]) == (0, 100)
    assert s["stop_window_loss"] == pytest.approx(39.8 / 50, rel=1e-12)
    assert authors_value(loss) == (pytest.approx(0.6, rel=1e-12), 0, 200)

    rule = WindowRule(100)
    losses = [1.0] * 100 + [0.5] * 100 + [0.5] * 100 + [0.6] * 100
    assert feed(rule, losses) == 399  # equal sums do not stop; 60 > 50 does
    s = rule.summary()
    assert s["reported_loss"] == pytest.approx(50 / 50, rel=1e-12)  # the later of the equal windows
    assert (s["reported_window_start"], s["reported_window_end"]) == (200, 300)
    assert s["stop_window_loss"] == pytest.approx(60 / 50, rel=1e-12)
    with pytest.raises(ValueError):
        WindowRule(0)


def test_window_rule_without_a_complete_window_and_at_divergence():
    rule = WindowRule(100)
    assert feed(rule, [1.0] * 99) is None
    s = rule.summary()
    assert s["reported_loss"] is None and s["reported_window_start"] is None
    assert s["reported_window_end"] is None and s["stop_window_loss"] is None and s["windows"] == 0
    assert WindowRule(100).summary()["reported_loss"] is None
    # the loss blows up inside window 2: that incomplete window is ignored, the last complete
    # window (1) is reported, as the authors' loop (which would stop on the infinite sum) does
    rule = WindowRule(100)
    assert feed(rule, [1.0] * 100 + [0.4] * 100 + [0.1] * 10 + [math.inf]) is None
    s = rule.summary()
    assert s["reported_loss"] == pytest.approx(40 / 50, rel=1e-12)
    assert (s["reported_window_start"], s["reported_window_end"]) == (100, 200)
    # a window whose sum is not finite stops the rule and is never reported
    rule = WindowRule(2)
    assert feed(rule, [3.0, 1.0, 1.0, math.nan]) == 3
    s = rule.summary()
    assert s["reported_loss"] == pytest.approx(4.0, rel=1e-15) and s["reported_window_end"] == 2
    assert math.isnan(s["stop_window_loss"])
    rule = WindowRule(2)
    assert feed(rule, [math.inf, 1.0]) == 1  # the first window is not finite: nothing to report
    assert rule.summary()["reported_loss"] is None


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
    reported, start, epochs = authors_value(window.losses.tolist(), 10)
    assert epochs == window.epochs and window.rules["reported_window_start"] == start
    assert window.rules["reported_loss"] == pytest.approx(reported, rel=1e-12)
    assert window.rules["reported_window_end"] == start + 10


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

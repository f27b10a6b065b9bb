"""The optimizer plugins: one step of each against its update rule computed here in NumPy,
gd_theory's step against lambda_max of an autograd NTK, and monotone GD on wide networks."""
import copy

import autograd.numpy as anp
import numpy as np
import pytest
from autograd import jacobian

from harness import TrainingProblem, UserError
from harness.engine.gradients import loss_and_gradients
from harness.plugin.conformance import check_component

SHAPES = [(6, 4), (5, 6), (1, 5)]


def weights_and_grads(seed=0, frozen=()):
    rng = np.random.default_rng(seed)
    weights = [rng.standard_normal(s) for s in SHAPES]
    grads = [None if l in frozen else rng.standard_normal(s) for l, s in enumerate(SHAPES)]
    return weights, grads


def test_adam_first_step_is_lr_times_sign(registry):
    """After one step, m_hat = g and v_hat = g^2, so W moves by lr g / (|g| + eps)."""
    adam = registry.create("optimizer", "adam", {"lr": 0.01, "eps": 1e-8})
    weights, grads = weights_and_grads()
    before = copy.deepcopy(weights)
    state = adam.init_state(weights)
    adam.step(weights, grads, state)
    for W, W0, g in zip(weights, before, grads):
        np.testing.assert_allclose(W, W0 - 0.01 * g / (np.abs(g) + 1e-8), rtol=1e-13, atol=1e-15)
    assert state["t"] == 1


def test_adam_steps_follow_kingma_ba(registry):
    lr, b1, b2, eps = 0.003, 0.8, 0.99, 1e-6
    adam = registry.create("optimizer", "adam", {"lr": lr, "beta1": b1, "beta2": b2, "eps": eps})
    weights, _ = weights_and_grads(frozen=(1,))
    state = adam.init_state(weights)
    expected = copy.deepcopy(weights)
    m = [np.zeros_like(W) for W in weights]
    v = [np.zeros_like(W) for W in weights]
    rng = np.random.default_rng(1)
    for t in range(1, 6):
        grads = [None if l == 1 else rng.standard_normal(s) for l, s in enumerate(SHAPES)]
        adam.step(weights, grads, state)
        for l, g in enumerate(grads):
            if g is None:
                continue
            m[l] = b1 * m[l] + (1 - b1) * g
            v[l] = b2 * v[l] + (1 - b2) * g * g
            expected[l] = expected[l] - lr * (m[l] / (1 - b1 ** t)) / (np.sqrt(v[l] / (1 - b2 ** t)) + eps)
        for W, E in zip(weights, expected):
            np.testing.assert_allclose(W, E, rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(weights[1], weights_and_grads()[0][1])  # frozen layer untouched


def test_adam_computes_in_float32_on_float32_weights(registry):
    """Moments and weights stay float32 and every operation of a step is a float32 one: the
    steps equal the update computed here in float32 (its scalars rounded to float32 first) bit
    for bit, and differ from the float64 update rounded to float32."""
    lr, b1, b2, eps = 0.003, 0.8, 0.99, 1e-6
    adam = registry.create("optimizer", "adam", {"lr": lr, "beta1": b1, "beta2": b2, "eps": eps})
    weights = [W.astype(np.float32) for W in weights_and_grads()[0]]
    state = adam.init_state(weights)
    f32 = np.float32
    exact = [W.copy() for W in weights]
    m = [np.zeros_like(W) for W in weights]
    v = [np.zeros_like(W) for W in weights]
    wide = [W.astype(np.float64) for W in weights]
    m64 = [np.zeros_like(W) for W in wide]
    v64 = [np.zeros_like(W) for W in wide]
    rng = np.random.default_rng(2)
    for t in range(1, 6):
        grads = [rng.standard_normal(s).astype(np.float32) for s in SHAPES]
        adam.step(weights, grads, state)
        step_size, sqrt_bc2 = f32(lr / (1 - b1 ** t)), f32(np.sqrt(1 - b2 ** t))
        for l, g in enumerate(grads):
            m[l] = f32(b1) * m[l] + f32(1 - b1) * g
            v[l] = f32(b2) * v[l] + f32(1 - b2) * g * g
            exact[l] = exact[l] - step_size * m[l] / (np.sqrt(v[l]) / sqrt_bc2 + f32(eps))
            m64[l] = b1 * m64[l] + (1 - b1) * g
            v64[l] = b2 * v64[l] + (1 - b2) * g * g
            wide[l] = wide[l] - (lr / (1 - b1 ** t)) * m64[l] / (np.sqrt(v64[l]) / np.sqrt(1 - b2 ** t) + eps)
    for l, W in enumerate(weights):
        assert W.dtype == state["m"][l].dtype == state["v"][l].dtype == np.float32
        np.testing.assert_array_equal(W, exact[l])
        np.testing.assert_allclose(W, wide[l], rtol=1e-5, atol=1e-6)
    assert not all(np.array_equal(W, E.astype(np.float32)) for W, E in zip(weights, wide))


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_sgd_computes_in_float32_on_float32_weights(registry, momentum):
    sgd = registry.create("optimizer", "sgd", {"lr": 0.1, "momentum": momentum})
    weights = [W.astype(np.float32) for W in weights_and_grads()[0]]
    state = sgd.init_state(weights)
    exact = [W.copy() for W in weights]
    buf = [np.zeros_like(W) for W in weights]
    rng = np.random.default_rng(3)
    for _ in range(4):
        grads = [rng.standard_normal(s).astype(np.float32) for s in SHAPES]
        sgd.step(weights, grads, state)
        for l, g in enumerate(grads):
            buf[l] = np.float32(momentum) * buf[l] + g
            exact[l] = exact[l] - np.float32(0.1) * (buf[l] if momentum else g)
    for W, E in zip(weights, exact):
        assert W.dtype == np.float32
        np.testing.assert_array_equal(W, E)
    if momentum:
        assert all(b.dtype == np.float32 for b in state["buf"])


def test_sgd_step_and_momentum(registry):
    weights, g1 = weights_and_grads(frozen=(0,))
    _, g2 = weights_and_grads(seed=5, frozen=(0,))
    w0 = copy.deepcopy(weights)
    sgd = registry.create("optimizer", "sgd", {"lr": 0.1})
    state = sgd.init_state(weights)
    sgd.step(weights, g1, state)
    np.testing.assert_array_equal(weights[0], w0[0])
    for l in (1, 2):
        np.testing.assert_allclose(weights[l], w0[l] - 0.1 * g1[l], rtol=1e-15)

    weights = copy.deepcopy(w0)
    heavy = registry.create("optimizer", "sgd", {"lr": 0.1, "momentum": 0.9})
    state = heavy.init_state(weights)
    heavy.step(weights, g1, state)
    heavy.step(weights, g2, state)
    for l in (1, 2):  # buf_1 = g1, buf_2 = 0.9 g1 + g2
        np.testing.assert_allclose(weights[l], w0[l] - 0.1 * g1[l] - 0.1 * (0.9 * g1[l] + g2[l]), rtol=1e-13)


def small_problem(registry, act_name="tanh", loss_name="mse", shapes=((8, 3), (8, 8), (1, 8)), N=30,
                  trainable=None, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N, shapes[0][1]))
    y = rng.standard_normal(N)
    weights = [rng.standard_normal(s) / np.sqrt(s[1]) for s in shapes]
    act = registry.create("activation", act_name)
    loss = registry.create("loss", loss_name)
    trainable = list(trainable) if trainable else [True] * len(shapes)
    return TrainingProblem(X, y, weights, act, trainable, loss)


def lambda_max_autograd(problem):
    """Top eigenvalue of J J^T, J the autograd Jacobian of the outputs in the trainable weights."""
    def out(ws):
        F = problem.X
        for W in ws[:-1]:
            F = anp.tanh(anp.dot(F, W.T))
        return anp.reshape(anp.dot(F, ws[-1].T), (-1,))

    blocks = []
    for l, W in enumerate(problem.weights):
        if problem.trainable[l]:
            def f(Wl, l=l):
                ws = list(problem.weights)
                ws[l] = Wl
                return out(ws)
            blocks.append(jacobian(f)(W).reshape(problem.X.shape[0], -1))
    J = np.concatenate(blocks, axis=1)
    return np.linalg.eigvalsh(J @ J.T)[-1]


@pytest.mark.parametrize("trainable", [None, [False, True, True]])
def test_gd_theory_step_size_rules(registry, trainable):
    problem = small_problem(registry, trainable=trainable)
    lam = lambda_max_autograd(problem)
    N = problem.X.shape[0]
    gd = registry.create("optimizer", "gd_theory", {"c": 1.5})
    info = gd.prepare(problem)
    assert info["lambda_max_K0"] == pytest.approx(lam, rel=1e-9)
    assert info["eta"] == pytest.approx(1.5 * N / (2.0 * lam), rel=1e-9)  # MSE curvature 2
    assert info["eta_rule"].startswith("ntk_smooth")
    ntk = registry.create("optimizer", "gd_theory", {"rule": "ntk", "c": 0.5}).prepare(problem)
    assert ntk["eta"] == pytest.approx(0.5 / lam, rel=1e-9)
    const = registry.create("optimizer", "gd_theory", {"rule": "constant", "c": 0.25}).prepare(problem)
    assert const["eta"] == 0.25 and const["lambda_max_K0"] is None

    weights = [W.copy() for W in problem.weights]
    grads = loss_and_gradients(weights, problem.X, problem.y, problem.activation, problem.loss,
                               problem.trainable).grads
    state = gd.init_state(weights)
    gd.step(weights, grads, state)
    for W, W0, g in zip(weights, problem.weights, grads):
        np.testing.assert_allclose(W, W0 if g is None else W0 - info["eta"] * g, rtol=1e-15)


def test_gd_theory_paper_rule_follows_its_formula(registry):
    """Rule paper: eta = c C / (gamma N d n_{L-1}), gamma and C expressions in N, d, n; both
    theory rules are recorded whichever one is used, and ntk_smooth is unchanged."""
    from harness.engine.step_size import paper_step

    problem = small_problem(registry, shapes=((8, 3), (7, 8), (1, 7)))  # N = 30, d = 3, n = 7
    lam = lambda_max_autograd(problem)
    gd = registry.create("optimizer", "gd_theory", {"rule": "paper", "c": 0.5, "gamma": "sqrt(n)",
                                                    "C": "N/2 + d"})
    info = gd.prepare(problem)
    gamma, C = np.sqrt(7), 30 / 2 + 3
    assert info["eta"] == pytest.approx(0.5 * C / (gamma * 30 * 3 * 7), rel=1e-14)
    assert info["eta_paper"] == info["eta"] and (info["gamma_paper"], info["C_paper"]) == (gamma, C)
    assert info["eta_ntk_smooth"] == pytest.approx(0.5 * 30 / (2.0 * lam), rel=1e-9)
    assert info["eta_rule"] == ("paper: eta = c C / (gamma N d n_{L-1}) "
                                "(c = 0.5, gamma = sqrt(n) = 2.64575, C = N/2 + d = 18)")
    assert paper_step(30, 3, 7, 1.0, 2.0) == 2.0 / 630
    plain = registry.create("optimizer", "gd_theory", {"rule": "paper", "C": 2.5}).prepare(problem)
    assert plain["eta"] == pytest.approx(2.5 / (30 * 3 * 7), rel=1e-14)
    # ntk_smooth (the default) is numerically what it was: c N / (2 lambda_max) for the MSE
    smooth = registry.create("optimizer", "gd_theory", {"c": 1.5}).prepare(problem)
    assert smooth["eta"] == smooth["eta_ntk_smooth"] == 1.5 * 30 / (2.0 * smooth["lambda_max_K0"])
    assert smooth["eta_paper"] == pytest.approx(1.5 / (30 * 3 * 7), rel=1e-14)
    # the paper rule needs no curvature bound; bad expressions are refused at configuration
    hinge = registry.create("optimizer", "gd_theory", {"rule": "paper"}).prepare(
        small_problem(registry, loss_name="hinge"))
    assert hinge["eta"] == pytest.approx(1 / (30 * 3 * 8)) and hinge["eta_ntk_smooth"] is None
    with pytest.raises(UserError, match="allowed: N, d, n"):
        registry.create("optimizer", "gd_theory", {"rule": "paper", "C": "P / 2"})
    with pytest.raises(ValueError, match="gamma"):
        registry.create("optimizer", "gd_theory", {"rule": "paper", "gamma": "d - 3"}).prepare(problem)


def test_gd_theory_needs_prepare_and_a_smooth_loss(registry):
    gd = registry.create("optimizer", "gd_theory")
    weights, grads = weights_and_grads()
    with pytest.raises(RuntimeError, match="prepare"):
        gd.step(weights, grads, gd.init_state(weights))
    with pytest.raises(UserError, match="curvature"):
        gd.prepare(small_problem(registry, loss_name="hinge"))
    logistic = small_problem(registry, loss_name="logistic")
    lam = lambda_max_autograd(logistic)
    assert gd.prepare(logistic)["eta"] == pytest.approx(30 / (0.25 * lam), rel=1e-9)


@pytest.mark.parametrize("act_name, shapes, c", [
    ("tanh", [(400, 4), (1, 400)], 1.0),
    ("sigmoid", [(300, 4), (300, 300), (1, 300)], 1.0),
    ("relu", [(400, 4), (1, 400)], 1.0),
    ("tanh", [(400, 4), (1, 400)], 1.9),
])
def test_gd_with_theoretical_step_decreases_the_loss_at_every_step(registry, act_name, shapes, c):
    """Wide networks (the NTK regime the step is derived for): 60 steps, each decreasing the
    loss, and a substantial total decrease (the step is not uselessly small)."""
    rng = np.random.default_rng(11)
    N = 20
    X = rng.standard_normal((N, shapes[0][1]))
    y = rng.standard_normal(N)
    init = registry.create("initializer", "lecun")
    weights = init.initialize(shapes, rng)
    act, loss = registry.create("activation", act_name), registry.create("loss", "mse")
    gd = registry.create("optimizer", "gd_theory", {"c": c})
    gd.prepare(TrainingProblem(X, y, weights, act, [True] * len(shapes), loss))
    state = gd.init_state(weights)
    losses = []
    for _ in range(60):
        res = loss_and_gradients(weights, X, y, act, loss)
        losses.append(res.loss)
        gd.step(weights, res.grads, state)
    assert np.all(np.diff(losses) < 0), np.diff(losses).max()
    assert losses[-1] < 0.8 * losses[0]


@pytest.mark.parametrize("name, params", [("adam", {"lr": 0.05}), ("sgd", {"lr": 0.1, "momentum": 0.5}),
                                          ("sgd", {"lr": 0.1}), ("gd_theory", {})])
def test_reference_step_matches_step_and_keeps_its_arguments(registry, name, params):
    problem = small_problem(registry, trainable=[True, False, True])
    opt = registry.create("optimizer", name, params)
    opt.prepare(problem)
    weights = [W.copy() for W in problem.weights]
    state = opt.init_state(weights)
    for _ in range(3):
        grads = loss_and_gradients(weights, problem.X, problem.y, problem.activation, problem.loss,
                                   problem.trainable).grads
        args = copy.deepcopy((weights, grads, state))
        new_w, new_state = opt.reference_step(*args)
        for a, b in zip(args[0], weights):
            np.testing.assert_array_equal(a, b)  # reference_step left its arguments alone
        opt.step(weights, grads, state)
        for W, E in zip(weights, new_w):
            np.testing.assert_allclose(W, E, rtol=1e-12, atol=1e-15)
        assert new_state["t"] == state["t"]


@pytest.mark.parametrize("name", ["gd_theory", "sgd", "adam"])
def test_conformance(name):
    results = check_component("optimizer", name)
    failed = [str(r) for r in results if not r.passed]
    assert not failed, failed
    assert any(r.name == "matches reference_step" and not r.skipped for r in results)


def test_batch_size_parameter(registry):
    assert registry.create("optimizer", "gd_theory").batch_size is None
    assert registry.create("optimizer", "adam").batch_size is None
    assert registry.create("optimizer", "sgd", {"batch_size": 16}).batch_size == 16


@pytest.mark.slow
def test_adam_speed_benchmark_runs_and_agrees_with_torch(capsys):
    """The speed benchmark's harness epoch is the same computation as PyTorch's (when torch is
    installed): identical weights after a few full-batch Adam epochs from the same start."""
    from harness.benchmarking import adam_speed

    rows = adam_speed.main(["--d", "8", "--N", "64", "--repeats", "2", "--dtypes", "float64"])
    out = capsys.readouterr().out
    assert "harness ms" in out and rows[0]["harness"] > 0
    if rows[0]["torch_version"] is not None:
        assert rows[0]["max_weight_diff"] < 1e-12
        assert "torch/harness" in out
    else:
        assert rows[0]["torch"] is None and "not installed" in out

"""Tests of harness_plugins.quadratic_flow.quadratic: closed-form risk against Monte Carlo, gradients against
autograd, the reduced overlap flow against the weight flow, the initial-overlap sampler against
explicit draws, and gradient descent on finite samples against the population flow."""
import autograd
import autograd.numpy as anp
import numpy as np
import pytest
from scipy import stats

from harness_plugins.quadratic_flow import quadratic as q

N_SE = 5.0


def _weights(d, m, ms, init="gaussian", teacher_init="gaussian", seed=0, student_norm=1.0,
             teacher_norm=1.0):
    rng = np.random.default_rng(seed)
    return q.initial_weights(d, m, ms, init, teacher_init, np.random.default_rng(rng.integers(2**32)),
                             np.random.default_rng(rng.integers(2**32)), student_norm, teacher_norm)


def _dense(W, W_star):
    return W @ W.T / W.shape[1], W_star @ W_star.T / W_star.shape[1]


# ----------------------------------------------------------------------------- risk

@pytest.mark.parametrize("init,student_norm", [("gaussian", 1.3), ("orthonormal", 0.8)])
def test_risk_closed_form_matches_monte_carlo(init, student_norm):
    """R = 1/4 E[(f_W - f*)^2] against the sample mean over 400k Gaussian inputs."""
    d, m, ms = 12, 3, 2
    W, W_star = _weights(d, m, ms, init, init, seed=1, student_norm=student_norm)
    rng = np.random.default_rng(2)
    values = []
    for _ in range(8):
        X = rng.standard_normal((50_000, d))
        values.append(0.25 * (q.quadratic_output(W, X) - q.quadratic_output(W_star, X)) ** 2)
    values = np.concatenate(values)
    mc, se = values.mean(), values.std(ddof=1) / np.sqrt(values.size)
    closed = q.population_risk(W, W_star)
    assert se < 0.02 * closed, "the Monte Carlo estimate is too noisy to test anything"
    assert abs(mc - closed) <= N_SE * se, (mc, se, closed)
    # The test has the power to reject a wrong constant: ||Delta||_F^2 without its factor 2.
    A, A_star = _dense(W, W_star)
    D = A - A_star
    wrong = 0.25 * (np.trace(D) ** 2 + np.sum(D * D))
    assert abs(mc - wrong) > N_SE * se


def test_overlap_risk_equals_dense_risk():
    for seed, (d, m, ms) in enumerate([(7, 3, 5), (20, 8, 2), (5, 9, 4)]):
        W, W_star = _weights(d, m, ms, seed=seed)
        A, A_star = _dense(W, W_star)
        assert q.population_risk(W, W_star) == pytest.approx(q.risk_matrices(A, A_star), rel=1e-12)


def test_risk_zero_at_teacher_and_invariant_to_rotations_of_neurons():
    W, W_star = _weights(15, 4, 4, "orthonormal", "orthonormal", seed=3)
    assert q.population_risk(W_star, W_star) == pytest.approx(0.0, abs=1e-15)
    O = np.linalg.qr(np.random.default_rng(4).standard_normal((4, 4)))[0]
    assert q.population_risk(W_star @ O, W_star) == pytest.approx(0.0, abs=1e-15)
    assert q.population_risk(W @ O, W_star) == pytest.approx(q.population_risk(W, W_star), rel=1e-12)


# ----------------------------------------------------------------------------- gradients

def _autograd_risk(W_star):
    ms = W_star.shape[1]

    def risk(W):
        D = anp.dot(W, W.T) / W.shape[1] - anp.dot(W_star, W_star.T) / ms
        return 0.25 * (anp.trace(D) ** 2 + 2.0 * anp.sum(D * D))
    return risk


@pytest.mark.parametrize("d,m,ms", [(9, 4, 3), (6, 10, 2)])
def test_population_gradient_matches_autograd(d, m, ms):
    W, W_star = _weights(d, m, ms, seed=5, student_norm=1.4)
    expected = autograd.grad(_autograd_risk(W_star))(W)
    got = q.population_gradient(W, W_star)
    assert got.shape == (d, m)
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-13)
    # and the d x d form of the flow: -(1/m)(tr(Delta) I + 2 Delta) W is exactly -grad R
    A, A_star = _dense(W, W_star)
    D = A - A_star
    np.testing.assert_allclose((np.trace(D) * W + 2 * D @ W) / m, expected, rtol=1e-10, atol=1e-13)


def test_empirical_gradient_and_loss():
    d, m, ms, n = 7, 3, 2, 50
    W, W_star = _weights(d, m, ms, seed=6)
    X = np.random.default_rng(7).standard_normal((n, d))
    y = q.teacher_labels(X, W_star)

    def loss(W):
        f = anp.sum(anp.dot(X, W) ** 2, axis=1) / m
        return 0.25 * anp.mean((f - y) ** 2)

    assert q.empirical_loss(W, X, y) == pytest.approx(loss(W), rel=1e-13)
    np.testing.assert_allclose(q.empirical_gradient(W, X, y), autograd.grad(loss)(W), rtol=1e-10, atol=1e-13)
    # the output is (1/m) sum_j (w_j . x)^2 sample by sample
    assert q.quadratic_output(W, X[:1])[0] == pytest.approx(np.sum((X[0] @ W) ** 2) / m, rel=1e-13)


# ----------------------------------------------------------------------------- flows

def test_overlap_equations_are_the_weight_flow_in_overlaps():
    """dQ/dt = W'^T W + W^T W', dM/dt = W'^T W* at random points, for both time scales."""
    for seed, (d, m, ms) in enumerate([(11, 4, 3), (6, 8, 2)]):
        W, W_star = _weights(d, m, ms, seed=10 + seed, student_norm=0.7)
        for c in (1.0, float(m)):
            Wdot = q.flow_rhs_weights(W, W_star, c)
            dQ, dM = q.flow_rhs_overlaps(q.Overlaps.from_weights(W, W_star), c)
            np.testing.assert_allclose(dQ, Wdot.T @ W + W.T @ Wdot, rtol=1e-11, atol=1e-13)
            np.testing.assert_allclose(dM, Wdot.T @ W_star, rtol=1e-11, atol=1e-13)


@pytest.mark.parametrize("init", ["orthonormal", "gaussian"])
def test_reduced_flow_agrees_with_weight_flow_at_d100(init):
    d, m, ms = 100, 8, 4
    W0, W_star = _weights(d, m, ms, init, init, seed=20)
    t = np.linspace(0.0, 40.0, 41)
    opts = q.SolverOptions(rtol=1e-10, atol=1e-13)
    r0 = q.population_risk(W0, W_star)
    levels = [0.5 * r0, 1e-2 * r0]
    full = q.integrate_weights(W0, W_star, t, "mean_field", levels, opts)
    red = q.integrate_overlaps(q.Overlaps.from_weights(W0, W_star), t, "mean_field", levels, opts)
    assert full.success and red.success
    assert full.risk[-1] < 1e-2 * r0, "the comparison should cover the whole descent"
    np.testing.assert_allclose(red.risk, full.risk, rtol=1e-6, atol=1e-9 * r0)
    np.testing.assert_allclose(red.final.Q, full.final.Q, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(red.final.M, full.final.M, rtol=1e-6, atol=1e-8)
    for level in levels:
        assert red.crossings[level] == pytest.approx(full.crossings[level], rel=1e-5)
    assert np.all(np.diff(full.risk) <= 1e-12 * r0), "a gradient flow never increases the risk"


def test_time_scales_differ_by_m():
    d, m, ms = 40, 6, 3
    ov = q.initial_overlaps(d, m, ms, "orthonormal", "orthonormal", np.random.default_rng(1),
                            np.random.default_rng(2))
    t = np.linspace(0.0, 10.0, 11)
    opts = q.SolverOptions(rtol=1e-10, atol=1e-14)
    mf = q.integrate_overlaps(ov, t, "mean_field", options=opts)
    gr = q.integrate_overlaps(ov, m * t, "gradient", options=opts)
    np.testing.assert_allclose(gr.risk, mf.risk, rtol=1e-7)
    assert mf.risk[-1] < 0.9 * mf.risk[0]


def test_flow_derivative_of_risk_is_minus_gradient_norm_squared():
    """Along the flow, dR/dt = -c ||grad R||^2 (central difference of the integrated risk)."""
    d, m, ms = 30, 5, 3
    W0, W_star = _weights(d, m, ms, seed=30)
    h = 1e-3
    opts = q.SolverOptions(rtol=1e-12, atol=1e-15)
    for time_scale, c in (("mean_field", float(m)), ("gradient", 1.0)):
        res = q.integrate_weights(W0, W_star, np.array([0.0, 1.0]), time_scale, options=opts)
        W1 = res.W_final
        around = q.integrate_weights(W1, W_star, np.array([0.0, h]), time_scale, options=opts)
        back = q.integrate_weights(W1, W_star, np.array([0.0, -h]), time_scale, options=opts)
        slope = (around.risk[-1] - back.risk[-1]) / (2 * h)
        g = q.population_gradient(W1, W_star)
        assert slope == pytest.approx(-c * np.sum(g * g), rel=1e-5)


def test_crossing_none_when_level_not_reached():
    """m < m*: the student cannot represent the teacher; the risk stays above a floor."""
    ov = q.initial_overlaps(60, 2, 4, "orthonormal", "orthonormal", np.random.default_rng(3),
                            np.random.default_rng(4))
    r0 = q.risk_overlaps(ov)
    res = q.integrate_overlaps(ov, np.linspace(0, 100, 11), levels=[1e-2 * r0])
    assert res.crossings[1e-2 * r0] is None
    # Eckart-Young: A of rank 2 leaves out two eigenvalues 1/4 of A* = P*/4, so
    # R >= 1/4 * 2 ||A - A*||_F^2 >= 1/2 * 2 * (1/4)^2 = 1/16
    assert res.risk[-1] >= (1 / 16) * (1 - 1e-9)
    assert res.risk[-1] < 0.5 * r0


# ----------------------------------------------------------------------------- initialisation

def test_bartlett_factor_gives_wishart_moments():
    k, dof, draws = 3, 7, 20000
    rng = np.random.default_rng(40)
    H = np.array([(lambda L: L @ L.T)(q.bartlett_factor(dof, k, rng)) for _ in range(draws)])
    mean = H.mean(axis=0)
    se = H.std(axis=0, ddof=1) / np.sqrt(draws)
    assert np.all(np.abs(mean - dof * np.eye(k)) <= N_SE * se)
    # Var(H_ij) = dof (1 + delta_ij)
    sq = (H - dof * np.eye(k)) ** 2
    var_se = sq.std(axis=0, ddof=1) / np.sqrt(draws)
    assert np.all(np.abs(sq.mean(axis=0) - dof * (1 + np.eye(k))) <= N_SE * var_se)
    with pytest.raises(ValueError):
        q.bartlett_factor(2, 3, rng)


def test_orthonormal_and_gaussian_families():
    rng = np.random.default_rng(41)
    W = q.draw_family(30, 7, "orthonormal", 1.5, rng)
    np.testing.assert_allclose(W.T @ W, 2.25 * np.eye(7), atol=1e-12)
    G = np.stack([q.draw_family(30, 7, "gaussian", 1.5, rng) for _ in range(200)])
    v, se = G.var(), G.reshape(200, -1).var(axis=1).std(ddof=1) / np.sqrt(200)
    assert abs(v - 2.25 / 30) <= N_SE * se
    with pytest.raises(ValueError):
        q.draw_family(3, 4, "orthonormal", 1.0, rng)


@pytest.mark.parametrize("init,teacher_init", [("orthonormal", "orthonormal"), ("gaussian", "gaussian"),
                                               ("gaussian", "orthonormal")])
def test_initial_overlaps_have_the_law_of_explicit_draws(init, teacher_init):
    """The d-free sampler against overlaps of explicitly drawn weights: E||M||_F^2 = m m* s^2 t^2 / d
    exactly, E tr Q = m s^2, P fixed for an orthonormal teacher, and the law of the smallest
    singular value of M (two-sample Kolmogorov-Smirnov)."""
    d, m, ms, s, tn, draws = 40, 6, 3, 1.2, 0.9, 2000
    rng = np.random.default_rng(50)
    red, exp = [], []
    for _ in range(draws):
        red.append(q.initial_overlaps(d, m, ms, init, teacher_init, rng, rng, s, tn))
        W, W_star = q.initial_weights(d, m, ms, init, teacher_init, rng, rng, s, tn)
        exp.append(q.Overlaps.from_weights(W, W_star))
    for sample in (red, exp):
        msq = np.array([np.sum(o.M ** 2) for o in sample])
        assert abs(msq.mean() - m * ms * s**2 * tn**2 / d) <= N_SE * msq.std(ddof=1) / np.sqrt(draws)
        trq = np.array([np.trace(o.Q) for o in sample])
        if init == "orthonormal":
            for o in sample[:20]:
                np.testing.assert_allclose(o.Q, s**2 * np.eye(m), atol=1e-12)
        else:
            assert abs(trq.mean() - m * s**2) <= N_SE * trq.std(ddof=1) / np.sqrt(draws)
        if teacher_init == "orthonormal":
            for o in sample[:20]:
                np.testing.assert_allclose(o.P, tn**2 * np.eye(ms), atol=1e-12)
    smin = [np.array([np.linalg.svd(o.M, compute_uv=False)[-1] for o in sample]) for sample in (red, exp)]
    assert stats.ks_2samp(*smin).pvalue > 1e-3
    risks = [np.array([q.risk_overlaps(o) for o in sample]) for sample in (red, exp)]
    assert stats.ks_2samp(*risks).pvalue > 1e-3


def test_initial_overlaps_needs_room():
    with pytest.raises(ValueError):
        q.initial_overlaps(5, 4, 2, "gaussian", "gaussian", np.random.default_rng(0), np.random.default_rng(1))


def test_subspace_overlap_and_cosine():
    d, m, ms = 25, 5, 3
    W, W_star = _weights(d, m, ms, "orthonormal", "orthonormal", seed=60)
    assert q.subspace_overlap(q.Overlaps.from_weights(W_star @ np.ones((ms, m)), W_star)) == pytest.approx(1.0)
    assert q.overlap_cosine(q.Overlaps.from_weights(W_star, W_star)) == pytest.approx(1.0)
    Pi = W_star @ W_star.T  # orthonormal teacher: the projector on its span
    A, A_star = _dense(W, W_star)
    ov = q.Overlaps.from_weights(W, W_star)
    assert q.subspace_overlap(ov) == pytest.approx(np.trace(Pi @ W @ W.T) / np.trace(W.T @ W), rel=1e-12)
    assert q.overlap_cosine(ov) == pytest.approx(
        np.sum(A * A_star) / np.sqrt(np.sum(A * A) * np.sum(A_star * A_star)), rel=1e-12)


# ----------------------------------------------------------------------------- finite sample

def test_gd_on_many_samples_tracks_the_flow_and_few_samples_overfit():
    d, m, ms, eta, T = 8, 4, 2, 0.05, 30.0
    W0, W_star = _weights(d, m, ms, "orthonormal", "orthonormal", seed=70)
    steps = int(round(T / eta))
    record = np.arange(0, steps + 1, 20)
    flow = q.integrate_weights(W0, W_star, record * eta, options=q.SolverOptions(rtol=1e-10, atol=1e-14))
    errs = {}
    for n in (20, 2000):
        X = np.random.default_rng(71).standard_normal((n, d))
        gd = q.gd_finite_sample(W0, W_star, X, q.teacher_labels(X, W_star), eta, steps,
                                record_steps=record)
        np.testing.assert_allclose(gd.t, flow.t)
        errs[n] = np.max(np.abs(gd.risk - flow.risk)) / flow.risk[0]
        if n == 20:  # fewer samples than the d(d+1)/2 = 36 entries of A: interpolation, no recovery
            assert gd.train_loss[-1] < 0.05 * gd.risk[-1]
            assert gd.risk[-1] > 0.3 * flow.risk[0]
    assert errs[2000] < 0.05
    assert errs[20] > 0.5


def test_gd_step_is_the_time_discretised_flow():
    """One step of GD on a sample is W - eta c grad L_n; the crossing is located at a step."""
    d, m, ms = 6, 3, 2
    W0, W_star = _weights(d, m, ms, seed=80)
    X = np.random.default_rng(81).standard_normal((30, d))
    y = q.teacher_labels(X, W_star)
    gd = q.gd_finite_sample(W0, W_star, X, y, 0.01, 1, "gradient")
    np.testing.assert_allclose(gd.W_final, W0 - 0.01 * q.empirical_gradient(W0, X, y), rtol=1e-13)
    gd = q.gd_finite_sample(W0, W_star, X, y, 0.01, 1, "mean_field")
    np.testing.assert_allclose(gd.W_final, W0 - 0.01 * m * q.empirical_gradient(W0, X, y), rtol=1e-13)
    r0 = q.population_risk(W0, W_star)
    gd = q.gd_finite_sample(W0, W_star, X, y, 0.05, 400, levels=[0.5 * r0])
    t_half = gd.crossings[0.5 * r0]
    assert t_half is not None and round(t_half / 0.05, 9) == int(round(t_half / 0.05))

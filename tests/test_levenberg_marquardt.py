"""Levenberg-Marquardt: exact answers on linear and Rosenbrock problems, the 1e-29 target on the
10-point problem, stopping reasons and restarts."""
import numpy as np
import pytest
from plugins_for_tests import installed_registry

from harness_plugins.semi_flat import shallow
from harness_plugins.semi_flat.levenberg_marquardt import levenberg_marquardt, train_with_restarts


def linear(seed=0, M=12, P=5):
    rng = np.random.default_rng(seed)
    A, b = rng.standard_normal((M, P)), rng.standard_normal(M)
    return A, b, (lambda th: A @ th - b), (lambda th: A)


def test_linear_least_squares_reaches_the_minimum_and_stalls_there():
    A, b, res, jac = linear()
    out = levenberg_marquardt(res, jac, np.zeros(5), max_iterations=200)
    best = np.linalg.lstsq(A, b, rcond=None)[0]
    np.testing.assert_allclose(out.theta, best, rtol=1e-10, atol=1e-12)
    r = A @ best - b
    assert out.error == pytest.approx(float(r @ r), rel=1e-12)
    assert out.reason == "stalled" and not out.reached
    assert out.error > 1.0  # an inconsistent system: a non-zero minimum
    assert all(a > c for a, c in zip(out.history, out.history[1:]))  # strictly decreasing
    assert out.history[0] == pytest.approx(float(b @ b))


def test_rosenbrock_converges_to_its_zero():
    res = lambda th: np.array([10.0 * (th[1] - th[0] ** 2), 1.0 - th[0]])
    jac = lambda th: np.array([[-20.0 * th[0], 10.0], [-1.0, 0.0]])
    out = levenberg_marquardt(res, jac, np.array([-1.2, 1.0]), target=1e-29, max_iterations=200)
    assert out.reached and out.reason == "target" and out.error <= 1e-29
    np.testing.assert_allclose(out.theta, [1.0, 1.0], atol=1e-14)


def test_target_stops_early_and_max_iterations_counts_jacobians():
    res = lambda th: np.array([10.0 * (th[1] - th[0] ** 2), 1.0 - th[0]])
    jac = lambda th: np.array([[-20.0 * th[0], 10.0], [-1.0, 0.0]])
    early = levenberg_marquardt(res, jac, np.array([-1.2, 1.0]), target=1e-2)
    full = levenberg_marquardt(res, jac, np.array([-1.2, 1.0]), target=1e-29)
    assert early.reached and early.error <= 1e-2 < early.history[-2]
    assert early.iterations < full.iterations
    capped = levenberg_marquardt(res, jac, np.array([-1.2, 1.0]), target=1e-29, max_iterations=3)
    assert capped.reason == "max_iterations" and capped.iterations == 3 and not capped.reached


def ten_point_problem(name, seed):
    """The semi-flat-minima training set: 10 inputs x ~ N(0, 1), one-unit teacher phi(x) plus
    N(0, 0.01) noise; a 5-unit student started from N(0, 1)."""
    act = installed_registry().create("activation", name)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(10)
    y = act.phi(x) + 0.1 * rng.standard_normal(10)
    return act, x, y, rng


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tanh_student_reaches_1e_29_on_the_ten_point_problem(seed):
    act, x, y, rng = ten_point_problem("tanh", seed)
    out = train_with_restarts(lambda th: shallow.residuals(th, x, y, act), lambda th: shallow.jacobian(th, x, act),
                              lambda g: g.standard_normal(16), rng, max_restarts=10, target=1e-29)
    assert out.reached and out.reason == "target"
    assert shallow.training_error(out.theta, x, y, act) == out.error <= 1e-29
    assert 0 <= out.restarts <= 10
    assert out.history[0] > 1e-3  # the start was not already a fit


def test_restarts_return_the_best_run_when_none_reaches():
    A, b, res, jac = linear(1)
    starts, errors = [], []

    def initial(rng):
        starts.append(rng.standard_normal(5))
        return starts[-1]

    out = train_with_restarts(res, jac, initial, np.random.default_rng(3), max_restarts=3,
                              target=-1.0, max_iterations=2)
    assert len(starts) == 4 and out.restarts == 3 and not out.reached
    for s in starts:
        errors.append(levenberg_marquardt(res, jac, s, target=-1.0, max_iterations=2).error)
    assert out.error == min(errors)


def test_restarts_stop_at_the_first_run_that_reaches():
    A, b, res, jac = linear(2, M=4, P=6)  # underdetermined: every start interpolates
    calls = []
    out = train_with_restarts(res, jac, lambda rng: calls.append(1) or rng.standard_normal(6),
                              np.random.default_rng(0), max_restarts=5, target=1e-20)
    assert out.reached and out.restarts == 0 and len(calls) == 1

"""ReLU interpolation of 1-D points: the exact minimum number of knots K* (the certificate that
H ReLU units cannot interpolate when K* > H), the constructive interpolating start, and the
semi-flat study reaching the paper's 1e-29 target with ReLU on a fixed data set."""
import numpy as np
import pytest
from plugins_for_tests import installed_registry

from harness_plugins.semi_flat import relu_interpolation as ri
from harness_plugins.semi_flat import shallow, train_student

RELU = installed_registry().create("activation", "relu")


def benchmark_like(seed, n=10):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(n)
    return x, np.maximum(x, 0.0) + 0.1 * rng.standard_normal(n)


def test_convex_points_need_one_knot_per_pair_of_points():
    x = np.linspace(-1.0, 2.0, 10)
    # a line meets a strictly convex curve at most twice: >= 5 pieces; pairs' chords meet in the gaps
    assert ri.min_knots(x, x ** 2) == 4
    assert ri.min_knots(x[:9], x[:9] ** 2) == 4
    assert ri.min_knots(x[:3], 2 * x[:3] + 1) == 0  # collinear


def test_zigzag_needs_a_knot_at_every_interior_point():
    x = np.arange(10.0)
    assert ri.min_knots(x, (-1.0) ** np.arange(10)) == 8


@pytest.mark.parametrize("H", [2, 3, 5, 7])
def test_samples_of_any_relu_network_have_at_most_H_knots(H):
    """The impossibility argument: an H-unit ReLU network is continuous piecewise linear with at most
    H knots, so the points it passes through have K* <= H (here for many random networks)."""
    rng = np.random.default_rng(H)
    for _ in range(200):
        theta = rng.standard_normal(3 * H + 1)
        x = rng.standard_normal(12)
        assert ri.min_knots(x, shallow.forward(theta, x, RELU)) <= H


def test_spline_interpolant_has_the_minimum_number_of_knots_and_interpolates():
    for seed in range(10):
        x, y = benchmark_like(seed)
        K = ri.min_knots(x, y)
        sp = ri.spline_interpolant(x, y, K)
        assert sp is not None and sp.t.shape == (K,)
        np.testing.assert_allclose(sp(x), y, atol=1e-10)
        xs = np.sort(x)
        # every knot strictly inside a gap between sorted inputs
        assert np.all((sp.t > xs[0]) & (sp.t < xs[-1])) and not np.any(np.isin(sp.t, xs))


def test_network_from_spline_with_a_spare_unit_equals_the_spline():
    x = np.linspace(-1.0, 2.0, 10)
    sp = ri.spline_interpolant(x, x ** 2, 4)
    theta = ri.network_from_spline(sp, 5, float(x.min()))
    xs = np.linspace(-1.0, 2.0, 101)
    np.testing.assert_allclose(shallow.forward(theta, xs, RELU), sp(xs), atol=1e-12)


def test_impossible_data_set_is_certified_and_not_interpolated():
    x, y = benchmark_like(0)
    assert ri.min_knots(x, y) == 7
    student = train_student(x, y, RELU, 5, np.random.default_rng(0))
    assert student.relu_status == "impossible" and student.min_knots == 7
    assert not student.reached and student.error > 1e-6


@pytest.mark.parametrize("seed,status", [(3, "searched"), (6, "searched")])
def test_relu_reaches_the_paper_target_on_a_fixed_data_set(seed, status):
    x, y = benchmark_like(seed)
    assert ri.min_knots(x, y) == 5
    student = train_student(x, y, RELU, 5, np.random.default_rng(1), target_error=1e-29)
    assert student.relu_status == status and student.reached
    assert shallow.training_error(student.theta, x, y, RELU) < 1e-29


def test_relu_reaches_the_target_when_fewer_knots_suffice():
    x = np.linspace(-1.0, 2.0, 10)
    y = x ** 2 + 0.01 * np.sin(7 * x)
    assert ri.min_knots(x, y) <= 4
    student = train_student(x, y, RELU, 5, np.random.default_rng(2), target_error=1e-29)
    assert student.relu_status == "constructed" and student.error < 1e-29

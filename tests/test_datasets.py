"""Built-in datasets: input distributions, target kinds, the teacher network, output noise."""
import math

import numpy as np
import pytest
from plugins_for_tests import installed_registry

from harness import CellContext, SpecError


def _ds(name, **params):
    """The dataset created through a cell (a teacher dataset builds its teacher network there)."""
    cell = CellContext({}, np.random.SeedSequence(0), registry=installed_registry())
    return cell.create("dataset", name, params)


def _within(estimate, expected, se, label=""):
    assert abs(estimate - expected) <= 5 * se, f"{label}: {estimate:.5g} vs {expected:.5g} (se {se:.2g})"


def test_gaussian_inputs_moments():
    n, d = 20000, 8
    X, _ = _ds("gaussian").sample(n, d, np.random.default_rng(0))
    assert X.shape == (n, d)
    for j in range(d):
        _within(X[:, j].mean(), 0.0, 1 / math.sqrt(n), f"mean of x_{j}")
        _within(np.mean(X[:, j] ** 2), 1.0, math.sqrt(2 / n), f"second moment of x_{j}")
    _within(np.mean(X[:, 0] * X[:, 1]), 0.0, 1 / math.sqrt(n), "E x_0 x_1")
    _within(np.mean(X ** 4), 3.0, math.sqrt(96 / X.size), "fourth moment")
    sq = np.sum(X ** 2, axis=1)  # chi-square with d degrees of freedom: not on the sphere
    _within(sq.mean(), d, math.sqrt(2 * d / n), "mean squared norm")


def test_sphere_inputs_are_uniform_on_the_unit_sphere():
    n, d = 20000, 6
    X, _ = _ds("sphere").sample(n, d, np.random.default_rng(1))
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1.0, rtol=0, atol=1e-14)
    # uniform on S^{d-1}: E x = 0, E x_j^2 = 1/d, E x_j^4 = 3/(d(d+2)), E x_0 x_1 = 0
    for j in range(d):
        _within(X[:, j].mean(), 0.0, math.sqrt(1 / d / n), f"mean of x_{j}")
        m2 = np.mean(X[:, j] ** 2)
        _within(m2, 1 / d, math.sqrt((3 / (d * (d + 2)) - 1 / d ** 2) / n), f"E x_{j}^2")
    _within(np.mean(X[:, 0] * X[:, 1]), 0.0, math.sqrt(1 / (d * (d + 2)) / n), "E x_0 x_1")


@pytest.mark.parametrize("name", ["gaussian", "sphere"])
def test_gaussian_targets_are_standard_normal_and_independent_of_x(name):
    n = 20000
    X, y = _ds(name).sample(n, 3, np.random.default_rng(2))
    _within(y.mean(), 0.0, 1 / math.sqrt(n), "mean y")
    _within(np.mean(y ** 2), 1.0, math.sqrt(2 / n), "E y^2")
    for j in range(3):
        _within(np.corrcoef(X[:, j], y)[0, 1], 0.0, 1 / math.sqrt(n), f"corr(x_{j}, y)")


@pytest.mark.parametrize("name", ["gaussian", "sphere"])
def test_sign_targets(name):
    n = 20000
    _, y = _ds(name, targets="sign").sample(n, 3, np.random.default_rng(3))
    assert set(np.unique(y)) == {-1.0, 1.0}
    _within(y.mean(), 0.0, 1 / math.sqrt(n), "mean label")


def test_zero_targets_and_noise():
    n, sigma = 20000, 0.3
    _, y0 = _ds("gaussian", targets="zero").sample(50, 3, np.random.default_rng(4))
    assert np.all(y0 == 0)
    _, y = _ds("gaussian", targets="zero", noise_std=sigma).sample(n, 3, np.random.default_rng(4))
    _within(y.mean(), 0.0, sigma / math.sqrt(n), "mean noise")
    _within(np.mean(y ** 2), sigma ** 2, sigma ** 2 * math.sqrt(2 / n), "noise variance")


def test_noise_is_added_to_the_clean_teacher():
    n, sigma = 20000, 0.05
    clean = _ds("gaussian", targets="teacher", teacher_widths=[3])
    noisy = _ds("gaussian", targets="teacher", teacher_widths=[3], noise_std=sigma)
    X1, y1 = clean.sample(n, 4, np.random.default_rng(5))
    X2, y2 = noisy.sample(n, 4, np.random.default_rng(5))
    assert np.array_equal(X1, X2)
    e = y2 - y1
    _within(e.mean(), 0.0, sigma / math.sqrt(n), "mean noise")
    _within(np.mean(e ** 2), sigma ** 2, sigma ** 2 * math.sqrt(2 / n), "noise variance")
    _within(np.corrcoef(e, y1)[0, 1], 0.0, 1 / math.sqrt(n), "noise independent of the teacher")


@pytest.mark.parametrize("name", ["gaussian", "sphere"])
def test_teacher_targets_are_reproducible_and_depend_on_the_seed(name):
    ds = _ds(name, targets="teacher", teacher_widths=[4, "d"], teacher_activation="tanh")
    X1, y1 = ds.sample(30, 5, np.random.default_rng(6))
    X2, y2 = ds.sample(30, 5, np.random.default_rng(6))
    _, y3 = ds.sample(30, 5, np.random.default_rng(7))
    assert np.array_equal(X1, X2) and np.array_equal(y1, y2)
    assert not np.allclose(y1, y3)
    assert np.std(y1) > 0


def test_linear_teacher_targets_are_linear_in_x():
    n, d = 200, 6
    X, y = _ds("gaussian", targets="teacher", teacher_widths=[3, 2],
               teacher_activation="identity").sample(n, d, np.random.default_rng(8))
    coef, *_ = np.linalg.lstsq(X, y, rcond=None)
    assert np.linalg.norm(X @ coef - y) <= 1e-12 * np.linalg.norm(y)
    # a tanh teacher is not linear
    X, y = _ds("gaussian", targets="teacher", teacher_widths=[3, 2],
               teacher_activation="tanh").sample(n, d, np.random.default_rng(8))
    coef, *_ = np.linalg.lstsq(X, y, rcond=None)
    assert np.linalg.norm(X @ coef - y) > 1e-3 * np.linalg.norm(y)


def test_default_teacher_is_one_relu_unit():
    # y = u relu(<w, x>): one sign, and zero on the half-space <w, x> < 0
    n = 4000
    X, y = _ds("sphere", targets="teacher").sample(n, 5, np.random.default_rng(9))
    nonzero = y[y != 0]
    assert np.all(np.sign(nonzero) == np.sign(nonzero[0]))
    _within(np.mean(y == 0), 0.5, 0.5 / math.sqrt(n), "fraction of zeros")
    # on the active points y = u <w, x> exactly, and the active set is the half-space u <v, x> > 0
    active = y != 0
    v, *_ = np.linalg.lstsq(X[active], y[active], rcond=None)
    assert np.linalg.norm(X[active] @ v - y[active]) <= 1e-12 * np.linalg.norm(y)
    assert np.array_equal(np.sign(nonzero[0]) * (X @ v) > 0, active)


def test_teacher_initializer_is_used():
    big = _ds("gaussian", targets="teacher", teacher_initializer="fan_in_gaussian", teacher_widths=[50])
    small = _ds("gaussian", targets="teacher", teacher_initializer="lecun", teacher_widths=[50])
    _, yb = big.sample(4000, 4, np.random.default_rng(10))
    _, ys = small.sample(4000, 4, np.random.default_rng(10))
    # same draws, output layer scaled by sqrt(50) (variance 1 instead of 1/50)
    np.testing.assert_allclose(yb, math.sqrt(50) * ys, rtol=1e-12, atol=1e-13 * np.max(np.abs(yb)))


@pytest.mark.parametrize("params,key", [
    ({"teacher_activation": "relux"}, "dataset.gaussian.teacher_activation"),
    ({"teacher_initializer": "glorot_magic"}, "dataset.gaussian.teacher_initializer"),
    ({"teacher_widths": ["2*n"]}, "dataset.gaussian.teacher_widths"),
])
def test_bad_teacher_is_refused_when_configured(params, key):
    # refused when the dataset is configured (i.e. when the benchmark file loads), not when sampling
    with pytest.raises(SpecError) as info:
        _ds("gaussian", targets="teacher", **params)
    assert key in str(info.value)


def test_unknown_activation_suggests_a_name():
    with pytest.raises(SpecError, match="did you mean 'relu'"):
        _ds("gaussian", targets="teacher", teacher_activation="relux")


def test_teacher_widths_are_checked_at_each_d():
    ds = _ds("gaussian", targets="teacher", teacher_widths=["d - 4"])
    assert ds.problem_at(5) is None
    key, problem = ds.problem_at(4)
    assert key == "dataset.teacher_widths" and "gives 0 at d = 4" in problem


@pytest.mark.parametrize("params,key", [({"targets": "labels"}, "targets"), ({"noise_std": -1.0}, "noise_std"),
                                        ({"teacher_widths": [0]}, "teacher_widths")])
def test_bad_parameters_name_the_key(params, key):
    with pytest.raises(SpecError, match=f"dataset.sphere.{key}"):
        _ds("sphere", **params)


@pytest.mark.parametrize("name", ["gaussian", "sphere"])
@pytest.mark.parametrize("targets", ["gaussian", "sign", "teacher", "zero"])
def test_float32_is_the_float64_sample_rounded(name, targets):
    ds = _ds(name, targets=targets, noise_std=0.1)
    X64, y64 = ds.sample(9, 4, np.random.default_rng(11), np.float64)
    X32, y32 = ds.sample(9, 4, np.random.default_rng(11), np.float32)
    assert X32.dtype == y32.dtype == np.float32
    assert np.array_equal(X64.astype(np.float32), X32) and np.array_equal(y64.astype(np.float32), y32)

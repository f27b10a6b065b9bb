"""The 1-D one-hidden-layer network: output, Jacobian, gradient and Hessian against autograd and
finite differences, for tanh and ReLU."""
import autograd
import autograd.numpy as anp
import numpy as np
import pytest
from plugins_for_tests import installed_registry

from harness_plugins.semi_flat import shallow

AUTOGRAD_PHI = {"tanh": anp.tanh, "relu": lambda z: anp.maximum(z, 0.0)}


def activation(name):
    return installed_registry().create("activation", name)


def reference_output(theta, x, name):
    """``f(x)`` written directly in autograd.numpy, independent of the engine's code."""
    H = (theta.shape[0] - 1) // 3
    w, b, v, c = theta[:H], theta[H:2 * H], theta[2 * H:3 * H], theta[3 * H]
    return anp.dot(AUTOGRAD_PHI[name](anp.outer(x, w) + b), v) + c


def reference_error(theta, x, y, name):
    r = reference_output(theta, x, name) - y
    return anp.sum(r * r)


def problem(seed, H=4, N=9):
    rng = np.random.default_rng(seed)
    return rng.standard_normal(3 * H + 1), rng.standard_normal(N), rng.standard_normal(N)


def test_pack_unpack_round_trip():
    w, b, v = np.arange(3.0), np.arange(3.0, 6.0), np.arange(6.0, 9.0)
    theta = shallow.pack(w, b, v, 9.0)
    assert theta.shape == (10,)
    np.testing.assert_array_equal(theta, np.arange(10.0))
    p = shallow.unpack(theta)
    np.testing.assert_array_equal(p.w, w)
    np.testing.assert_array_equal(p.b, b)
    np.testing.assert_array_equal(p.v, v)
    assert p.c == 9.0 and shallow.n_units(theta) == 3


def test_bad_length_is_rejected():
    with pytest.raises(ValueError, match="3 H \\+ 1"):
        shallow.n_units(np.zeros(5))
    with pytest.raises(ValueError, match="same length"):
        shallow.pack([1.0], [1.0, 2.0], [1.0], 0.0)


@pytest.mark.parametrize("name", ["tanh", "relu"])
def test_forward_matches_sum_over_units(name):
    theta, x, _ = problem(0)
    act = activation(name)
    p = shallow.unpack(theta)
    expected = [sum(p.v[j] * act.phi(np.array(p.w[j] * xi + p.b[j])) for j in range(4)) + p.c for xi in x]
    np.testing.assert_allclose(shallow.forward(theta, x, act), expected, rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize("name", ["tanh", "relu"])
@pytest.mark.parametrize("seed", [1, 2])
def test_jacobian_gradient_hessian_match_autograd(name, seed):
    theta, x, y = problem(seed)
    act = activation(name)
    J_ref = autograd.jacobian(reference_output)(theta, x, name)
    g_ref = autograd.grad(reference_error)(theta, x, y, name)
    H_ref = autograd.hessian(reference_error)(theta, x, y, name)
    np.testing.assert_allclose(shallow.jacobian(theta, x, act), J_ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(shallow.error_gradient(theta, x, y, act), g_ref, rtol=1e-12, atol=1e-12)
    H = shallow.error_hessian(theta, x, y, act)
    np.testing.assert_allclose(H, H_ref, rtol=1e-11, atol=1e-11)
    np.testing.assert_array_equal(H, H.T)
    assert shallow.training_error(theta, x, y, act) == pytest.approx(float(reference_error(theta, x, y, name)),
                                                                     rel=1e-14)


def test_hessian_matches_finite_differences_of_gradient():
    theta, x, y = problem(3, H=3, N=7)
    act = activation("tanh")
    eps = 1e-6
    P = theta.shape[0]
    fd = np.empty((P, P))
    for k in range(P):
        e = np.zeros(P)
        e[k] = eps
        fd[:, k] = (shallow.error_gradient(theta + e, x, y, act)
                    - shallow.error_gradient(theta - e, x, y, act)) / (2 * eps)
    np.testing.assert_allclose(shallow.error_hessian(theta, x, y, act), fd, rtol=1e-6, atol=1e-7)


def test_gradient_matches_finite_differences_of_error():
    theta, x, y = problem(4, H=3, N=7)
    act = activation("tanh")
    eps = 1e-6
    fd = np.array([(shallow.training_error(theta + eps * e, x, y, act)
                    - shallow.training_error(theta - eps * e, x, y, act)) / (2 * eps)
                   for e in np.eye(theta.shape[0])])
    np.testing.assert_allclose(shallow.error_gradient(theta, x, y, act), fd, rtol=1e-7, atol=1e-7)


def test_inertia_counts_with_relative_tolerance():
    lam = np.array([-2.0, -1e-12, 0.0, 3e-11, 1.0, 4.0])
    out = shallow.inertia(lam, rtol=1e-10)
    assert out.tol == pytest.approx(4e-10)
    assert (out.negative, out.zero, out.positive) == (1, 3, 2)
    assert shallow.inertia(lam, rtol=1e-12)[:3] == (1, 2, 3)

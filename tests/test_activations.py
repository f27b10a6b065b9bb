"""Built-in activations: values and derivatives against autograd and finite differences,
numerical stability in the tails, dtypes."""
import warnings

import autograd.numpy as anp
import numpy as np
import pytest
from autograd import elementwise_grad
from plugins_for_tests import installed_registry

# Independent autograd formulas for phi; dphi and d2phi are differentiated by autograd.
REFERENCES = {
    "sigmoid": lambda x: 1.0 / (1.0 + anp.exp(-x)),
    "relu": lambda x: anp.maximum(x, 0.0),
    "tanh": lambda x: (anp.exp(x) - anp.exp(-x)) / (anp.exp(x) + anp.exp(-x)),
    "quadratic": lambda x: x * x,
    "identity": lambda x: 1.0 * x,
}
BUILTINS = sorted(REFERENCES)


def _activation(name):
    return installed_registry().create("activation", name)


def _points():
    """Points in [-8, 8] away from 0 (the ReLU kink), plus a few fixed ones."""
    x = np.random.default_rng(0).uniform(-8, 8, 500)
    x = x[np.abs(x) > 1e-3]
    return np.concatenate([x, [-3.0, -0.5, 0.25, 1.0, 7.5]])


def test_every_builtin_activation_has_a_reference():
    registry = installed_registry()
    builtin = {name for kind, name, _, provider in registry if kind == "activation" and provider == "harness"}
    assert builtin == set(REFERENCES)


@pytest.mark.parametrize("name", BUILTINS)
def test_against_autograd(name):
    act = _activation(name)
    phi = REFERENCES[name]
    dphi = elementwise_grad(phi)
    d2phi = elementwise_grad(dphi)
    x = _points()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # autograd: "output seems independent of input"
        expected_d2 = np.broadcast_to(d2phi(x), x.shape)
    np.testing.assert_allclose(act.phi(x), phi(x), rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(act.dphi(x), dphi(x), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(act.d2phi(x), expected_d2, rtol=1e-11, atol=1e-14)


@pytest.mark.parametrize("name", BUILTINS)
def test_against_finite_differences(name):
    act = _activation(name)
    x = _points()
    h = 1e-5
    fd1 = (act.phi(x + h) - act.phi(x - h)) / (2 * h)
    fd2 = (act.dphi(x + h) - act.dphi(x - h)) / (2 * h)
    np.testing.assert_allclose(act.dphi(x), fd1, rtol=1e-7, atol=1e-8)
    np.testing.assert_allclose(act.d2phi(x), fd2, rtol=1e-7, atol=1e-8)


def test_relu_convention_at_zero():
    act = _activation("relu")
    x = np.array([-0.0, 0.0])
    assert np.all(act.phi(x) == 0) and np.all(act.dphi(x) == 0) and np.all(act.d2phi(x) == 0)


def test_sigmoid_tails_are_accurate_and_silent():
    act = _activation("sigmoid")
    x = np.array([-700.0, -300.0, -40.0, 40.0, 300.0, 700.0, 1e5, -1e5])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(all="raise", under="ignore"):
            s, ds, d2s = act.phi(x), act.dphi(x), act.d2phi(x)
    e = np.exp(-np.abs(x))  # stable closed forms: dphi = e/(1+e)^2, d2phi = -sign(x) e (1-e)/(1+e)^3
    np.testing.assert_allclose(ds, e / (1 + e) ** 2, rtol=1e-13, atol=0)
    np.testing.assert_allclose(d2s, -np.sign(x) * e * (1 - e) / (1 + e) ** 3, rtol=1e-13, atol=0)
    np.testing.assert_allclose(s[x < 0], e[x < 0] / (1 + e[x < 0]), rtol=1e-13, atol=0)
    assert np.all(s[x > 0] == 1.0)
    # where the value matters it is not flushed to zero: sigmoid(-40) ~ 4e-18, dphi(40) ~ 4e-18
    assert s[2] > 0 and ds[3] > 0 and abs(ds[3] / np.exp(-40.0) - 1) < 1e-12


def test_tanh_derivative_tail_is_accurate():
    act = _activation("tanh")
    x = np.array([-30.0, 20.0, 30.0])
    # 1 - tanh^2 = sech^2 = 4 e^{-2|x|} / (1 + e^{-2|x|})^2, positive where tanh rounds to +-1
    e = np.exp(-2 * np.abs(x))
    np.testing.assert_allclose(act.dphi(x), 4 * e / (1 + e) ** 2, rtol=1e-13, atol=0)
    np.testing.assert_allclose(act.d2phi(x), -2 * np.sign(x) * 4 * e / (1 + e) ** 2, rtol=1e-13, atol=0)


@pytest.mark.parametrize("name", BUILTINS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_and_shape_kept(name, dtype):
    act = _activation(name)
    x = np.random.default_rng(1).standard_normal((3, 4)).astype(dtype)
    for f in (act.phi, act.dphi, act.d2phi):
        out = f(x)
        assert out.shape == (3, 4) and out.dtype == dtype


@pytest.mark.parametrize("name", BUILTINS)
def test_integer_input_is_computed_in_float64(name):
    act = _activation(name)
    out = act.phi(np.array([-2, 0, 3]))
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, REFERENCES[name](np.array([-2.0, 0.0, 3.0])), rtol=1e-13)


@pytest.mark.parametrize("name", BUILTINS)
def test_jit_code_is_the_name(name):
    assert _activation(name).jit_code == name


def test_identity_does_not_alias_its_input():
    x = np.arange(3.0)
    out = _activation("identity").phi(x)
    out[0] = 5.0
    assert x[0] == 0.0

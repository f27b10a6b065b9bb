"""The loss plugins: values from their formulas, gradients against autograd, curvature bounds."""
import autograd.numpy as anp
import numpy as np
import pytest
from autograd import elementwise_grad, grad

F = np.array([0.5, -1.0, 2.0, -0.25])
Y = np.array([1.0, -1.0, 1.0, 1.0])


def test_values_from_the_formulas(registry):
    mse, hinge, logistic = (registry.create("loss", n) for n in ("mse", "hinge", "logistic"))
    # (f - y)^2 = 0.25, 0, 1, 1.5625 -> mean 0.703125 (no 1/2)
    assert mse.value(F, Y) == pytest.approx(0.703125, rel=1e-15)
    # y f = 0.5, 1, 2, -0.25 -> max(0, 1 - y f) = 0.5, 0, 0, 1.25 -> mean 0.4375
    assert hinge.value(F, Y) == pytest.approx(0.4375, rel=1e-15)
    assert registry.create("loss", "hinge", {"margin": 2.0}).value(F, Y) == pytest.approx((1.5 + 1 + 0 + 2.25) / 4)
    expected = np.mean([np.log(1 + np.exp(-m)) for m in (0.5, 1.0, 2.0, -0.25)])
    assert logistic.value(F, Y) == pytest.approx(expected, rel=1e-14)


@pytest.mark.parametrize("name, fn", [
    ("mse", lambda f, y: anp.mean((f - y) ** 2)),
    ("hinge", lambda f, y: anp.mean(anp.maximum(0.0, 1.0 - y * f))),
    ("logistic", lambda f, y: anp.mean(anp.log1p(anp.exp(-y * f)))),
])
def test_grad_matches_autograd(registry, name, fn):
    rng = np.random.default_rng(0)
    f = rng.standard_normal(50) * 2
    y = np.where(rng.standard_normal(50) < 0, -1.0, 1.0) if name != "mse" else rng.standard_normal(50)
    loss = registry.create("loss", name)
    g = loss.grad(f, y)
    assert g.shape == (50,)
    np.testing.assert_allclose(g, grad(fn)(f, y), rtol=1e-12, atol=1e-15)
    assert loss.value(f, y) == pytest.approx(float(fn(f, y)), rel=1e-12)


def test_hinge_subgradient_is_zero_at_the_margin(registry):
    hinge = registry.create("loss", "hinge")
    g = hinge.grad(np.array([1.0, -1.0, 0.999]), np.array([1.0, -1.0, 1.0]))
    np.testing.assert_array_equal(g, [0.0, 0.0, -1.0 / 3])


def test_logistic_is_stable_for_large_margins(registry):
    logistic = registry.create("loss", "logistic")
    f, y = np.array([800.0, -800.0]), np.array([1.0, 1.0])
    assert logistic.value(f, y) == pytest.approx(400.0)
    np.testing.assert_allclose(logistic.grad(f, y), [0.0, -0.5], atol=1e-300)


@pytest.mark.parametrize("name, expected", [("mse", 2.0), ("logistic", 0.25), ("hinge", None)])
def test_curvature_is_the_sup_of_the_second_derivative(registry, name, expected):
    loss = registry.create("loss", name)
    assert loss.curvature == expected
    if expected is None:
        return
    f = np.linspace(-6, 6, 1201)  # includes f = 0, where the logistic curvature peaks
    y = np.ones_like(f)
    # per-sample second derivative: d/df of (N * grad), differentiated by autograd
    per_sample = {"mse": lambda f: (f - 1.0) ** 2, "logistic": lambda f: anp.log1p(anp.exp(-f))}[name]
    second = elementwise_grad(elementwise_grad(per_sample))(f)
    assert np.max(second) <= expected * (1 + 1e-12)
    assert np.max(second) == pytest.approx(expected, rel=1e-9)  # the bound is tight
    np.testing.assert_allclose(loss.grad(f, y) * f.size, elementwise_grad(per_sample)(f), rtol=1e-12, atol=1e-15)


def test_shape_mismatch_is_an_error(registry):
    with pytest.raises(ValueError, match="shape"):
        registry.create("loss", "mse").value(np.zeros(3), np.zeros(4))

"""Loss gradients (harness.engine.gradients) and lambda_max(K0) (harness.engine.step_size)
against autograd, for deep networks and the two-layer network with a frozen output layer."""
import autograd.numpy as anp
import numpy as np
import pytest
from activations_for_tests import Softplus  # noqa: E402
from autograd import grad, jacobian

from harness import Activation
from harness.engine.gradients import GradientEngine, loss_and_gradients
from harness.engine.network import forward
from harness.engine.pointwise import fused_kernel
from harness.engine.step_size import ntk_lambda_max

AG_PHI = {
    "relu": lambda x: anp.maximum(x, 0.0),
    "sigmoid": lambda x: 1.0 / (1.0 + anp.exp(-x)),
    "tanh": anp.tanh,
    "quadratic": lambda x: x * x,
    "identity": lambda x: x,
}
AG_LOSS = {
    "mse": lambda f, y: anp.mean((f - y) ** 2),
    "hinge": lambda f, y: anp.mean(anp.maximum(0.0, 1.0 - y * f)),
    "logistic": lambda f, y: anp.mean(anp.log1p(anp.exp(-y * f))),
}
DEEP = [(7, 5), (6, 7), (4, 6), (1, 4)]
TWO_LAYER = [(12, 5), (1, 12)]


def ag_output(weights, X, phi):
    F = X
    for W in weights[:-1]:
        F = phi(anp.dot(F, W.T))
    return anp.reshape(anp.dot(F, weights[-1].T), (-1,))


def ag_loss_grads(weights, X, y, act_name, loss_name):
    fn = lambda ws: AG_LOSS[loss_name](ag_output(ws, X, AG_PHI[act_name]), y)
    return fn(weights), grad(fn)(list(weights))


def problem(shapes, loss_name, seed=0, N=23):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N, shapes[0][1]))
    y = rng.standard_normal(N)
    if loss_name != "mse":
        y = np.where(y < 0, -1.0, 1.0)
    weights = [rng.standard_normal(s) / np.sqrt(s[1]) for s in shapes]
    return X, y, weights


@pytest.mark.parametrize("shapes, trainable", [(DEEP, None), (DEEP, [False, True, False, True]),
                                               (TWO_LAYER, [True, False])],
                         ids=["deep", "deep-partly-frozen", "two-layer-frozen-output"])
@pytest.mark.parametrize("loss_name", ["mse", "hinge", "logistic"])
@pytest.mark.parametrize("act_name", ["relu", "sigmoid", "tanh", "quadratic", "identity"])
def test_gradients_match_autograd(registry, act_name, loss_name, shapes, trainable):
    X, y, weights = problem(shapes, loss_name)
    act = registry.create("activation", act_name)
    loss = registry.create("loss", loss_name)
    expected_loss, expected = ag_loss_grads(weights, X, y, act_name, loss_name)
    engine = GradientEngine(shapes, act, trainable)
    assert engine.code is not None  # the built-ins take the fused path
    for result in (loss_and_gradients(weights, X, y, act, loss, trainable),
                   engine.loss_and_grads(weights, X, y, loss)):
        assert result.loss == pytest.approx(float(expected_loss), rel=1e-12)
        np.testing.assert_allclose(result.output, ag_output(weights, X, AG_PHI[act_name]), rtol=1e-12)
        for l, (g, e) in enumerate(zip(result.grads, expected)):
            if trainable is not None and not trainable[l]:
                assert g is None
            else:
                assert g.shape == weights[l].shape
                np.testing.assert_allclose(g, e, rtol=1e-9, atol=1e-13)


class LeakyNamedRelu(Activation):
    """Declares the relu kernel but computes a leaky ReLU: the kernel must not be used."""

    name = "test_leaky"
    help = "max(x, 0.1 x) with a misleading jit_code"
    jit_code = "relu"

    def phi(self, x):
        return np.where(x > 0, x, 0.1 * x)

    def dphi(self, x):
        return np.where(x > 0, 1.0, 0.1)

    def d2phi(self, x):
        return np.zeros_like(x)


@pytest.mark.parametrize("act, ag_phi", [
    (Softplus(), lambda x: anp.logaddexp(0.0, x)),
    (LeakyNamedRelu(), lambda x: anp.where(x > 0, x, 0.1 * x)),
], ids=["no-kernel", "misleading-kernel"])
def test_numpy_fallback_for_other_activations(registry, act, ag_phi):
    X, y, weights = problem(DEEP, "mse", seed=3)
    assert fused_kernel(act) is None
    loss = registry.create("loss", "mse")
    fn = lambda ws: anp.mean((ag_output(ws, X, ag_phi) - y) ** 2)
    expected = grad(fn)(list(weights))
    result = GradientEngine(DEEP, act).loss_and_grads(weights, X, y, loss)
    assert result.loss == pytest.approx(float(fn(weights)), rel=1e-12)
    for g, e in zip(result.grads, expected):
        np.testing.assert_allclose(g, e, rtol=1e-9, atol=1e-13)


def test_engine_handles_batches_of_different_sizes(registry):
    """Buffers grow on demand and are reused (as views) for smaller batches."""
    X, y, weights = problem(DEEP, "mse", seed=4, N=40)
    act, loss = registry.create("activation", "tanh"), registry.create("loss", "mse")
    engine = GradientEngine(DEEP, act, max_rows=8)
    for rows in (slice(0, 8), slice(0, 40), slice(5, 12), slice(30, 40)):
        expected_loss, expected = ag_loss_grads(weights, X[rows], y[rows], "tanh", "mse")
        result = engine.loss_and_grads(weights, X[rows], y[rows], loss)
        assert result.loss == pytest.approx(float(expected_loss), rel=1e-12)
        for g, e in zip(result.grads, expected):
            np.testing.assert_allclose(g, e, rtol=1e-9, atol=1e-13)


def test_float32_engine(registry):
    X, y, weights = problem(DEEP, "mse", seed=5)
    act, loss = registry.create("activation", "sigmoid"), registry.create("loss", "mse")
    _, expected = ag_loss_grads(weights, X, y, "sigmoid", "mse")
    engine = GradientEngine(DEEP, act, dtype=np.float32)
    result = engine.loss_and_grads([W.astype(np.float32) for W in weights], X.astype(np.float32),
                                   y.astype(np.float32), loss)
    for g, e in zip(result.grads, expected):
        assert g.dtype == np.float32
        np.testing.assert_allclose(g, e, rtol=2e-4, atol=2e-6)


def test_predict_matches_network_forward(registry):
    X, _, weights = problem(DEEP, "mse", seed=6)
    act = registry.create("activation", "tanh")
    engine = GradientEngine(DEEP, act)
    np.testing.assert_allclose(engine.predict(weights, X), forward(weights, X, act).output, rtol=1e-13)


def test_shapes_must_end_in_one_output():
    with pytest.raises(ValueError, match="one unit"):
        GradientEngine([(3, 2), (2, 3)], Softplus())


# ------------------------------------------------------------------- lambda_max(K) at init

def ntk_by_autograd(weights, X, phi, trainable):
    """K = J J^T with J the Jacobian of the N outputs in the trainable weights."""
    blocks = []
    for l, W in enumerate(weights):
        if not trainable[l]:
            continue

        def out(Wl, l=l):
            ws = list(weights)
            ws[l] = Wl
            return ag_output(ws, X, phi)

        blocks.append(jacobian(out)(W).reshape(X.shape[0], -1))
    J = np.concatenate(blocks, axis=1)
    return J @ J.T


@pytest.mark.parametrize("shapes, trainable", [(DEEP, [True] * 4), (DEEP, [False, True, True, False]),
                                               (TWO_LAYER, [True, False])])
@pytest.mark.parametrize("act_name", ["relu", "sigmoid"])
def test_lambda_max_matches_autograd_ntk(registry, act_name, shapes, trainable):
    X, _, weights = problem(shapes, "mse", seed=7, N=90)
    act = registry.create("activation", act_name)
    expected = np.linalg.eigvalsh(ntk_by_autograd(weights, X, AG_PHI[act_name], trainable))[-1]
    for method in ("dense", "matvec"):
        assert ntk_lambda_max(weights, X, act, trainable, method=method) == pytest.approx(expected, rel=1e-7)


def test_lambda_max_small_problem_and_errors(registry):
    X, _, weights = problem(TWO_LAYER, "mse", seed=8, N=10)
    act = registry.create("activation", "tanh")
    expected = np.linalg.eigvalsh(ntk_by_autograd(weights, X, AG_PHI["tanh"], [True, True]))[-1]
    assert ntk_lambda_max(weights, X, act) == pytest.approx(expected, rel=1e-10)
    with pytest.raises(ValueError, match="no trainable"):
        ntk_lambda_max(weights, X, act, [False, False])
    with pytest.raises(ValueError, match="unknown method"):
        ntk_lambda_max(weights, X, act, method="power")

"""Built-in initializers: entry variances (statistically), orthogonality and Haar sign
correction, Daniely's symmetric initialisation and its zero initial output."""
import math

import numpy as np
import pytest
from plugins_for_tests import installed_registry
from threadpoolctl import threadpool_limits

from harness import SpecError
from harness.engine.network import forward

SHAPES = [(300, 120), (200, 300), (1, 200)]


@pytest.fixture(autouse=True)
def _one_blas_thread():
    """Small QR factorisations: one BLAS thread is fastest and does not oversubscribe the machine."""
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def _init(name, **params):
    return installed_registry().create("initializer", name, params)


def _draws(init, shapes, n_draws, seed=0):
    return [init.initialize(shapes, np.random.default_rng([seed, k])) for k in range(n_draws)]


def _assert_variance(values, expected, label=""):
    """Sample variance (about the known mean 0) within 5 standard errors of ``expected``,
    the standard error estimated from the sample's own fourth moment."""
    values = np.asarray(values).ravel()
    v = np.mean(values ** 2)
    se = math.sqrt((np.mean(values ** 4) - v ** 2) / values.size)
    assert abs(v - expected) <= 5 * se, f"{label}: variance {v:.6g} +- {se:.2g}, expected {expected:.6g}"
    assert abs(np.mean(values)) <= 5 * math.sqrt(v / values.size), f"{label}: mean {np.mean(values):.3g} is not 0"


@pytest.mark.parametrize("beta,output_variance", [(1.0, 1.0), (0.5, 2.5)])
def test_fan_in_gaussian_variances(beta, output_variance):
    init = _init("fan_in_gaussian", beta=beta, output_variance=output_variance)
    draws = _draws(init, SHAPES, 20)
    _assert_variance([d[0] for d in draws], beta ** 2 / 120, "layer 1")
    _assert_variance([d[1] for d in draws], beta ** 2 / 300, "layer 2")
    _assert_variance([d[2] for d in draws], output_variance, "output layer (not divided by its fan-in)")
    assert init.expected_variances(SHAPES) == pytest.approx([beta ** 2 / 120, beta ** 2 / 300, output_variance])


def test_fan_in_gaussian_is_gaussian():
    W = _init("fan_in_gaussian").initialize([(500, 400), (1, 500)], np.random.default_rng(3))[0].ravel()
    z = W * math.sqrt(400)
    kurtosis = np.mean(z ** 4)  # 3 for a Gaussian; its standard error is sqrt((E z^8 - 9) / n) = sqrt(96 / n)
    assert abs(kurtosis - 3) <= 5 * math.sqrt(96 / z.size)


def test_fan_in_gaussian_zero_output_variance_gives_zero_output_layer():
    weights = _init("fan_in_gaussian", output_variance=0.0).initialize(SHAPES, np.random.default_rng(0))
    assert np.all(weights[-1] == 0) and np.std(weights[0]) > 0


@pytest.mark.parametrize("name,gain2", [("lecun", 1.0), ("he", 2.0)])
def test_lecun_and_he_variances(name, gain2):
    init = _init(name)
    draws = _draws(init, SHAPES, 20)
    for l, (n, m) in enumerate(SHAPES):
        _assert_variance([d[l] for d in draws], gain2 / m, f"{name} layer {l}")
    assert init.expected_variances(SHAPES) == pytest.approx([gain2 / m for _, m in SHAPES])


@pytest.mark.parametrize("shape", [(5, 9), (9, 5), (7, 7), (1, 30)])
@pytest.mark.parametrize("gain", [1.0, 1.7])
def test_orthogonal_is_semi_orthogonal(shape, gain):
    W, = _init("orthogonal", gain=gain).initialize([shape], np.random.default_rng(4))
    n, m = shape
    gram = W @ W.T if n <= m else W.T @ W
    np.testing.assert_allclose(gram, gain ** 2 * np.eye(min(n, m)), atol=1e-12)


def test_orthogonal_entry_variances():
    gain = 1.7
    init = _init("orthogonal", gain=gain)
    draws = _draws(init, SHAPES, 20)
    expected = [gain ** 2 / max(n, m) for n, m in SHAPES]  # 1/300, 1/300, 1/200 times gain^2
    for l in range(len(SHAPES)):
        _assert_variance([d[l] for d in draws], expected[l], f"orthogonal layer {l}")
    assert init.expected_variances(SHAPES) == pytest.approx(expected)


def test_orthogonal_is_haar_sign_corrected():
    # Plain Householder QR makes Q[0, 0] = -|a_11| / ||a_1|| < 0 always; Haar makes it symmetric
    # about 0 with variance 1/n.
    n, reps = 20, 400
    init = _init("orthogonal")
    first = np.array([init.initialize([(n, n)], np.random.default_rng([5, k]))[0][0, 0] for k in range(reps)])
    assert abs(first.mean()) <= 5 * math.sqrt(1 / n / reps)
    assert 0.3 < np.mean(first > 0) < 0.7


def test_daniely_symmetric_structure():
    q, d, B = 40, 7, 2.5
    W, u = _init("daniely_symmetric", B=B).initialize([(q, d), (1, q)], np.random.default_rng(6))
    assert W.shape == (q, d) and u.shape == (1, q)
    assert np.array_equal(W[: q // 2], W[q // 2:])
    assert np.array_equal(u[0, : q // 2], -u[0, q // 2:])
    np.testing.assert_allclose(np.abs(u), B / math.sqrt(q), rtol=1e-15)


def test_daniely_symmetric_statistics():
    q, d, reps = 60, 25, 40
    init = _init("daniely_symmetric")
    draws = _draws(init, [(q, d), (1, q)], reps)
    _assert_variance([dr[0][: q // 2] for dr in draws], 1 / d, "independent half of W")
    signs = np.concatenate([np.sign(dr[1][0, : q // 2]) for dr in draws])
    assert abs(signs.mean()) <= 5 / math.sqrt(signs.size)  # random signs, not all +1
    assert init.expected_variances([(q, d), (1, q)]) == pytest.approx([1 / d, 1 / q])


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid"])
def test_daniely_initial_output_is_zero(activation):
    act = installed_registry().create("activation", activation)
    rng = np.random.default_rng(7)
    q, d = 64, 10
    weights = _init("daniely_symmetric", B=3.0).initialize([(q, d), (1, q)], rng)
    X = rng.standard_normal((200, d)) * 3
    fp = forward(weights, X, act)
    # zero up to rounding of the q-term sum: bounded by a few ulps of sum_i |u_i phi(<w_i, x>)|
    scale = np.abs(fp.F[-1]) @ np.abs(weights[-1][0])
    assert np.all(np.abs(fp.output) <= 1e-13 * scale)
    assert np.all(scale > 0)  # the units are active: the cancellation is not trivial
    # a non-symmetric draw of the same scale gives outputs of order scale / sqrt(q)
    other = installed_registry().create("initializer", "fan_in_gaussian").initialize([(q, d), (1, q)], rng)
    assert np.median(np.abs(forward(other, X, act).output)) > 1e-3


def test_daniely_rejects_bad_shapes():
    init = _init("daniely_symmetric")
    with pytest.raises(ValueError, match="even"):
        init.initialize([(5, 3), (1, 5)], np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"\[\(q, d\), \(1, q\)\]"):
        init.initialize([(4, 3), (4, 4), (1, 4)], np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"\[\(q, d\), \(1, q\)\]"):
        init.expected_variances([(4, 3), (1, 6)])


@pytest.mark.parametrize("B", [0.0, -1.0])
def test_daniely_B_must_be_positive(B):
    with pytest.raises(SpecError, match="initializer.daniely_symmetric.B"):
        _init("daniely_symmetric", B=B)


@pytest.mark.parametrize("name,params", [("fan_in_gaussian", {"beta": -1.0}),
                                         ("fan_in_gaussian", {"output_variance": -0.1}),
                                         ("orthogonal", {"gain": -2.0})])
def test_negative_scales_rejected(name, params):
    with pytest.raises(SpecError, match=f"initializer.{name}.{next(iter(params))}"):
        _init(name, **params)


@pytest.mark.parametrize("name", ["fan_in_gaussian", "lecun", "he", "orthogonal", "daniely_symmetric"])
def test_float32_is_the_float64_draw_rounded(name):
    shapes = [(6, 3), (1, 6)]
    init = _init(name)
    a = init.initialize(shapes, np.random.default_rng(8), np.float64)
    b = init.initialize(shapes, np.random.default_rng(8), np.float32)
    for x, y in zip(a, b):
        assert y.dtype == np.float32 and np.array_equal(x.astype(np.float32), y)

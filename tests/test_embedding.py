"""The three embeddings: the function is unchanged on random inputs, and stationary points stay
stationary (under the conditions each map documents), for tanh and ReLU."""
import numpy as np
import pytest
from plugins_for_tests import installed_registry

from harness_plugins.semi_flat import embedding, shallow
from harness_plugins.semi_flat.levenberg_marquardt import levenberg_marquardt

ACTIVATIONS = ["tanh", "relu"]


def activation(name):
    return installed_registry().create("activation", name)


def narrow(seed=0, H0=3):
    return np.random.default_rng(seed).standard_normal(3 * H0 + 1)


def inputs(seed=1, n=500):
    return 3.0 * np.random.default_rng(seed).standard_normal(n)


MAPS = {
    "unit_replication": lambda th, H, act: embedding.unit_replication(th, H, split=0.3),
    "inactive_units": lambda th, H, act: embedding.inactive_units(th, H, act, bias=-1.0, output_weight=0.7),
    "inactive_units_positive_bias": lambda th, H, act: embedding.inactive_units(
        th, H, act, bias=np.linspace(0.2, 1.5, H - 3), output_weight=np.linspace(-1, 2, H - 3)),
    "inactive_propagation": lambda th, H, act: embedding.inactive_propagation(th, H, input_weight=1.3, bias=0.4),
}


@pytest.mark.parametrize("name", ACTIVATIONS)
@pytest.mark.parametrize("method", sorted(MAPS))
@pytest.mark.parametrize("H", [3, 4, 11])
def test_function_unchanged_on_random_inputs(name, method, H):
    act = activation(name)
    theta = narrow()
    wide = MAPS[method](theta, H, act)
    assert wide.shape == (3 * H + 1,)
    x = inputs()
    f0 = shallow.forward(theta, x, act)
    np.testing.assert_allclose(shallow.forward(wide, x, act), f0, rtol=1e-13, atol=1e-13)
    assert np.ptp(f0) > 0.5  # the test inputs do exercise a non-constant function


@pytest.mark.parametrize("method", embedding.EMBEDDINGS)
def test_embed_dispatch_and_identity_at_same_width(method):
    act = activation("tanh")
    theta = narrow()
    np.testing.assert_array_equal(embedding.embed(theta, 3, method, act), theta)
    wide = embedding.embed(theta, 7, method, act, split=0.25, bias=-2.0, output_weight=0.5, input_weight=0.1)
    x = inputs()
    np.testing.assert_allclose(shallow.forward(wide, x, act), shallow.forward(theta, x, act), rtol=1e-13, atol=1e-13)
    with pytest.raises(ValueError, match="cannot embed"):
        embedding.embed(theta, 2, method, act)
    with pytest.raises(ValueError, match="unknown embedding"):
        embedding.embed(theta, 5, "duplicate", act)


def test_unit_replication_structure():
    theta = narrow(H0=2)
    wide = shallow.unpack(embedding.unit_replication(theta, 5, split=0.25))
    p = shallow.unpack(theta)
    # round-robin: added units 2, 3, 4 copy units 0, 1, 0
    np.testing.assert_array_equal(wide.w, p.w[[0, 1, 0, 1, 0]])
    np.testing.assert_array_equal(wide.b, p.b[[0, 1, 0, 1, 0]])
    v0, v1 = p.v
    np.testing.assert_allclose(wide.v, [0.25 ** 2 * v0, 0.25 * v1, 0.75 * v0, 0.75 * v1, 0.75 * 0.25 * v0])
    assert wide.c == p.c


@pytest.mark.parametrize("method", ["inactive_units", "inactive_propagation"])
def test_added_units_do_not_depend_on_target_width(method):
    act = activation("tanh")
    theta = narrow()
    small, large = (embedding.embed(theta, H, method, act, bias=-1.5, output_weight=2.0) for H in (6, 9))
    a, b = shallow.unpack(small), shallow.unpack(large)
    for name in ("w", "b", "v"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name)[:6])


def test_dead_relu_units_need_no_compensation():
    act = activation("relu")
    theta = narrow()
    wide = shallow.unpack(embedding.inactive_units(theta, 8, act, bias=-0.5, output_weight=3.0))
    assert wide.c == shallow.unpack(theta).c
    tanh_wide = shallow.unpack(embedding.inactive_units(theta, 8, activation("tanh"), bias=-0.5, output_weight=3.0))
    assert tanh_wide.c == pytest.approx(shallow.unpack(theta).c + 5 * 3.0 * np.tanh(0.5), rel=1e-14)


def test_per_unit_values_must_match_added_count():
    with pytest.raises(ValueError, match="one value per added unit"):
        embedding.inactive_propagation(narrow(), 6, input_weight=[1.0, 2.0])


# --- stationary points ------------------------------------------------------------------------

@pytest.mark.parametrize("name", ACTIVATIONS)
@pytest.mark.parametrize("method", sorted(MAPS))
def test_interpolating_point_stays_stationary(name, method):
    act = activation(name)
    theta = narrow(5)
    x = np.random.default_rng(6).standard_normal(10)
    y = shallow.forward(theta, x, act)  # the narrow network fits exactly: E = 0, gradient 0
    assert np.all(shallow.error_gradient(theta, x, y, act) == 0.0)
    wide = MAPS[method](theta, 9, act)
    assert np.max(np.abs(shallow.error_gradient(wide, x, y, act))) < 1e-13


def stationary_point(name, N=25):
    """A non-interpolating stationary point of a 2-unit network on noisy data: ``(theta, x, y, act)``."""
    act = activation(name)
    rng = np.random.default_rng({"relu": 0, "tanh": 1}[name])
    if name == "relu":
        # two clusters of inputs, and ReLU kinks in the gap between them: the error is smooth
        # around the minimum (no kink crosses a data point), so the minimum is a stationary point
        x = np.concatenate([rng.uniform(-2.0, -1.0, N // 2), rng.uniform(1.0, 2.0, N - N // 2)])
        theta0 = shallow.pack([1.0, -1.0], [0.1, 0.1], [1.0, 1.0], 0.0)
        y = np.sin(2 * x) + 0.3 * rng.standard_normal(N)
    else:
        # noisy data from a two-unit tanh network, LM started near it; this seed gives a stationary
        # point with moderate weights (others drift off to infinity along a saturating unit)
        x = rng.standard_normal(N)
        y = np.tanh(1.5 * x - 0.5) - 0.8 * np.tanh(x + 1) + 0.3 * rng.standard_normal(N)
        theta0 = shallow.pack([1.5, 1.0], [-0.5, 1.0], [1.0, -0.8], 0.0) + 0.1 * rng.standard_normal(7)
    res = levenberg_marquardt(lambda th: shallow.residuals(th, x, y, act),
                              lambda th: shallow.jacobian(th, x, act), theta0, max_iterations=2000)
    g = shallow.error_gradient(res.theta, x, y, act)
    assert res.error > 1.0 and np.max(np.abs(g)) < 1e-8 and np.max(np.abs(res.theta)) < 20, (res.error, g)
    return res.theta, x, y, act


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_unit_replication_keeps_stationary_points(name):
    theta, x, y, act = stationary_point(name)
    before = np.max(np.abs(shallow.error_gradient(theta, x, y, act)))
    for split in (0.5, 0.2, 1.7):
        wide = embedding.unit_replication(theta, 7, split)
        assert np.max(np.abs(shallow.error_gradient(wide, x, y, act))) < 10 * before + 1e-12


def test_smooth_inactive_units_stationary_only_with_zero_output_weight():
    theta, x, y, act = stationary_point("tanh")
    before = np.max(np.abs(shallow.error_gradient(theta, x, y, act)))
    wide = embedding.inactive_units(theta, 6, act, bias=-1.0, output_weight=0.0)
    assert np.max(np.abs(shallow.error_gradient(wide, x, y, act))) < 10 * before + 1e-12
    # with v != 0 the new input weights see 2 v phi'(b) sum_i r_i x_i, which is not zero here
    v = 0.8
    wide = embedding.inactive_units(theta, 6, act, bias=-1.0, output_weight=v)
    g = shallow.error_gradient(wide, x, y, act)
    r = shallow.residuals(theta, x, y, act)
    expected = 2 * v * act.dphi(np.array(-1.0)) * (r @ x)
    np.testing.assert_allclose(g[2:6], expected, rtol=1e-8)
    assert abs(expected) > 1e-3


def test_relu_dead_units_keep_stationary_points():
    theta, x, y, act = stationary_point("relu")
    before = np.max(np.abs(shallow.error_gradient(theta, x, y, act)))
    for v in (0.0, 1.0, -5.0):
        wide = embedding.inactive_units(theta, 6, act, bias=-1.0, output_weight=v)
        assert np.max(np.abs(shallow.error_gradient(wide, x, y, act))) < 10 * before + 1e-12
    # inactive propagation with a unit dead on every training input
    wide = embedding.inactive_propagation(theta, 6, input_weight=1.0, bias=-(np.max(np.abs(x)) + 0.5))
    assert np.max(np.abs(shallow.error_gradient(wide, x, y, act))) < 10 * before + 1e-12


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_inactive_propagation_with_zero_input_weight_keeps_stationary_points(name):
    theta, x, y, act = stationary_point(name)
    before = np.max(np.abs(shallow.error_gradient(theta, x, y, act)))
    wide = embedding.inactive_propagation(theta, 6, input_weight=0.0, bias=0.7)
    assert np.max(np.abs(shallow.error_gradient(wide, x, y, act))) < 10 * before + 1e-12
    # a live unit with v = 0 is not stationary in v: gradient 2 sum_i r_i phi(w x_i + b)
    wide = embedding.inactive_propagation(theta, 6, input_weight=1.0, bias=0.7)
    g = shallow.error_gradient(wide, x, y, act)
    r = shallow.residuals(theta, x, y, act)
    np.testing.assert_allclose(g[3 * 6 - 4:3 * 6], 2 * r @ act.phi(x + 0.7), rtol=1e-8)
    assert abs(2 * r @ act.phi(x + 0.7)) > 1e-3

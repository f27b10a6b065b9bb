"""Built-in architectures: layer shapes, widths as expressions in d, trainable layers, errors."""
import numpy as np
import pytest
from plugins_for_tests import installed_registry

from harness import SpecError


def _arch(name, **params):
    return installed_registry().create("architecture", name, params)


def test_fc_default_is_depth_three_of_width_d():
    arch = _arch("fc")
    assert arch.layer_shapes(5) == [(5, 5), (5, 5), (1, 5)]
    assert arch.trainable(5) == [True, True, True]
    assert arch.param_count(5) == 25 + 25 + 5


def test_fc_widths_mix_ints_and_expressions():
    arch = _arch("fc", widths=[10, "2*d", "floor(d/2)", "d/7", "max(d - 10, 1)"])
    assert arch.layer_shapes(7) == [(10, 7), (14, 10), (3, 14), (1, 3), (1, 1), (1, 1)]
    assert arch.layer_shapes(14) == [(10, 14), (28, 10), (7, 28), (2, 7), (4, 2), (1, 4)]


def test_fc_without_hidden_layers_is_linear():
    arch = _arch("fc", widths=[])
    assert arch.layer_shapes(4) == [(1, 4)]
    W = [np.arange(4.0)[None, :]]
    X = np.random.default_rng(0).standard_normal((3, 4))
    np.testing.assert_allclose(arch.forward(W, X, installed_registry().create("activation", "tanh")), X @ W[0][0])


def test_fc_forward_matches_a_direct_computation():
    rng = np.random.default_rng(1)
    arch = _arch("fc", widths=["d", 3])
    relu = installed_registry().create("activation", "relu")
    W = [rng.standard_normal(s) for s in arch.layer_shapes(4)]
    X = rng.standard_normal((6, 4))
    direct = np.maximum(np.maximum(X @ W[0].T, 0) @ W[1].T, 0) @ W[2][0]
    np.testing.assert_allclose(arch.forward(W, X, relu), direct, rtol=1e-13)


def test_fc_frozen_output_layer():
    arch = _arch("fc", widths=[6, 4], train_output=False)
    assert arch.trainable(3) == [True, True, False]
    assert arch.param_count(3) == 18 + 24
    assert arch.param_count(3, trainable_only=False) == 18 + 24 + 4


@pytest.mark.parametrize("widths,fragment", [
    (["2*n"], "only d is allowed"),
    (["d+"], "invalid expression"),
    (["sqrt(d).real"], "not allowed"),
    (["open(d)"], "not allowed"),
    (["[d, d]"], "does not give a number"),
    ([0], "out of range"),
    ([-3], "out of range"),
    ([2.5], "wrong type"),
    ([True], "wrong type"),
    ("d", "wrong type"),
])
def test_fc_bad_widths_name_the_key(widths, fragment):
    with pytest.raises(SpecError) as info:
        _arch("fc", widths=widths)
    assert "architecture.fc.widths" in str(info.value)
    assert fragment in str(info.value)


@pytest.mark.parametrize("expr,d", [("floor(d/2)", 1), ("d - 5", 5), ("d/2", 7)])
def test_fc_width_must_be_a_positive_integer_at_d(expr, d):
    arch = _arch("fc", widths=[3, expr])
    with pytest.raises(SpecError) as info:
        arch.layer_shapes(d)
    assert "architecture.fc.widths[1]" in str(info.value) and f"d = {d}" in str(info.value)


def test_unknown_parameter_is_named():
    with pytest.raises(SpecError, match="architecture.fc.width"):
        _arch("fc", width=[3])


def test_two_layer_shapes_and_frozen_output():
    arch = _arch("two_layer", q=12)
    assert arch.layer_shapes(5) == [(12, 5), (1, 12)]
    assert arch.trainable(5) == [True, False]
    assert arch.param_count(5) == 60
    assert arch.param_count(5, trainable_only=False) == 72
    assert _arch("two_layer", q=12, train_output=True).trainable(5) == [True, True]


def test_two_layer_q_as_expression():
    arch = _arch("two_layer", q="2*ceil(d/3)")
    assert arch.layer_shapes(7) == [(6, 7), (1, 6)]
    assert arch.layer_shapes(9) == [(6, 9), (1, 6)]


@pytest.mark.parametrize("q,fragment", [(0, "out of range"), ("2*m", "only d"), (3.0, "wrong type")])
def test_two_layer_bad_q(q, fragment):
    with pytest.raises(SpecError) as info:
        _arch("two_layer", q=q)
    assert "architecture.two_layer.q" in str(info.value) and fragment in str(info.value)


def test_two_layer_forward_is_sum_of_units():
    rng = np.random.default_rng(2)
    arch = _arch("two_layer", q=5)
    tanh = installed_registry().create("activation", "tanh")
    W, u = (rng.standard_normal(s) for s in arch.layer_shapes(3))
    X = rng.standard_normal((4, 3))
    direct = np.array([sum(u[0, i] * np.tanh(W[i] @ x) for i in range(5)) for x in X])
    np.testing.assert_allclose(arch.forward([W, u], X, tanh), direct, rtol=1e-13)

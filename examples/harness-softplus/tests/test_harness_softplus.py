"""The plugin's own tests: the conformance suite, plus the numbers each component promises."""
import numpy as np
import pytest
from harness_softplus import Pyramid, Softplus

from harness.plugin.conformance import assert_conforms


@pytest.mark.parametrize("kind, component", [("activation", Softplus), ("architecture", Pyramid)])
def test_conforms(kind, component):
    assert_conforms(kind, component)


def test_softplus_values():
    x = np.array([-800.0, -1.0, 0.0, 1.0, 800.0])
    assert Softplus().phi(x) == pytest.approx([0.0, np.log1p(np.exp(-1.0)), np.log(2.0), np.log1p(np.e), 800.0])
    assert Softplus(beta=2.0).dphi(np.array([0.0]))[0] == pytest.approx(0.5)
    assert Softplus(beta=2.0).d2phi(np.array([0.0]))[0] == pytest.approx(0.5)  # beta / 4


def test_pyramid_widths_halve():
    assert Pyramid(width=16, depth=3).layer_shapes(5) == [(16, 5), (8, 16), (4, 8), (1, 4)]
    assert Pyramid(width="2*d", depth=2).hidden_widths(10) == [20, 10]
    assert Pyramid(width=2, depth=4).hidden_widths(3) == [2, 1, 1, 1]  # never below 1
    assert Pyramid(train_output=False).trainable(4) == [True, True, True, False]

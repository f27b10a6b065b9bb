"""harness.plugin.expression_params: expression-valued parameters (Expr, Width)."""
import pytest

from harness.plugin import SpecError
from harness.plugin.expression_params import Expr, Width, hidden_widths_resolved
from harness.plugin.params import resolve_params


def test_expr_accepts_numbers_and_expressions_in_its_names_only():
    sizes = Expr("N", "d", "n", shown="N, d, n (= n_{L-1})")
    assert sizes("N/2") is None and sizes(3.0) is None and sizes("1") is None
    assert sizes("q * N") == "uses q; allowed: N, d, n (= n_{L-1})"
    assert "not allowed" in sizes("N.real")
    assert sizes.value("N/2", {"N": 10, "d": 3, "n": 4}) == 5
    assert Expr("N", "d", empty=True)("") is None
    assert Expr("N", "d")("") is not None  # empty only when allowed


def test_expr_param_declares_a_checked_parameter():
    param = Expr("N").param("C", "1", "a constant")
    assert param.type == (str, float) and param.default == "1"
    assert resolve_params([param], {"C": "2*N"}) == {"C": "2*N"}
    with pytest.raises(SpecError, match="uses M; allowed: N"):
        resolve_params([param], {"C": "M"})


@pytest.mark.parametrize("value, problem", [
    (3, None), ("2*d", None), ("floor(d/2)", None),
    (0, "0 is not >= 1"), (True, "is not an integer or an expression in d"),
    ("2*n", "only d is allowed"), ("d.real", "not allowed"),
])
def test_width_problem(value, problem):
    found = Width.problem(value)
    assert (found is None) if problem is None else (problem in found)


def test_width_params_and_resolution():
    one = Width.param("width", "d", "a width", min=1)
    many = Width.param("widths", ["d", "d"], "widths", many=True, min=1)
    assert one.type == (int, str) and many.type is list and many.item_type == (int, str)
    assert resolve_params([many], {"widths": [4, "2*d"]}) == {"widths": [4, "2*d"]}
    with pytest.raises(SpecError, match=r"item 1: expression 'q' uses q"):
        resolve_params([many], {"widths": [4, "q"]})
    assert Width.resolve("floor(d/2)", 9, "k") == 4 and Width.resolve(7, 9, "k") == 7
    with pytest.raises(SpecError, match="a width must be an integer >= 1") as info:
        Width.resolve("d - 10", 5, "architecture.fc.widths[0]")
    assert info.value.key == "architecture.fc.widths[0]"


def test_hidden_widths_resolved_names_the_architecture_parameter():
    class Arch:
        def __init__(self, **config):
            self.config = config

    shapes = [(6, 3), (4, 6), (1, 4)]
    assert hidden_widths_resolved(Arch(widths=["d", 4]), shapes) == {"architecture.widths": [6, 4]}
    assert hidden_widths_resolved(Arch(width="2*d"), shapes) == {"hidden_widths": [6, 4],
                                                                   "architecture.width": 6}
    assert hidden_widths_resolved(Arch(), shapes) == {"hidden_widths": [6, 4]}

"""Parameter declarations and validation (harness.plugin.params)."""
import pytest

from harness.errors import SpecError
from harness.plugin.params import REQUIRED, Param, resolve_params


def test_types_and_coercion():
    assert Param("x", float).validate(3) == 3.0 and isinstance(Param("x", float).validate(3), float)
    assert Param("x", (int, str)).validate("d") == "d"
    assert Param("x", (int, float)).validate(3) == 3 and isinstance(Param("x", (int, float)).validate(3), int)
    with pytest.raises(SpecError, match="wrong type bool"):
        Param("x", int).validate(True)
    with pytest.raises(SpecError, match="wrong type float"):
        Param("x", int).validate(2.5)
    with pytest.raises(SpecError, match="NaN is not allowed"):
        Param("x", float).validate(float("nan"))


def test_lists_ranges_choices_and_checks():
    p = Param("w", list, item_type=int, min=1, min_length=1)
    assert p.validate([1, 2]) == [1, 2]
    with pytest.raises(SpecError, match=r"w\[1\] = 0: out of range"):
        p.validate([1, 0])
    with pytest.raises(SpecError, match="at least 1"):
        p.validate([])
    c = Param("m", str, choices=("relu", "tanh"))
    with pytest.raises(SpecError, match="did you mean 'relu'"):
        c.validate("rlu")
    even = Param("q", int, check=lambda v: None if v % 2 == 0 else "must be even")
    with pytest.raises(SpecError, match="q = 3: must be even"):
        even.validate(3)


def test_resolve_params_defaults_unknown_and_missing():
    decl = (Param("a", int), Param("b", float, 0.5), Param("c", str, None))
    assert resolve_params(decl, {"a": 1}) == {"a": 1, "b": 0.5, "c": None}
    with pytest.raises(SpecError, match="x.aa = 1: unknown parameter .*did you mean 'a'"):
        resolve_params(decl, {"a": 1, "aa": 1}, prefix="x.")
    with pytest.raises(SpecError, match="x.a: missing required parameter"):
        resolve_params(decl, {}, prefix="x.")
    assert Param("a", int).required and Param("a", int).default is REQUIRED
    assert Param("b", float, 0.5, min=0).describe()["min"] == 0


def test_infinite_numbers_are_refused_unless_allowed():
    import math

    with pytest.raises(SpecError, match="t_max = inf: not a finite number"):
        Param("t_max", float, 1.0).validate(math.inf, "f.toml", "t_max")
    with pytest.raises(SpecError, match="not a finite number"):
        Param("xs", list, item_type=float).validate([1.0, -math.inf], "f.toml", "xs")
    assert Param("limit", float, 1.0, finite=False).validate(math.inf) == math.inf

"""Safe expressions (harness.expressions)."""
import math

import pytest

from harness.expressions import ExpressionError, check, evaluate, names_in


@pytest.mark.parametrize("text, env, expected", [
    ("floor(sqrt(1000 * i))", {"i": 955}, 977),
    ("floor(sqrt(1000 * i))", {"i": 5}, 70),
    ("[d, 2 * d]", {"d": 3}, [3, 6]),
    ("-x ** 2 + 1", {"x": 3}, -8),
    ("a if a > b else b", {"a": 2, "b": 5}, 5),
    ("int(ratio * m)", {"ratio": 0.5, "m": 7}, 3),
    ("log10(n) // 1", {"n": 1000}, 3.0),
])
def test_evaluate(text, env, expected):
    assert evaluate(text, env) == expected


def test_names_in():
    assert names_in("floor(sqrt(1000 * i)) + max(d, k)") == {"i", "d", "k"}


@pytest.mark.parametrize("text", ["__import__('os')", "x.real", "x[0]", "'a'", "lambda: 1", "open('f')",
                                  "sqrt(x=1)", "1 +"])
def test_rejects(text):
    with pytest.raises(ExpressionError):
        check(text)
    with pytest.raises(ExpressionError):
        evaluate(text, {"x": [1]})


def test_errors_name_unknown_variable_and_math_errors():
    with pytest.raises(ExpressionError, match="unknown name 'q'"):
        evaluate("q + 1", {"d": 1})
    with pytest.raises(ExpressionError, match="math domain error"):
        evaluate("sqrt(-1)", {})
    assert evaluate("exp(0)", {}) == math.exp(0)

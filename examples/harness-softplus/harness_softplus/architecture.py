"""The pyramid architecture: hidden widths that halve from layer to layer.

With ``width = w`` and ``depth = k`` hidden layers the network is
``d -> w -> w/2 -> ... -> w/2^(k-1) -> 1`` (each width rounded down, at least 1), bias-free,
with the shapes ``[(n_1, d), (n_2, n_1), ..., (1, n_k)]`` every harness architecture uses.
``width`` is an integer or an expression in the input dimension ``d`` (``"4*d"``).
"""
from __future__ import annotations

from harness import Architecture, Param, SpecError
from harness.plugin.expressions import ExpressionError, evaluate, names_in


def _width_problem(value) -> str | None:
    """Why ``value`` is not a width (an int >= 1 or an expression in d), or ``None``."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        return f"{value!r} is not an integer or an expression in d"
    if isinstance(value, int):
        return None if value >= 1 else f"{value} is not >= 1"
    try:
        unknown = names_in(value) - {"d"}
    except ExpressionError as exc:
        return str(exc)
    return f"expression {value!r} uses {', '.join(sorted(unknown))}; only d is allowed" if unknown else None


class Pyramid(Architecture):
    name = "pyramid"
    help = "fully-connected network whose hidden widths halve: width, width/2, ... (depth hidden layers)"
    params = (
        Param("width", (int, str), "4*d", "first hidden width: an int >= 1 or an expression in d",
              check=_width_problem),
        Param("depth", int, 3, "number of hidden layers", min=1, max=32),
        Param("train_output", bool, True, "whether the output layer is trained"),
    )

    def first_width(self, d: int) -> int:
        value = self.width
        if isinstance(value, str):
            try:
                value = evaluate(value, {"d": int(d)})
            except ExpressionError as exc:
                raise SpecError(None, "architecture.pyramid.width", self.width, str(exc)) from None
            if isinstance(value, float) and value.is_integer():
                value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise SpecError(None, "architecture.pyramid.width", self.width,
                            f"gives {value!r} at d = {d}; a width must be an integer >= 1")
        return value

    def hidden_widths(self, d: int) -> list[int]:
        w = self.first_width(d)
        return [max(1, w >> layer) for layer in range(self.depth)]

    def layer_shapes(self, d):
        sizes = [int(d)] + self.hidden_widths(d) + [1]
        return [(sizes[i + 1], sizes[i]) for i in range(len(sizes) - 1)]

    def trainable(self, d):
        return [True] * self.depth + [bool(self.train_output)]

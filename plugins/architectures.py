"""Built-in architectures: fully-connected and residual networks.

Widths are integers or arithmetic expressions in the input dimension ``d`` (``"d"``,
``"2*d"``, ``"floor(d/2)"``; see :mod:`harness.plugin.expressions`). Expressions are parsed and their
names checked when the component is built; they are evaluated by ``layer_shapes(d)``, which
requires each to give an integer >= 1.

- ``fc``: ``x -> W_1 -> phi -> ... -> W_L``, shapes ``[(n_1, d), ..., (1, n_{L-1})]``; with
  ``bias = true`` every layer (the output included) has a bias ``b_l`` (``(n_l, 1)``);
- ``residual``: ``h_1 = phi(W_1 x + b_1)``, ``h_{k+1} = h_k + alpha phi(W_{k+1} h_k + b_{k+1})``
  for ``k = 1..blocks``, ``f = W_out h + b_out`` (width ``n`` an expression in d; biases with
  ``bias = true``): weights ``[(n, d), (n, n) x blocks, (1, n)]``;
- ``two_layer``: ``h(x) = sum_i u_i phi(<w_i, x>)``, shapes ``[(q, d), (1, q)]``, output weights
  frozen by default (Daniely's setting).
"""
from __future__ import annotations

from harness import Architecture, Param, SpecError, hookimpl
from harness.plugin.expressions import ExpressionError, evaluate, names_in

WIDTH_VARIABLES = ("d",)
TRIAL_D = 100
"""The input dimension at which width expressions are test-evaluated when a component is built."""


def width_problem(value) -> str | None:
    """Why ``value`` (an int or an expression in d) is not a valid width, or ``None``."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        return f"{value!r} is not an integer or an expression in d"
    if isinstance(value, int):
        return None if value >= 1 else f"{value} is not >= 1"
    try:
        unknown = names_in(value) - set(WIDTH_VARIABLES)
    except ExpressionError as exc:
        return str(exc)
    if unknown:
        return f"expression {value!r} uses {', '.join(sorted(unknown))}; only d is allowed"
    try:  # catches what parses but cannot be evaluated (unknown functions, attributes, ...)
        trial = evaluate(value, {"d": TRIAL_D})
    except ExpressionError as exc:
        return str(exc)
    if isinstance(trial, bool) or not isinstance(trial, (int, float)):
        return f"expression {value!r} does not give a number"
    return None


def check_widths(values) -> str | None:
    """Param check for a list of widths: the first problem, naming the item index."""
    for i, value in enumerate(values):
        problem = width_problem(value)
        if problem:
            return f"item {i}: {problem}"
    return None


def resolve_width(value, d: int, key: str) -> int:
    """The width ``value`` at input dimension ``d``; a :class:`SpecError` naming ``key`` if it
    is not an integer >= 1 there."""
    if isinstance(value, int):
        width = value
    else:
        try:
            width = evaluate(value, {"d": int(d)})
        except ExpressionError as exc:
            raise SpecError(None, key, value, str(exc)) from None
        if isinstance(width, float) and width.is_integer():
            width = int(width)
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise SpecError(None, key, value, f"gives {width!r} at d = {d}; a width must be an integer >= 1")
    return width


class FullyConnected(Architecture):
    name = "fc"
    help = "fully-connected network; widths = hidden widths (ints or expressions in d), optional biases"
    params = (
        Param("widths", list, ["d", "d"], "hidden widths n_1..n_{L-1}: ints >= 1 or expressions in d",
              item_type=(int, str), min=1, check=check_widths),
        Param("train_output", bool, True, "whether the output layer is trained"),
        Param("bias", bool, False, "a bias in every layer (the output layer included)"),
    )

    def hidden_widths(self, d: int) -> list[int]:
        return [resolve_width(w, d, f"architecture.{self.name}.widths[{i}]")
                for i, w in enumerate(self.widths)]

    def network(self, d):
        from harness.engine.network import Network

        sizes = [int(d)] + self.hidden_widths(d) + [1]
        shapes = [(sizes[l + 1], sizes[l]) for l in range(len(sizes) - 1)]
        return Network.chain(shapes, [True] * len(self.widths) + [bool(self.train_output)],
                             bias=bool(self.bias))


class Residual(Architecture):
    name = "residual"
    help = ("residual MLP: h_1 = phi(W_1 x + b_1), h <- h + alpha phi(W h + b) per block, "
            "f = W_out h + b_out")
    params = (
        Param("width", (int, str), "d", "width n of every hidden state: an int >= 1 or an expression in d",
              check=width_problem),
        Param("blocks", int, 2, "number of residual blocks h <- h + alpha phi(W h + b)", min=0),
        Param("alpha", float, 1.0, "scale of each block's branch",
              check=lambda a: None if a == a and abs(a) != float("inf") else "must be finite"),
        Param("bias", bool, False, "a bias in every layer (the output layer included)"),
        Param("train_output", bool, True, "whether the output layer is trained"),
    )

    def network(self, d):
        from harness.engine.network import Dense, Network

        n = resolve_width(self.width, d, f"architecture.{self.name}.width")
        layers = [Dense(n, int(d), bias=self.bias)]
        layers += [Dense(n, n, bias=self.bias, residual=True, alpha=float(self.alpha))
                   for _ in range(int(self.blocks))]
        layers.append(Dense(1, n, bias=self.bias, trainable=bool(self.train_output)))
        return Network(layers)


class TwoLayer(Architecture):
    name = "two_layer"
    help = "h(x) = sum_i u_i phi(<w_i, x>) with q hidden units; output weights u frozen by default"
    params = (
        Param("q", (int, str), 16, "number of hidden units: an int >= 1 or an expression in d",
              min=1, check=width_problem),
        Param("train_output", bool, False, "whether the output weights u are trained"),
    )

    def layer_shapes(self, d):
        q = resolve_width(self.q, d, f"architecture.{self.name}.q")
        return [(q, int(d)), (1, q)]

    def trainable(self, d):
        return [True, bool(self.train_output)]


ARCHITECTURES = (FullyConnected, TwoLayer, Residual)


@hookimpl
def harness_register_architectures(registry):
    for component in ARCHITECTURES:
        registry.add(component)

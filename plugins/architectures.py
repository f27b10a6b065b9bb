"""Built-in architectures: fully-connected and residual networks.

Widths are integers or arithmetic expressions in the input dimension ``d`` (``"d"``,
``"2*d"``, ``"floor(d/2)"``; see :mod:`harness.plugin.expressions`). Expressions are parsed and their
names checked when the component is built; they are evaluated by ``layer_shapes(d)``, which
requires each to give an integer >= 1 (:class:`harness.plugin.Width`).

- ``fc``: ``x -> W_1 -> phi -> ... -> W_L``, shapes ``[(n_1, d), ..., (1, n_{L-1})]``; with
  ``bias = true`` every layer (the output included) has a bias ``b_l`` (``(n_l, 1)``);
- ``residual``: ``h_1 = phi(W_1 x + b_1)``, ``h_{k+1} = h_k + alpha phi(W_{k+1} h_k + b_{k+1})``
  for ``k = 1..blocks``, ``f = W_out h + b_out`` (width ``n`` an expression in d; biases with
  ``bias = true``): weights ``[(n, d), (n, n) x blocks, (1, n)]``;
- ``two_layer``: ``h(x) = sum_i u_i phi(<w_i, x>)``, shapes ``[(q, d), (1, q)]``, output weights
  frozen by default (Daniely's setting).
"""
from __future__ import annotations

from harness.plugin import Architecture, Param, Width, hookimpl


class FullyConnected(Architecture):
    name = "fc"
    help = "fully-connected network; widths = hidden widths (ints or expressions in d), optional biases"
    params = (
        Width.param("widths", ["d", "d"], "hidden widths n_1..n_{L-1}: ints >= 1 or expressions in d",
                    many=True, min=1),
        Param("train_output", bool, True, "whether the output layer is trained"),
        Param("bias", bool, False, "a bias in every layer (the output layer included)"),
    )

    def hidden_widths(self, d: int) -> list[int]:
        return [Width.resolve(w, d, f"architecture.{self.name}.widths[{i}]")
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
        Width.param("width", "d", "width n of every hidden state: an int >= 1 or an expression in d"),
        Param("blocks", int, 2, "number of residual blocks h <- h + alpha phi(W h + b)", min=0),
        Param("alpha", float, 1.0, "scale of each block's branch",
              check=lambda a: None if a == a and abs(a) != float("inf") else "must be finite"),
        Param("bias", bool, False, "a bias in every layer (the output layer included)"),
        Param("train_output", bool, True, "whether the output layer is trained"),
    )

    def network(self, d):
        from harness.engine.network import Dense, Network

        n = Width.resolve(self.width, d, f"architecture.{self.name}.width")
        layers = [Dense(n, int(d), bias=self.bias)]
        layers += [Dense(n, n, bias=self.bias, residual=True, alpha=float(self.alpha))
                   for _ in range(int(self.blocks))]
        layers.append(Dense(1, n, bias=self.bias, trainable=bool(self.train_output)))
        return Network(layers)


class TwoLayer(Architecture):
    name = "two_layer"
    help = "h(x) = sum_i u_i phi(<w_i, x>) with q hidden units; output weights u frozen by default"
    params = (
        Width.param("q", 16, "number of hidden units: an int >= 1 or an expression in d", min=1),
        Param("train_output", bool, False, "whether the output weights u are trained"),
    )

    def layer_shapes(self, d):
        q = Width.resolve(self.q, d, f"architecture.{self.name}.q")
        return [(q, int(d)), (1, q)]

    def trainable(self, d):
        return [True, bool(self.train_output)]


ARCHITECTURES = (FullyConnected, TwoLayer, Residual)


@hookimpl
def harness_register_architectures(registry):
    for component in ARCHITECTURES:
        registry.add(component)

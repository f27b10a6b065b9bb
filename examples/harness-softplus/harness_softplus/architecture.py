"""The pyramid architecture: hidden widths that halve from layer to layer.

With ``width = w`` and ``depth = k`` hidden layers the network is
``d -> w -> w/2 -> ... -> w/2^(k-1) -> 1`` (each width rounded down, at least 1), bias-free,
with the shapes ``[(n_1, d), (n_2, n_1), ..., (1, n_k)]`` every harness architecture uses.
``width`` is an integer or an expression in the input dimension ``d`` (``"4*d"``), declared and
resolved by the shared :class:`harness.plugin.Width`.
"""
from __future__ import annotations

from harness.plugin import Architecture, Param, Width


class Pyramid(Architecture):
    name = "pyramid"
    help = "fully-connected network whose hidden widths halve: width, width/2, ... (depth hidden layers)"
    params = (
        Width.param("width", "4*d", "first hidden width: an int >= 1 or an expression in d"),
        Param("depth", int, 3, "number of hidden layers", min=1, max=32),
        Param("train_output", bool, True, "whether the output layer is trained"),
    )

    def first_width(self, d: int) -> int:
        return Width.resolve(self.width, d, "architecture.pyramid.width")

    def hidden_widths(self, d: int) -> list[int]:
        w = self.first_width(d)
        return [max(1, w >> layer) for layer in range(self.depth)]

    def layer_shapes(self, d):
        sizes = [int(d)] + self.hidden_widths(d) + [1]
        return [(sizes[i + 1], sizes[i]) for i in range(len(sizes) - 1)]

    def trainable(self, d):
        return [True] * self.depth + [bool(self.train_output)]

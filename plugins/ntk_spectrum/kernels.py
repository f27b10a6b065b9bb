"""Kernel names of the ``ntk_spectrum`` experiment: ``full`` (every trainable parameter),
``W<l>`` (the weight of layer ``l``, 1-based) and ``b<l>`` (its bias); their check when the
benchmark file loads, the layers and parameters each sums, and their natural order.
"""
from __future__ import annotations

import re
from typing import Sequence

_KERNEL = re.compile(r"^(full|[Wb][1-9][0-9]*)$")
"""A kernel name: ``full``, ``W<l>`` or ``b<l>``."""


def _check_kernels(values) -> str | None:
    for i, v in enumerate(values):
        if not isinstance(v, str) or not _KERNEL.match(v):
            return f"item {i}: {v!r} is not 'full', 'W<layer>' (W1, W2, ...) or 'b<layer>' (b1, ...)"
    if len(set(values)) != len(values):
        return "kernels are repeated"
    return None


def kernel_layers(kernels: Sequence[str], trainable: Sequence[bool]) -> dict[str, list[int]]:
    """The 1-based layers summed by each kernel name: ``full`` = every trainable layer,
    ``W<l>`` = layer ``l``. Raises ValueError for a layer the network does not have."""
    L = len(trainable)
    out = {}
    for k in kernels:
        if k == "full":
            layers = [l for l in range(1, L + 1) if trainable[l - 1]]
            if not layers:
                raise ValueError("the network has no trainable layer")
        else:
            l = int(k[1:])
            if not 1 <= l <= L:
                raise ValueError(f"kernel {k!r}: the network has layers W1..W{L}")
            layers = [l]
        out[k] = layers
    return out


def kernel_params(kernels: Sequence[str], model) -> dict[str, list[int]]:
    """The 0-based parameter indices summed by each kernel name of ``model`` (an
    ``Architecture.model(d)``): ``full`` = every trainable parameter (weights and biases),
    ``W<l>`` = the weight of layer ``l``, ``b<l>`` = its bias. Raises ValueError for a
    parameter the network does not have."""
    names = model.parameter_names()
    trainable = model.parameter_trainable()
    out = {}
    for k in kernels:
        if k == "full":
            ps = [p for p, t in enumerate(trainable) if t]
            if not ps:
                raise ValueError("the network has no trainable parameter")
        elif k in names:
            ps = [names.index(k)]
        else:
            L = len([n for n in names if n.startswith("W")])
            what = f"the network has layers W1..W{L}"
            if len(names) > L or k.startswith("b"):
                what += f" (parameters: {', '.join(names)})"
            raise ValueError(f"kernel {k!r}: {what}")
        out[k] = ps
    return out


def _parameter_layers(model) -> list[int]:
    """The 1-based layer of each parameter (a generic model: parameter i is 'layer' i + 1)."""
    layers = getattr(model, "parameter_layers", None)
    return layers() if layers is not None else list(range(1, model.n_params + 1))


def kernel_order(kernels) -> list[str]:
    """Natural order of kernel names: ``full`` first, then ``W1, W2, ..., W10`` by layer number
    (anything else after them, alphabetically)."""
    def key(k: str):
        if k == "full":
            return (0, 0, k)
        if _KERNEL.match(k):
            return (1, int(k[1:]), k)
        return (2, 0, k)

    return sorted(kernels, key=key)

"""Forward pass and back-propagated signals of a bias-free fully-connected network.

Notation (see ``harness.plugin.components``): ``F_0 = X`` (N, d); for l < L, ``G_l = F_{l-1} W_l^T``
and ``F_l = phi(G_l)`` (N, n_l); the output is ``f = F_{L-1} W_L^T`` (N,). The back-propagated
signals are ``B_L = 1`` (N, 1) and ``B_l = phi'(G_l) * (B_{l+1} W_{l+1})`` (N, n_l), so that
``d f_i / d W_l = B_l[i]^T F_{l-1}[i]`` (an outer product of shape (n_l, n_{l-1})).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np


@dataclass
class ForwardPass:
    """Activations of one forward pass: ``F = [F_0, ..., F_{L-1}]``, ``G = [G_1, ..., G_{L-1}]``
    (pre-activations of the hidden layers) and ``output`` (N,)."""

    F: list[np.ndarray]
    G: list[np.ndarray]
    output: np.ndarray


def forward(weights: Sequence[np.ndarray], X: np.ndarray, activation) -> ForwardPass:
    """Run the network ``weights`` on ``X`` with ``activation`` (an Activation component)."""
    F = [X]
    G = []
    for W in weights[:-1]:
        g = F[-1] @ W.T
        G.append(g)
        F.append(activation.phi(g))
    output = (F[-1] @ weights[-1].T).reshape(-1)
    return ForwardPass(F, G, output)


def backward_signals(weights: Sequence[np.ndarray], fp: ForwardPass, activation) -> list[np.ndarray]:
    """The signals ``[B_1, ..., B_L]`` of :func:`forward`'s pass ``fp`` (``B_L`` is all ones)."""
    N = fp.output.shape[0]
    B = [np.ones((N, 1), dtype=fp.output.dtype)]
    for l in range(len(weights) - 1, 0, -1):  # B_l from B_{l+1} and W_{l+1} (0-based: weights[l])
        B.append(activation.dphi(fp.G[l - 1]) * (B[-1] @ weights[l]))
    B.reverse()
    return B


def weight_gradients(weights: Sequence[np.ndarray], fp: ForwardPass, B: Sequence[np.ndarray],
                     r: np.ndarray, trainable: Sequence[bool] | None = None) -> list[np.ndarray | None]:
    """Gradient of ``sum_i r_i f_i`` in each weight matrix: ``(B_l * r)^T F_{l-1}``.

    With ``r = dLoss/df`` this is the loss gradient; frozen layers get ``None``.
    """
    grads: list[np.ndarray | None] = []
    for l, W in enumerate(weights):
        if trainable is not None and not trainable[l]:
            grads.append(None)
            continue
        grads.append((B[l] * r[:, None]).T @ fp.F[l])
    return grads


# ----------------------------------------------------------------------------------------------
# Network descriptions: dense layers with optional biases, per-layer activations and residual
# blocks (issue 15)


@dataclass(frozen=True)
class Dense:
    """One dense layer ``g = h W^T + b^T`` of a :class:`Network`.

    ``W`` has shape ``(fan_out, fan_in)``; with ``bias`` the layer also has ``b`` of shape
    ``(fan_out, 1)`` (the column of a constant input 1, so every parameter is a matrix).
    A hidden layer maps its input state ``h`` to ``phi(g)``, or, when ``residual``, to
    ``h + alpha * phi(g)`` (then ``fan_out == fan_in``); the last layer of a network is the
    linear output ``f = g`` (``fan_out == 1``). ``activation`` is an Activation component for
    this layer, or ``None`` for the network's activation (the cell's activation slot).
    ``trainable = False`` freezes the layer's weight and bias.
    """

    fan_out: int
    fan_in: int
    bias: bool = False
    activation: Any = None
    residual: bool = False
    alpha: float = 1.0
    trainable: bool = True


class Network:
    """A feed-forward network the structured engine understands: a sequence of :class:`Dense`
    layers ``h_0 = x``, ``h_l = phi_l(W_l h_{l-1} + b_l)`` or ``h_{l-1} + alpha_l phi_l(...)``
    (residual), output ``f = W_L h_{L-1} + b_L``.

    Its parameters are a flat list in forward order, ``[W_1, (b_1), W_2, (b_2), ..., W_L,
    (b_L)]`` (a bias only where the layer has one), named ``W1, b1, W2, ...``; a bias-free chain
    without residual blocks or per-layer activations (:attr:`plain`) has exactly the weight list
    of the original bias-free engine. For every dense layer the NTK block is
    ``K_W = (H_{l-1} H_{l-1}^T) o (B_l B_l^T)`` and ``K_b = B_l B_l^T`` with ``B_l = df/dg_l``.
    """

    def __init__(self, layers: Sequence[Dense]) -> None:
        self.layers = tuple(layers)
        problem = self.problem()
        if problem:
            raise ValueError(problem)
        self.weight_index: list[int] = []
        self.bias_index: list[int | None] = []
        k = 0
        for layer in self.layers:
            self.weight_index.append(k)
            k += 1
            self.bias_index.append(k if layer.bias else None)
            k += bool(layer.bias)
        self.n_params = k

    @classmethod
    def chain(cls, shapes: Sequence[tuple[int, int]], trainable: Sequence[bool] | None = None,
              bias: bool = False) -> "Network":
        """The plain chain of ``shapes`` ``[(n_1, d), ..., (1, n_{L-1})]`` (biases optional)."""
        trainable = [True] * len(shapes) if trainable is None else list(trainable)
        if len(trainable) != len(shapes):
            raise ValueError(f"trainable has {len(trainable)} flags for {len(shapes)} layers")
        return cls([Dense(int(n), int(m), bias=bias, trainable=bool(t))
                    for (n, m), t in zip(shapes, trainable)])

    def problem(self) -> str | None:
        """Why the layers do not make a network, or ``None``."""
        if not self.layers:
            return "a network needs at least one layer"
        for l, layer in enumerate(self.layers, start=1):
            if not isinstance(layer, Dense):
                return f"layer {l} is {type(layer).__name__}, expected harness.engine.network.Dense"
            for key in ("fan_out", "fan_in"):
                v = getattr(layer, key)
                if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                    return f"layer {l}: {key} = {v!r} is not an integer >= 1"
            if l > 1 and layer.fan_in != self.layers[l - 2].fan_out:
                return (f"layer {l}: fan_in {layer.fan_in} != fan_out {self.layers[l - 2].fan_out} "
                        f"of layer {l - 1}")
            last = l == len(self.layers)
            if layer.residual:
                if last:
                    return "the output layer cannot be residual"
                if layer.fan_out != layer.fan_in:
                    return (f"layer {l}: a residual block needs fan_out == fan_in, got "
                            f"({layer.fan_out}, {layer.fan_in})")
                if not np.isfinite(layer.alpha):
                    return f"layer {l}: alpha = {layer.alpha!r} is not finite"
            if last and layer.activation is not None:
                return "the output layer is linear: it takes no activation"
            if layer.activation is not None and not all(
                    callable(getattr(layer.activation, a, None)) for a in ("phi", "dphi")):
                return f"layer {l}: activation {layer.activation!r} has no phi / dphi"
        if self.layers[-1].fan_out != 1:
            return f"the output layer must have one unit, got fan_out {self.layers[-1].fan_out}"
        return None

    # --- shape bookkeeping ----------------------------------------------------------------
    @property
    def L(self) -> int:
        return len(self.layers)

    @property
    def d(self) -> int:
        return self.layers[0].fan_in

    @property
    def plain(self) -> bool:
        """A bias-free chain with the network's activation everywhere: the original engine."""
        return not any(l.bias or l.residual or l.activation is not None for l in self.layers)

    def layer_shapes(self) -> list[tuple[int, int]]:
        return [(l.fan_out, l.fan_in) for l in self.layers]

    def trainable_layers(self) -> list[bool]:
        return [bool(l.trainable) for l in self.layers]

    def parameter_shapes(self) -> list[tuple[int, int]]:
        out = []
        for layer in self.layers:
            out.append((layer.fan_out, layer.fan_in))
            if layer.bias:
                out.append((layer.fan_out, 1))
        return out

    def parameter_names(self) -> list[str]:
        out = []
        for l, layer in enumerate(self.layers, start=1):
            out.append(f"W{l}")
            if layer.bias:
                out.append(f"b{l}")
        return out

    def parameter_layers(self) -> list[int]:
        """The 1-based layer of each parameter."""
        out = []
        for l, layer in enumerate(self.layers, start=1):
            out += [l] * (2 if layer.bias else 1)
        return out

    def parameter_trainable(self) -> list[bool]:
        return [self.layers[l - 1].trainable for l in self.parameter_layers()]

    def param_count(self, trainable_only: bool = True) -> int:
        return int(sum(n * m for (n, m), t in zip(self.parameter_shapes(), self.parameter_trainable())
                       if t or not trainable_only))

    def activations(self, default) -> list:
        """The activation of each hidden layer (``default`` where the layer names none; when
        ``default`` is traced by the generic path, the layers' own activations are too)."""
        from .generic import _TracedActivation, autograd_activation

        traced = isinstance(default, _TracedActivation)
        return [default if l.activation is None else
                (autograd_activation(l.activation) if traced else l.activation) for l in self.layers[:-1]]

    def describe(self) -> str:
        parts = []
        for l, layer in enumerate(self.layers, start=1):
            text = f"W{l}{(layer.fan_out, layer.fan_in)}" + ("+b" if layer.bias else "")
            if layer.residual:
                text += f" residual(alpha={layer.alpha:g})"
            if layer.activation is not None:
                text += f" [{getattr(layer.activation, 'name', type(layer.activation).__name__)}]"
            parts.append(text)
        return " -> ".join(parts)

    def check_parameters(self, params: Sequence[np.ndarray]) -> None:
        shapes = self.parameter_shapes()
        if len(params) != len(shapes):
            raise ValueError(f"the network has {len(shapes)} parameters ({', '.join(self.parameter_names())}), "
                             f"got {len(params)} arrays")
        for name, shape, p in zip(self.parameter_names(), shapes, params):
            if tuple(np.shape(p)[-2:]) != shape:
                raise ValueError(f"{name} has shape {np.shape(p)}, expected {shape}")

    def split(self, params: Sequence[np.ndarray]) -> tuple[list, list]:
        """``(weights, biases)`` per layer (``None`` where a layer has no bias)."""
        return ([params[i] for i in self.weight_index],
                [None if i is None else params[i] for i in self.bias_index])

    # --- reference passes (plain NumPy; the engines in ntk.py / structured.py are the fast ones)
    def forward_pass(self, params: Sequence[np.ndarray], X: np.ndarray, activation) -> "NetworkPass":
        """``H = [h_0 = X, h_1, ..., h_{L-1}]``, ``G = [g_1, ..., g_{L-1}]`` and the output."""
        Ws, bs = self.split(params)
        acts = self.activations(activation)
        H, G = [X], []
        for l, layer in enumerate(self.layers[:-1]):
            g = H[-1] @ Ws[l].T
            if bs[l] is not None:
                g = g + bs[l][:, 0]
            G.append(g)
            a = acts[l].phi(g)
            H.append(H[-1] + layer.alpha * a if layer.residual else a)
        out = H[-1] @ Ws[-1].T
        if bs[-1] is not None:
            out = out + bs[-1][:, 0]
        return NetworkPass(H, G, out.reshape(-1))

    def forward(self, params: Sequence[np.ndarray], X: np.ndarray, activation) -> np.ndarray:
        return self.forward_pass(params, X, activation).output

    def signals(self, params: Sequence[np.ndarray], fp: "NetworkPass", activation) -> list[np.ndarray]:
        """``[B_1, ..., B_L]``, ``B_l = df/dg_l`` (N, n_l); ``B_L`` is all ones (N, 1).

        ``S_{L-1} = 1 w_L``; ``B_l = S_l o phi_l'(g_l)`` (times ``alpha_l`` in a residual block);
        ``S_{l-1} = B_l W_l`` (plus ``S_l`` when layer ``l`` is residual)."""
        Ws, _ = self.split(params)
        acts = self.activations(activation)
        N = fp.output.shape[0]
        B = [np.ones((N, 1), dtype=fp.output.dtype)]
        S = B[0] @ Ws[-1]
        for l in range(self.L - 2, -1, -1):  # 0-based hidden layer l
            layer = self.layers[l]
            scale = layer.alpha if layer.residual else 1.0
            b = scale * acts[l].dphi(fp.G[l]) * S
            B.append(b)
            if l > 0:
                S = b @ Ws[l] + (S if layer.residual else 0.0)
        B.reverse()
        return B

    def gradients(self, params: Sequence[np.ndarray], fp: "NetworkPass", B: Sequence[np.ndarray],
                  r: np.ndarray, trainable: Sequence[bool] | None = None) -> list[np.ndarray | None]:
        """Gradient of ``sum_i r_i f_i`` in each parameter (``None`` where not trainable):
        ``(B_l o r)^T H_{l-1}`` for ``W_l`` and ``(B_l o r)^T 1`` for ``b_l``."""
        trainable = self.parameter_trainable() if trainable is None else list(trainable)
        grads: list[np.ndarray | None] = []
        for l, layer in enumerate(self.layers):
            D = B[l] * r[:, None]
            for i, is_bias in ((self.weight_index[l], False), (self.bias_index[l], True)):
                if i is None:
                    continue
                if not trainable[i]:
                    grads.append(None)
                elif is_bias:
                    grads.append(D.sum(axis=0).reshape(-1, 1))
                else:
                    grads.append(D.T @ fp.F_in(l))
        return grads


@dataclass
class NetworkPass:
    """Activations of :meth:`Network.forward_pass`: states ``H`` (``H[0] = X``),
    pre-activations ``G`` of the hidden layers and the output (N,)."""

    H: list[np.ndarray]
    G: list[np.ndarray]
    output: np.ndarray

    def F_in(self, l: int) -> np.ndarray:
        """The input of 0-based layer ``l``."""
        return self.H[l]


class _ProbeTanh:
    """tanh with the Activation interface, for consistency probes of architectures."""

    name = "tanh"
    jit_code = None

    def phi(self, x):
        return np.tanh(x)

    def dphi(self, x):
        return 1.0 - np.tanh(x) ** 2

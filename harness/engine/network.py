"""Forward pass and back-propagated signals of a bias-free fully-connected network.

Notation (see ``harness.components``): ``F_0 = X`` (N, d); for l < L, ``G_l = F_{l-1} W_l^T``
and ``F_l = phi(G_l)`` (N, n_l); the output is ``f = F_{L-1} W_L^T`` (N,). The back-propagated
signals are ``B_L = 1`` (N, 1) and ``B_l = phi'(G_l) * (B_{l+1} W_{l+1})`` (N, n_l), so that
``d f_i / d W_l = B_l[i]^T F_{l-1}[i]`` (an outer product of shape (n_l, n_{l-1})).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

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

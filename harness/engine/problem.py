"""The types the engine's training loops hand around: the problem an optimizer prepares on, and
what a loss-and-gradient evaluation returns.

They live in the engine (which imports nothing from the rest of ``harness``), in a module that
imports none of the engine's other modules, so that every evaluator (the CPU engines of
:mod:`harness.engine.gradients`, :mod:`harness.engine.structured`,
:mod:`harness.engine.generic`, a device backend's) returns the same type;
:mod:`harness.plugin.components` re-exports :class:`TrainingProblem` for plugin authors.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class GradientResult:
    """``loss`` (float), ``output`` f (N,) and ``grads``: one array per layer (or parameter),
    shaped like the weights, ``None`` for a frozen one."""

    loss: float
    output: np.ndarray
    grads: list[np.ndarray | None]


@dataclass
class TrainingProblem:
    """What an optimizer may look at before training (data and network at initialisation).

    ``X`` (N, d), ``y`` (N,), ``weights`` ``[W_1 (n_1, d), ..., W_L (1, n_{L-1})]``,
    ``activation`` and ``loss`` the components (any object with the Activation / Loss
    interface of :mod:`harness.plugin.components`), ``trainable`` one flag per layer.
    """

    X: np.ndarray
    y: np.ndarray
    weights: list[np.ndarray]
    activation: Any
    trainable: list[bool]
    loss: Any
    network: Any = None
    """The network ``weights`` belong to when it is not a plain bias-free chain: a
    :class:`~harness.engine.network.Network` (biases, residual blocks; ``weights`` is then its
    parameter list ``[W1, b1, W2, ...]`` and ``trainable`` has one flag per parameter) or a
    :class:`~harness.engine.structured.GenericModel`; ``None`` for a plain chain."""

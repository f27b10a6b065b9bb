"""Optimizer steps over a stack of networks (batched training, :mod:`harness.engine.batched_training`).

An optimizer class may provide ``batch_stepper(optimizers, stacks)`` (a class method) returning
an object with ``step(stacks, grads, mask)`` (update the members whose ``mask`` entry is true,
in place; ``stacks`` and ``grads`` are lists over the layers of arrays with the current member
count as their first axis, ``None`` for a frozen layer) and ``select(keep)`` (keep the state of
these member positions, in this order), or ``None`` when it cannot batch these optimizers.
:func:`make_stepper` uses it only when the class that defines it is the one that defines
``step`` (or a subclass of it): a subclass that changes ``step`` and inherits a fused
``batch_stepper`` would otherwise train another rule in batched mode than alone.

Otherwise :class:`MemberStepper` calls each member's own ``step`` on its slices of the stacks:
correct for any optimizer, only slower. A ``step`` may update the arrays in place
(``W -= lr * g``) or rebind the list's entries (``weights[l] = W - lr * g``): what the list
holds after the step is written back into the stack, as the single-network loop
(:func:`harness.engine.training.train`) keeps whatever its list holds.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

__all__ = ["MemberStepper", "make_stepper"]


class MemberStepper:
    """The fallback stepper: each member's own ``optimizer.step`` on its slices of the stacks."""

    def __init__(self, optimizers: Sequence[Any], stacks: Sequence[np.ndarray]) -> None:
        self.optimizers = list(optimizers)
        self.states = [opt.init_state([W[i] for W in stacks]) for i, opt in enumerate(self.optimizers)]

    def step(self, stacks, grads, mask) -> None:
        for i in np.flatnonzero(mask):
            given = [W[i] for W in stacks]
            weights = list(given)
            self.optimizers[i].step(weights, [None if g is None else g[i] for g in grads], self.states[i])
            for W, before, after in zip(stacks, given, weights):
                if after is not before:  # the step rebound the entry: keep what it holds
                    W[i] = after

    def select(self, keep) -> None:
        self.optimizers = [self.optimizers[i] for i in keep]
        self.states = [self.states[i] for i in keep]


def _defining_class(cls: type, name: str) -> type | None:
    return next((c for c in cls.__mro__ if name in vars(c)), None)


def make_stepper(optimizers: Sequence[Any], stacks: Sequence[np.ndarray]):
    """The optimizer class's ``batch_stepper`` when it has one for its own ``step`` and accepts
    these optimizers, else a :class:`MemberStepper` (see the module docstring)."""
    cls = type(optimizers[0])
    fused, stepping = _defining_class(cls, "batch_stepper"), _defining_class(cls, "step")
    own = fused is not None and (stepping is None or issubclass(fused, stepping))
    stepper = cls.batch_stepper(list(optimizers), stacks) if own else None
    return stepper if stepper is not None else MemberStepper(optimizers, stacks)

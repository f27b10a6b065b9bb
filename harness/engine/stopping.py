"""Stopping rules of the training loop.

A rule sees the training loss once per epoch (``update(epoch, loss)``, epochs counted from 0)
and returns ``True`` to stop; ``reason`` names it in the result row and ``summary()`` gives the
numbers it wants recorded. Rules are stateful: build a fresh one per training run.

- :class:`WindowRule`: the early stopping of Bombari, Amani and Mondelli (2022): the losses are
  summed over consecutive windows of ``window`` epochs (100 in the paper); training stops at the
  end of the first window whose sum exceeds the previous window's. The paper reports the
  window sum divided by 50, i.e. ``2 x`` the window's mean loss; ``summary()`` gives that value
  (``window_sum / (window / 2)``) for the last complete window (the one that triggered the
  stop, or the last one before the epoch budget ran out) as ``window_loss``, and the smallest
  over all windows as ``best_window_loss``.
- :class:`ToleranceRule`: stop once the loss is ``<= tol``.
- :class:`MaxEpochs`: stop after ``max_epochs`` epochs.
- :class:`DivergenceRule`: stop when the loss is not finite or exceeds ``factor`` times the
  first epoch's loss (when that is positive).
"""
from __future__ import annotations

import math


class StoppingRule:
    """Base: ``update(epoch, loss) -> bool`` and ``summary() -> dict``."""

    reason = ""

    def update(self, epoch: int, loss: float) -> bool:
        raise NotImplementedError

    def summary(self) -> dict:
        return {}


class WindowRule(StoppingRule):
    reason = "window"

    def __init__(self, window: int = 100) -> None:
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.window = int(window)
        self.sums: list[float] = []
        self._current = 0.0
        self._count = 0

    def update(self, epoch: int, loss: float) -> bool:
        self._current += loss
        self._count += 1
        if self._count < self.window:
            return False
        self.sums.append(self._current)
        self._current, self._count = 0.0, 0
        return len(self.sums) >= 2 and self.sums[-1] > self.sums[-2]

    def summary(self) -> dict:
        scale = self.window / 2.0
        return {
            "window_loss": self.sums[-1] / scale if self.sums else None,
            "best_window_loss": min(self.sums) / scale if self.sums else None,
            "windows": len(self.sums),
        }


class ToleranceRule(StoppingRule):
    reason = "tolerance"

    def __init__(self, tol: float) -> None:
        self.tol = float(tol)

    def update(self, epoch: int, loss: float) -> bool:
        return loss <= self.tol


class MaxEpochs(StoppingRule):
    reason = "max_epochs"

    def __init__(self, max_epochs: int) -> None:
        if max_epochs < 1:
            raise ValueError(f"max_epochs must be >= 1, got {max_epochs}")
        self.max_epochs = int(max_epochs)

    def update(self, epoch: int, loss: float) -> bool:
        return epoch + 1 >= self.max_epochs


class DivergenceRule(StoppingRule):
    reason = "diverged"

    def __init__(self, factor: float = 1e8) -> None:
        self.factor = float(factor)
        self.first: float | None = None

    def update(self, epoch: int, loss: float) -> bool:
        if not math.isfinite(loss):
            return True
        if self.first is None:
            self.first = loss
        return self.first > 0 and loss > self.factor * self.first

"""Stopping rules of the training loop.

A rule sees the training loss once per epoch (``update(epoch, loss)``, epochs counted from 0)
and returns ``True`` to stop; ``reason`` names it in the result row and ``summary()`` gives the
numbers it wants recorded. Rules are stateful: build a fresh one per training run.

- :class:`WindowRule`: the early stopping of Bombari, Amani and Mondelli (2022): the losses are
  summed over consecutive windows of ``window`` epochs (100 in the paper); training stops at the
  end of the first window whose sum exceeds the previous window's (or is not finite). Window k
  covers epochs ``k * window`` (inclusive) to ``(k + 1) * window`` (exclusive), epochs counted
  from 0. ``summary()`` gives:

  - ``reported_loss``: **the authors' value**, the sum of the last complete window that did
    *not* exceed its predecessor, divided by ``window / 2`` (= 50 for the paper's 100-epoch
    windows, i.e. twice the window's mean loss). At a window stop it is the window *before* the
    one that triggered the stop; with no window stop (epoch budget, tolerance, divergence) it
    is the last complete window (the first window counts: it has no predecessor to exceed; an
    incomplete window at the end is ignored, as is a window whose sum is not finite). ``None``
    when no window qualifies (fewer than ``window`` epochs, or a first window that is not
    finite): there is no value to report, and ``None`` keeps a missing value apart from a
    measured one in the result rows.
  - ``reported_window_start``, ``reported_window_end``: that window's epochs, start inclusive,
    end exclusive (``None`` with ``reported_loss``).
  - ``stop_window_loss``: the window that triggered the stop, sum / (``window`` / 2); it comes
    right after a loss spike and is *not* what the paper reports. ``None`` when the rule did
    not stop training.
  - ``windows``: the number of complete windows.

  Once the rule has fired it stays fired: later ``update`` calls return ``True`` and change
  nothing.

  The window sums accumulate in float64 whatever the training's dtype: each epoch's loss is
  added as a Python float (a float32 training's losses are float32 numbers, their sums are not
  rounded to float32), so ``reported_loss`` carries no float32 rounding beyond the losses'
  own.
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
        self.reported: int | None = None  # index of the window the paper reports
        self.stopped: int | None = None  # index of the window that triggered the stop
        self._current = 0.0
        self._count = 0

    def update(self, epoch: int, loss: float) -> bool:
        if self.stopped is not None:  # the paper's loop ends here: later losses change nothing
            return True
        self._current += float(loss)  # float64, whatever the dtype of the loss
        self._count += 1
        if self._count < self.window:
            return False
        self.sums.append(self._current)
        self._current, self._count = 0.0, 0
        k = len(self.sums) - 1
        total = self.sums[k]
        if math.isfinite(total) and (k == 0 or total <= self.sums[k - 1]):
            self.reported = k
            return False
        self.stopped = k
        return True

    def summary(self) -> dict:
        scale = self.window / 2.0
        k = self.reported
        return {
            "reported_loss": self.sums[k] / scale if k is not None else None,
            "reported_window_start": k * self.window if k is not None else None,
            "reported_window_end": (k + 1) * self.window if k is not None else None,
            "stop_window_loss": self.sums[self.stopped] / scale if self.stopped is not None else None,
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

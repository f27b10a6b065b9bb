"""The training loop: full-batch or mini-batch, with stopping rules and divergence detection.

One epoch is one pass over the N samples: one step in full batch (the optimizer's
``batch_size`` is ``None`` or ``>= N``), ``ceil(N / b)`` steps of at most ``b`` samples in a fresh
random order otherwise. The loss recorded for an epoch is, in full batch, the loss at the
weights *before* that epoch's step (the value the gradient evaluation computes anyway, as a
framework's training loop reports it); in mini-batch, the mean of the batch losses over the
epoch weighted by batch size. After the loop, ``final_loss`` is the full-data loss at the final
weights (one more forward pass).

Precision: training runs in the dtype of ``X`` (float64 or float32): the engine's buffers and
products (float32: SGEMM), the weights (cast to it) and the optimizer's state and steps. Each
epoch's loss is computed in that dtype and recorded as a Python float, so the losses, and the
window sums of :class:`~harness.engine.stopping.WindowRule`, accumulate in float64.

Gradients come from :class:`harness.engine.gradients.GradientEngine`; nothing here knows about
benchmark files or result rows.
"""
from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from .evaluation_cost import engine_flops, one_blas_thread, shapes_of
from .gradients import GradientEngine
from .problem import TrainingProblem
from .stopping import DivergenceRule, MaxEpochs, StoppingRule
from .structured import make_gradient_engine
from .threads import blas_threads


@dataclass
class TrainResult:
    """What one training run produced.

    ``losses`` (epochs,) holds the per-epoch training loss; ``initial_loss`` is the full-data
    loss at the initial weights (``losses[0]`` in full batch); ``stop_reason`` is the ``reason`` of
    the rule that stopped training (``"max_epochs"``, ``"max_steps"``, ``"window"``,
    ``"tolerance"``, ``"diverged"``); ``prepared`` is what ``optimizer.prepare`` returned and
    ``rules`` merges the rules' summaries; ``moved`` says whether any weight differs from its
    initial value (``False`` after steps: the optimizer updated nothing, or every gradient was 0).
    """

    weights: list[np.ndarray]
    losses: np.ndarray
    epochs: int
    steps: int
    stop_reason: str
    initial_loss: float
    final_loss: float
    final_output: np.ndarray
    prepared: dict = field(default_factory=dict)
    rules: dict = field(default_factory=dict)
    seconds: float = 0.0
    moved: bool = True

    @property
    def diverged(self) -> bool:
        return self.stop_reason == "diverged" or not math.isfinite(self.final_loss)

    def curve(self, points: int = 200) -> tuple[list[int], list[float]]:
        """The loss curve subsampled to at most ``points`` epochs (first and last kept;
        non-finite values dropped): ``(epochs, losses)``."""
        return subsample_curve(self.losses, points)


def subsample_curve(values: Sequence[float] | np.ndarray, points: int) -> tuple[list[int], list[float]]:
    """At most ``points`` evenly spaced entries of ``values`` (the first and last included),
    skipping non-finite ones: ``(indices, values)`` as plain Python lists."""
    arr = np.asarray(values, dtype=float)
    n = arr.size
    if n == 0 or points < 1:
        return [], []
    idx = np.unique(np.round(np.linspace(0, n - 1, min(points, n))).astype(int))
    idx = idx[np.isfinite(arr[idx])]
    return idx.tolist(), arr[idx].tolist()


def train(weights: Sequence[np.ndarray], X: np.ndarray, y: np.ndarray, activation, loss, optimizer,
          *, trainable: Sequence[bool] | None = None, max_epochs: int = 1000,
          max_steps: int | None = None, rules: Sequence[StoppingRule] = (),
          rng: np.random.Generator | None = None, divergence_factor: float = 1e8,
          prepared: dict | None = None, backend=None, model=None) -> TrainResult:
    """Train a copy of ``weights`` on ``(X (N, d), y (N,))``.

    ``activation``, ``loss``, ``optimizer`` are components; ``trainable`` one flag per layer
    (frozen layers are not updated); ``rules`` extra stopping rules (fresh instances), checked
    after every epoch with :class:`MaxEpochs` and :class:`DivergenceRule`; ``max_steps``
    (optional) also stops after that many optimizer steps, possibly mid-epoch; ``rng`` shuffles
    the mini-batches (required when the optimizer has a ``batch_size`` smaller than N).
    ``prepared`` skips ``optimizer.prepare`` when the caller has already run it. ``backend`` (a
    Backend component) supplies the loss-and-gradient evaluator; ``None`` uses the CPU engine.
    Weights and optimizer state stay NumPy arrays whatever the backend. ``model`` (optional) is
    the network the parameters ``weights`` belong to: a :class:`~harness.engine.network.Network`
    (biases, residual blocks: :class:`~harness.engine.structured.NetworkGradientEngine`; a plain
    one changes nothing) or a :class:`~harness.engine.structured.GenericModel` (autograd); with
    a model, ``trainable`` has one flag per parameter.
    """
    start = time.perf_counter()
    initial = [np.asarray(W, dtype=X.dtype) for W in weights]  # the start, in the training dtype
    weights = [np.array(W, dtype=X.dtype, copy=True) for W in weights]
    trainable = list(trainable) if trainable is not None else [True] * len(weights)
    N = X.shape[0]
    if prepared is None:
        prepared = optimizer.prepare(TrainingProblem(X, y, weights, activation, trainable, loss,
                                                     network=model)) or {}
    state = optimizer.init_state(weights)
    batch = getattr(optimizer, "batch_size", None)
    full_batch = batch is None or batch >= N
    if not full_batch and rng is None:
        raise ValueError("mini-batch training needs an rng to shuffle the samples")
    if model is None:
        make_engine = backend.gradient_engine if backend is not None else GradientEngine
        engine = make_engine([W.shape for W in weights], activation, trainable, dtype=X.dtype,
                             max_rows=N if full_batch else batch)
    else:
        engine = make_gradient_engine(model, activation, trainable, X.dtype,
                                      N if full_batch else batch, backend, [W.shape for W in weights])
    all_rules = [DivergenceRule(divergence_factor), *rules, MaxEpochs(max_epochs)]

    initial_loss = None if full_batch else float(loss.value(engine.predict(weights, X), y))
    losses: list[float] = []
    steps = 0
    reason = "max_epochs"
    rows = N if full_batch else batch
    fused = getattr(engine, "fused_evaluator", None)
    one_thread = one_blas_thread(engine_flops(shapes_of(weights), rows),
                                 kernel=fused is not None and fused(loss, rows) is not None)
    with blas_threads(1) if one_thread else contextlib.nullcontext():
        for epoch in range(max_epochs):
            if full_batch:
                res = engine.loss_and_grads(weights, X, y, loss)
                epoch_loss = res.loss
                if math.isfinite(epoch_loss):
                    optimizer.step(weights, res.grads, state)
                    steps += 1
            else:
                perm = rng.permutation(N)
                Xp, yp = X[perm], y[perm]
                total, seen = 0.0, 0
                for k in range(0, N, batch):
                    res = engine.loss_and_grads(weights, Xp[k:k + batch], yp[k:k + batch], loss)
                    n_b = min(batch, N - k)
                    total += res.loss * n_b
                    seen += n_b
                    if not math.isfinite(res.loss):
                        break
                    optimizer.step(weights, res.grads, state)
                    steps += 1
                    if max_steps is not None and steps >= max_steps:
                        break
                epoch_loss = total / seen
            losses.append(epoch_loss)
            fired = [r.reason for r in all_rules if r.update(epoch, epoch_loss)]
            if max_steps is not None and steps >= max_steps:
                fired.insert(len(fired) - (fired[-1:] == ["max_epochs"]), "max_steps")
            if fired:
                reason = fired[0]  # divergence first, then the given rules, then the budgets
                break
        final_output = engine.predict(weights, X)

    final_loss = float(loss.value(final_output, y)) if np.all(np.isfinite(final_output)) else math.inf
    summaries: dict = {}
    for r in all_rules:
        summaries.update(r.summary())
    return TrainResult(weights=weights, losses=np.asarray(losses), epochs=len(losses), steps=steps,
                       stop_reason=reason, initial_loss=losses[0] if full_batch else initial_loss,
                       final_loss=final_loss, final_output=final_output, prepared=dict(prepared),
                       rules=summaries, seconds=time.perf_counter() - start, moved=weights_moved(initial, weights))


def weights_moved(initial: Sequence[np.ndarray], final: Sequence[np.ndarray]) -> bool:
    """Whether any array of ``final`` differs from its ``initial`` counterpart (or its shape)."""
    return any(not np.array_equal(a, b) for a, b in zip(initial, final))


"""Batched training: many small networks of one shape trained as one problem.

The repetitions of a grid point (and any other networks with the same layer shapes, the same
number of samples and the same kind of optimizer) are trained together: the weights of layer l
are stacked as one array ``(R, n_l, n_{l-1})``, the data as ``X (R, N, d)``, ``y (R, N)``, and
one epoch runs the forward and backward passes and the optimizer update of the whole stack:

- :class:`harness.engine.stacked_gradients.StackedGradientEngine` evaluates the losses and
  gradients of the whole stack: for the mean squared error with a fused activation (the
  memorisation studies) in one call of the compiled kernel of
  :mod:`harness.engine.chain_kernels` (per member, blocks of rows sized to stay in the core's
  cache, without the GIL and without a Python call per layer), otherwise as batched matrix
  products; either way with the BLAS calls the single-network path
  (:class:`~harness.engine.gradients.GradientEngine`) makes, on the same numbers;
- a group of one member, and members too large for a stack to help
  (:func:`member_flops`), run :func:`~harness.engine.training.train` itself;
- the optimizer update is one fused kernel over the stack (the optimizer's ``batch_stepper``,
  see below).

Every member keeps its own data, initial weights, optimizer (learning rate), stopping rules
(window rule, tolerance, epoch and step budgets, divergence) and, in mini-batch training, its
own shuffling generator. A member whose rules fire is *frozen*: its result (weights, final
output and loss, the rules' summaries) is recorded at its own stop, and it is dropped from the
stacks (the remaining members are moved down, so the cost follows the members still training).
Each member's :class:`~harness.engine.training.TrainResult` is the one
:func:`harness.engine.training.train` gives for that member alone: the same operations on the
same numbers, so the same trajectory bit for bit (tested for Adam, SGD with momentum and
mini-batches, and gradient descent; ``seconds`` is the member's share of the batch's time:
each epoch's time divided among the members training in it).

Threads: the members are split into ``threads`` contiguous chunks trained independently on
Python threads (BLAS single-threaded inside, as in the single path for the sizes that stack;
the kernels release the GIL), so the threads never wait on each other.

Optimizers: the update of a stack is the optimizer's fused ``batch_stepper``, or each member's
own ``step`` on its slices (:mod:`harness.engine.stack_steppers`).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .chain_kernels import fused_codes
from .evaluation_cost import engine_flops, one_blas_thread, shapes_of
from .gradients import GradientEngine
from .problem import TrainingProblem
from .stack_steppers import MemberStepper, make_stepper
from .stacked_gradients import StackedGradientEngine
from .stopping import DivergenceRule, MaxEpochs, StoppingRule
from .structured import GenericModel, make_gradient_engine, make_stacked_engine
from .threads import blas_threads, engine_threads, run_in_threads
from .training import TrainResult, train, weights_moved

__all__ = ["Member", "train_batch", "MemberStepper", "batch_key_of", "member_flops", "member_rows"]


@dataclass
class Member:
    """One network of a batch: what :func:`harness.engine.training.train` takes for it.

    ``weights`` (not modified), ``X`` (N, d), ``y`` (N,), an ``optimizer`` component (its own
    instance: its own learning rate), fresh stopping ``rules``, the budgets and the
    ``divergence_factor``, ``rng`` (mini-batch shuffling; required in mini-batch) and
    ``prepared`` (``optimizer.prepare``'s result when the caller already ran it)."""

    weights: Sequence[np.ndarray]
    X: np.ndarray
    y: np.ndarray
    optimizer: Any
    rules: Sequence[StoppingRule] = ()
    max_epochs: int = 1000
    max_steps: int | None = None
    rng: np.random.Generator | None = None
    divergence_factor: float = 1e8
    prepared: dict | None = None


def member_rows(member: Member) -> int:
    """Rows of one of the member's gradient evaluations: N, or the batch size when smaller."""
    rows = int(member.X.shape[0])
    batch = getattr(member.optimizer, "batch_size", None)
    return int(batch) if batch is not None and batch < rows else rows


def member_flops(member: Member) -> float:
    """Flops of one of the member's gradient evaluations (``6 rows P``). From
    :data:`~harness.engine.evaluation_cost.SMALL_STEP_FLOPS` on, a stack evaluated by the NumPy engine
    gains nothing on the CPU: each network's products already keep BLAS's threads busy, so
    :func:`train_batch` trains such members one after the other with the single-network loop and
    all BLAS threads, which also keeps their results identical to
    :func:`~harness.engine.training.train`'s (BLAS may sum in another order with another thread
    count). Members the compiled kernel evaluates (:mod:`harness.engine.chain_kernels`) stack at
    every size it takes: it runs on one BLAS thread in both paths."""
    return engine_flops(shapes_of(member.weights), member_rows(member))


def batch_key_of(member: Member) -> tuple:
    """Members with equal keys can share a stack: layer shapes, N, dtype, the optimizer's class
    and batch size."""
    return (tuple(tuple(np.shape(W)) for W in member.weights), int(member.X.shape[0]),
            np.dtype(member.X.dtype).str, type(member.optimizer),
            getattr(member.optimizer, "batch_size", None))


# ----------------------------------------------------------------------------------------------
# the training loop of a chunk of members


class _Chunk:
    """Members of one shape trained together on one thread."""

    def __init__(self, members: Sequence[Member], activation, loss, trainable, model=None,
                 backend=None) -> None:
        self.members = list(members)
        self.model = model
        first = self.members[0]
        self.activation, self.loss = activation, loss
        self.shapes = [tuple(np.shape(W)) for W in first.weights]
        self.trainable = list(trainable) if trainable is not None else [True] * len(self.shapes)
        self.N = first.X.shape[0]
        self.dtype = first.X.dtype
        R = len(self.members)
        self.W = [np.stack([np.asarray(m.weights[l], dtype=self.dtype) for m in self.members])
                  for l in range(len(self.shapes))]
        self.X = np.stack([m.X for m in self.members])
        self.y = np.stack([np.asarray(m.y) for m in self.members])
        batch = getattr(first.optimizer, "batch_size", None)
        self.full_batch = batch is None or batch >= self.N
        self.batch = self.N if self.full_batch else int(batch)
        if not self.full_batch and any(m.rng is None for m in self.members):
            raise ValueError("mini-batch training needs an rng to shuffle the samples")
        if backend is not None:  # a Backend component: its stacked and single evaluators
            self.engine = backend.stacked_gradient_engine(self.shapes, activation, R, self.trainable,
                                                          self.dtype, self.batch)
            self.single = backend.gradient_engine(self.shapes, activation, self.trainable,
                                                  dtype=self.dtype, max_rows=self.N)
        elif model is None:
            self.engine = StackedGradientEngine(self.shapes, activation, R, self.trainable, self.dtype,
                                                rows=self.batch)
            self.single = GradientEngine(self.shapes, activation, self.trainable, dtype=self.dtype,
                                         max_rows=self.N)  # final outputs, exactly as train() does
        else:  # a Network with biases / residual blocks (harness.engine.structured)
            self.engine = make_stacked_engine(model, self.shapes, activation, R, self.trainable,
                                              self.dtype, self.batch)
            self.single = make_gradient_engine(model, activation, self.trainable, self.dtype, self.N,
                                               shapes=self.shapes)
        self.stepper = None  # made in run(), after the optimizers' prepare
        self.results: list[TrainResult | None] = [None] * R

    def run(self) -> list[TrainResult]:
        start = time.perf_counter()
        R, N = len(self.members), self.N
        pos = list(range(R))             # stack position -> member index
        prepared, rules, losses = [], [], []
        for m in self.members:
            p = m.prepared
            if p is None:
                p = m.optimizer.prepare(TrainingProblem(m.X, m.y, [np.array(W) for W in m.weights],
                                                        self.activation, self.trainable, self.loss,
                                                        network=self.model)) or {}
            prepared.append(dict(p))
            rules.append([DivergenceRule(m.divergence_factor), *m.rules, MaxEpochs(m.max_epochs)])
            losses.append([])
        self.stepper = make_stepper([m.optimizer for m in self.members], self.W)
        initial = [None] * R
        if not self.full_batch:
            for i, m in enumerate(self.members):
                initial[i] = float(self.loss.value(self.single.predict(m.weights, m.X), m.y))
        steps = [0] * R
        seconds = [0.0] * R
        setup = time.perf_counter() - start
        for i in range(R):
            seconds[i] = setup / R
        epoch = 0
        current = (self.X, self.y)
        if not self.full_batch:
            Xp = np.empty_like(self.X)
            yp = np.empty_like(self.y)
        while pos:
            t0 = time.perf_counter()
            k = len(pos)
            if self.full_batch:
                if k != len(current[0]):  # the same objects while no member leaves the stack (a
                    current = (self.X[:k], self.y[:k])  # device backend keeps its copy of X)
                values, grads = self.engine.loss_and_grads(self.W, current[0], current[1], self.loss, k)
                mask = np.array([math.isfinite(v) for v in values], dtype=np.bool_)
                self.stepper.step([W[:k] for W in self.W], grads, mask)
                for j in np.flatnonzero(mask):
                    steps[pos[j]] += 1
                epoch_losses = values
            else:
                for j in range(k):
                    perm = self.members[pos[j]].rng.permutation(N)
                    np.take(self.X[j], perm, axis=0, out=Xp[j])
                    np.take(self.y[j], perm, out=yp[j])
                total, seen = [0.0] * k, [0] * k
                going = np.ones(k, dtype=np.bool_)
                for s in range(0, N, self.batch):
                    e = min(N, s + self.batch)
                    values, grads = self.engine.loss_and_grads(
                        self.W, Xp[:k, s:e], yp[:k, s:e], self.loss, k)
                    for j in np.flatnonzero(going):
                        total[j] += values[j] * (e - s)
                        seen[j] += e - s
                        if not math.isfinite(values[j]):
                            going[j] = False
                    self.stepper.step([W[:k] for W in self.W], grads, going)
                    for j in np.flatnonzero(going):
                        i = pos[j]
                        steps[i] += 1
                        ms = self.members[i].max_steps
                        if ms is not None and steps[i] >= ms:
                            going[j] = False
                    if not going.any():
                        break
                epoch_losses = [total[j] / seen[j] for j in range(k)]
            stopped = []
            for j in range(k):
                i = pos[j]
                value = epoch_losses[j]
                losses[i].append(value)
                fired = [r.reason for r in rules[i] if r.update(epoch, value)]
                ms = self.members[i].max_steps
                if ms is not None and steps[i] >= ms:
                    fired.insert(len(fired) - (fired[-1:] == ["max_epochs"]), "max_steps")
                if fired:
                    stopped.append((j, fired[0]))
            share = (time.perf_counter() - t0) / k
            for j in range(k):
                seconds[pos[j]] += share
            if stopped:
                for j, reason in stopped:
                    t1 = time.perf_counter()
                    i = pos[j]
                    self.results[i] = self._result(i, j, reason, losses[i], steps[i], initial[i],
                                                   prepared[i], rules[i])
                    seconds[i] += time.perf_counter() - t1
                    self.results[i].seconds = seconds[i]
                gone = {j for j, _ in stopped}
                keep = [j for j in range(k) if j not in gone]
                self._compact(keep)
                pos = [pos[j] for j in keep]
            epoch += 1
        return list(self.results)

    def _result(self, i, j, reason, losses, steps, initial, prepared, rules) -> TrainResult:
        m = self.members[i]
        weights = [np.array(W[j]) for W in self.W]
        final_output = self.single.predict(weights, m.X)
        final_loss = (float(self.loss.value(final_output, m.y)) if np.all(np.isfinite(final_output))
                      else math.inf)
        summaries: dict = {}
        for r in rules:
            summaries.update(r.summary())
        return TrainResult(weights=weights, losses=np.asarray(losses), epochs=len(losses),
                           steps=steps, stop_reason=reason,
                           initial_loss=losses[0] if self.full_batch else initial,
                           final_loss=final_loss, final_output=final_output, prepared=prepared,
                           rules=summaries,
                           moved=weights_moved([np.asarray(W, dtype=self.dtype) for W in m.weights], weights))

    def _compact(self, keep: list[int]) -> None:
        n = len(keep)
        if n == 0 or keep == list(range(n)):
            self.stepper.select(keep)
            return
        for A in (*self.W, self.X, self.y):
            A[:n] = A[keep]
        self.stepper.select(keep)


def train_batch(members: Sequence[Member], activation, loss, *,
                trainable: Sequence[bool] | None = None, threads: int | None = None,
                model=None, backend=None) -> list[TrainResult]:
    """Train every member (see :class:`Member`) and return one
    :class:`~harness.engine.training.TrainResult` per member, in order: each equal to
    ``train(m.weights, m.X, m.y, activation, loss, m.optimizer, ...)`` on its own.

    Members that cannot share a stack (:func:`batch_key_of` differs) are trained in separate
    stacks. ``threads`` (default: :func:`harness.engine.threads.engine_threads`) splits each
    stack into that many chunks trained on parallel threads. ``model``: as in
    :func:`~harness.engine.training.train` (a Network with biases or residual blocks stacks as
    well; a GenericModel trains member by member). ``backend``: ``None`` for the CPU engine,
    or a device Backend component (torch) with ``stacked_gradient_engine``: its evaluators replace
    the CPU engine's and each stack runs as one chunk (the device parallelises over the members).
    """
    members = list(members)
    results: list[TrainResult | None] = [None] * len(members)
    groups: dict[tuple, list[int]] = {}
    for i, m in enumerate(members):
        groups.setdefault(batch_key_of(m), []).append(i)
    threads = engine_threads(threads)
    for idx in groups.values():
        first = members[idx[0]]
        kernel = (backend is None and (model is None or getattr(model, "plain", False)) and
                  fused_codes(shapes_of(first.weights), activation, loss, first.X.dtype,
                              member_rows(first)) is not None)
        large = backend is None and not one_blas_thread(member_flops(first), kernel)
        if len(idx) == 1 or isinstance(model, GenericModel) or large:  # the single-network loop
            for i in idx:
                m = members[i]
                results[i] = train(m.weights, m.X, m.y, activation, loss, m.optimizer,
                                   trainable=trainable, max_epochs=m.max_epochs, max_steps=m.max_steps,
                                   rules=m.rules, rng=m.rng, divergence_factor=m.divergence_factor,
                                   prepared=m.prepared, model=model, backend=backend)
            continue
        parts = 1 if backend is not None else max(1, min(threads, len(idx)))
        bounds = np.linspace(0, len(idx), parts + 1).round().astype(int)
        chunks = [[idx[a] for a in range(bounds[p], bounds[p + 1])] for p in range(parts)]
        chunks = [c for c in chunks if c]
        runners = [_Chunk([members[i] for i in c], activation, loss, trainable, model, backend)
                   for c in chunks]

        def work(_state, item):
            c, runner = item
            for i, res in zip(c, runner.run()):
                results[i] = res

        items = list(zip(chunks, runners))
        if len(items) > 1:
            run_in_threads(work, items, len(items))
        else:  # small products or the kernel's blocks: one BLAS thread, as train() takes
            with blas_threads(1):
                work(None, items[0])
    return results  # type: ignore[return-value]

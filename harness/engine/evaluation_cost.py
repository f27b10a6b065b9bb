"""What one loss-and-gradient evaluation of a bias-free chain costs, and what follows from it:
whether the compiled kernel (:mod:`harness.engine.chain_kernels`) evaluates it and whether the
training runs on one BLAS thread.

A module without Numba and without imports of the engine's other modules: the kernel, the
training loops (:mod:`harness.engine.training`, :mod:`harness.engine.batched_training`) and the
cost estimates read the same thresholds from here.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["SMALL_STEP_FLOPS", "KERNEL_MAX_FLOPS", "engine_flops", "one_blas_thread", "shapes_of"]

SMALL_STEP_FLOPS = 5e7
"""Below this many floating-point operations per gradient evaluation, training runs with one
BLAS thread: the products are too small for BLAS's threads to pay, and idle BLAS threads
spinning on a busy machine can slow small products a hundredfold. Training through the compiled
kernel (:mod:`harness.engine.chain_kernels`, up to :data:`KERNEL_MAX_FLOPS`) also runs on one thread:
its products are blocks of rows, too small for threads at any size."""

KERNEL_MAX_FLOPS = 1e9
"""The compiled kernel (:mod:`harness.engine.chain_kernels`, its ``MAX_FLOPS``) serves
evaluations of fewer flops than this (``6 rows P``), in float64 and float32 alike. It runs on one
BLAS thread; measured side by side on 2 cores (``harness bench train``), one thread of it beats
the NumPy engine with two BLAS threads on whole matrices up to d = 80, N = 5000 (6e8 flops) and
about breaks even at d = 122, N = 12000 (3e9), where the NumPy engine keeps the cores."""


def shapes_of(weights: Sequence[np.ndarray]) -> list[tuple[int, int]]:
    """The layer shapes ``[(n_1, d), ..., (1, n_{L-1})]`` of a list of weight matrices."""
    return [tuple(np.shape(W)) for W in weights]


def engine_flops(shapes: Sequence[tuple[int, int]], rows: int) -> float:
    """Approximate flops of one loss-and-gradient evaluation on ``rows`` samples: three products
    per layer (forward, back-propagation, gradient) of ``2 rows n_l n_{l-1}`` each."""
    return 6.0 * rows * sum(a * b for a, b in shapes)


def one_blas_thread(flops: float, kernel: bool) -> bool:
    """Whether a training whose gradient evaluation costs ``flops`` runs on one BLAS thread: when
    the compiled kernel evaluates it (``kernel``) or it is under :data:`SMALL_STEP_FLOPS`.
    :func:`harness.engine.training.train` then limits BLAS to one thread, and
    :func:`harness.engine.batched_training.train_batch` trains such members in stacks that share
    the threads; the others train alone with every BLAS thread."""
    return bool(kernel) or float(flops) < SMALL_STEP_FLOPS

"""Cost estimates of the memorisation experiments' cells (``estimate``), from the rates
:mod:`harness.plugin.costs` measures on this machine.
"""
from __future__ import annotations

import math

EPOCHS_N0 = 500
"""The N at which :func:`window_epochs`'s shape in P/N holds as fitted; see :data:`EPOCHS_N_POWER`."""

EPOCHS_N_POWER = 0.25
"""At a given P/N, the window rule stops later on more samples, about as ``(N / EPOCHS_N0) **
EPOCHS_N_POWER`` (the step lr = 1/(10 sqrt N) shrinks with N): fitted, with the shape of
:func:`window_epochs`, to the mean stop epoch of every (d, N) of a run of
benchmarks/memorization_threshold.toml at d = 22..63 (i = 1..8, 10 repetitions, float64, 680
cells, 69 values of (d, N)): root-mean-square error of log(epochs) 0.17, against 0.34 with the
shape alone, whose error grew with d (mean ratio measured / shape 0.98 at d = 22, 1.71 at 63)."""


def window_epochs(P_over_N: float, window: int, N: int | None = None) -> float:
    """Epochs the estimates expect the window rule to run (full-batch Adam, lr 1/(10 sqrt N)):
    ``window * (7 + 38 / (1 + (P/N / 1.3)^4))``, fitted to measured stops on the fig2_reduced
    grid of benchmarks/min_overparam.toml: memorised cells (P/N >= 2.5) stop after 5 to 14
    windows, cells near the threshold (P/N 1.5-2) after 15-20, the others after 30 to 60; with
    ``N``, times ``(N / EPOCHS_N0) ** EPOCHS_N_POWER`` (see :data:`EPOCHS_N_POWER`)."""
    shape = window * (7.0 + 38.0 / (1.0 + (max(P_over_N, 0.0) / 1.3) ** 4))
    return shape if N is None else shape * (max(N, 1) / EPOCHS_N0) ** EPOCHS_N_POWER


def _expected_epochs(cell_params, P: float, N: int) -> float:
    """Epochs of a training run: the window rule's expectation, within the epoch budget."""
    epochs = int(cell_params.get("max_epochs", 1000))
    window = int(cell_params.get("window") or 0)
    return min(epochs, window_epochs(P / max(N, 1), window, N)) if window else epochs


def _train_cost(N: int, P: float, epochs: float, batch: int | None = None, margin_loss: bool = False,
                dtype: str = "float64") -> dict:
    """Estimated seconds of ``epochs`` epochs on N samples and P trainable weights (full batch,
    or mini-batches of ``batch``), from the calibrated rates of :mod:`harness.plugin.costs`,
    with the compilation of the training kernels as a once-per-process set-up cost.

    On one thread where the engine runs the training on one thread: under the compiled
    kernel's :data:`~harness.engine.evaluation_cost.KERNEL_MAX_FLOPS` per evaluation (assumed to apply
    with the mean squared error, i.e. without ``margin_loss``, and a fused activation, as the
    built-in ones are) or under :data:`~harness.engine.evaluation_cost.SMALL_STEP_FLOPS`; such cells
    are ``stacked`` (:meth:`harness.Experiment.estimate`): in a group they share the threads.
    Full-batch epochs in ``dtype = "float32"`` are priced at the float32 probe's rate; mini-batch
    steps at the float64 rate (their cost is mostly per-step overhead)."""
    from harness.engine.evaluation_cost import KERNEL_MAX_FLOPS, one_blas_thread
    from harness.plugin import costs

    rows = N if batch is None or batch >= N else int(batch)
    flops = 6.0 * rows * float(P)
    stacked = one_blas_thread(flops, kernel=not margin_loss and flops < KERNEL_MAX_FLOPS)
    if rows == N:
        seconds = epochs * costs.epoch_seconds(N, int(P), one_thread=stacked, dtype=dtype)
    else:
        seconds = epochs * math.ceil(N / batch) * costs.sgd_step_seconds(batch, int(P), margin_loss,
                                                                         one_thread=stacked)
    return {"seconds": float(seconds), "setup_key": "training_kernels",
            "setup_seconds": costs.training_setup_seconds(), "stacked": stacked}


def _component_widths(experiment, d: int) -> list[int]:
    """Hidden widths of the cell's architecture (``[d, d]`` when the experiment is not bound to
    a cell, :meth:`Experiment.bind`), for estimates."""
    try:
        instance = experiment.context.components["architecture"]
        return [n for n, _ in instance.layer_shapes(d)[:-1]]
    except Exception:
        return [d, d]


def _two_layer_q(experiment, d: int) -> int:
    """Hidden units of the cell's architecture (16 when the experiment is not bound to a cell)."""
    try:
        instance = experiment.context.components["architecture"]
        return int(instance.layer_shapes(d)[0][0])
    except Exception:
        return 16

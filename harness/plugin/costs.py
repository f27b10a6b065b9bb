"""Calibrated cost models of the engine's shared kernels (training and the NTK spectrum), for
the experiments' ``estimate``; a plugin with kernels of its own measures them the same way, with
:func:`harness.plugin.calibration.rates` and a probe in its own cost module.

Each model is a few numbers measured on this machine by a short probe of the kernel itself
(at small sizes, on one thread, best CPU time of a few repetitions) and cached by
:func:`harness.plugin.calibration.rates` (per machine). The probes, each about 1-2 s of CPU:

- ``training``: full-batch Adam epochs of a ReLU ``fc`` network at three sizes (N P from 2e4
  to 1.6e8), interpolated in log-log (:func:`epoch_seconds`), and the same three sizes in float32
  (``training_float32``: single-precision cells are priced at their own rate); batch-10 SGD steps of a two-layer
  network at two sizes, fitted as ``step_s + step_s_per_bp * batch * P`` per step; and the first
  call's extra time (kernel compilation or loading from the disk cache): ``setup_s``.
- ``ntk``: a DGEMM (800 x 800), the NTK Gram matrix of a sigmoid ``d -> d -> d -> 1`` network
  at N = 1000, d = 400 and its extreme eigenvalues (solver ``auto``, Cholesky + Krylov path):
  the flop rates and the N^2 term of :func:`ntk_seconds`.
- ``generic``: the autograd Jacobian of the generic path (an architecture known only by its
  ``forward``) of a tanh ``d -> d -> d -> 1`` network written as a plain forward, per row at
  d = 10 and 40 (:func:`generic_jacobian_seconds`; :func:`generic_ntk_seconds` prices the
  generic path's NTK spectrum cells).

The models are rough (a factor of about 1.5 either way); what the probes buy is that they are
rough on *this* machine rather than on the one the constants were written on.
"""
from __future__ import annotations

import math
import time

import numpy as np

from harness.plugin import calibration

# ----------------------------------------------------------------------------- training


EPOCH_PROBE_SIZES = ((100, 8, 200), (1500, 48, 12), (5000, 100, 3))
"""``(N, d, epochs)`` of the full-batch epochs the training probes time (float64 and float32):
N P = 2.0e4, 1.0e7 and 1.6e8 for the ``d -> d -> d -> d -> 1`` network."""


def _training_job(rng, N, d, widths, activation, loss, optimizer, epochs, trainable=None, dtype=np.float64):
    """A call that trains a ``d -> widths -> 1`` network (no biases) on N Gaussian points for
    ``epochs`` (data and weights drawn from ``rng`` now, in ``dtype``), for a probe to time."""
    from harness.engine.training import train

    X, y = rng.standard_normal((N, d)).astype(dtype), rng.standard_normal(N).astype(dtype)
    sizes = [d, *widths, 1]
    weights = [(rng.standard_normal((b, a)) / math.sqrt(a)).astype(dtype) for a, b in zip(sizes[:-1], sizes[1:])]
    return lambda: train(weights, X, y, activation, loss, optimizer, trainable=trainable, max_epochs=epochs,
                         rng=np.random.default_rng(1))


def _probe_training() -> dict:
    from harness.engine.training import train
    from harness.plugin.manager import load_registry

    registry = load_registry()
    relu = registry.create("activation", "relu", {})
    mse = registry.create("loss", "mse", {})
    adam = registry.create("optimizer", "adam", {"lr": 1e-4})
    sgd = registry.create("optimizer", "sgd", {"lr": 1e-4, "batch_size": 10})
    rng = np.random.default_rng(0)

    def job(N, d, widths, optimizer, epochs, trainable=None):
        return _training_job(rng, N, d, widths, relu, mse, optimizer, epochs, trainable)

    t0 = time.process_time()
    job(40, 6, [6, 6, 6], adam, 2)()
    job(40, 6, [6], sgd, 1, [True, False])()
    first = time.process_time() - t0
    # full batch at EPOCH_PROBE_SIZES (BLAS gets more efficient as products grow)
    points = {}
    for N, d, epochs in EPOCH_PROBE_SIZES:
        points[N * (3 * d * d + d)] = calibration.best_time(job(N, d, [d, d, d], adam, epochs)) / epochs
    (small_np, small), _, (big_np, big) = sorted(points.items())
    slope = max((big - small) / (big_np - small_np), 1e-15)
    # batch-10 SGD, two-layer network with frozen output: batch * P = 10 * 320 and 10 * 16000
    s_small = calibration.best_time(job(200, 20, [16], sgd, 5, [True, False])) / 100
    s_big = calibration.best_time(job(200, 100, [160], sgd, 5, [True, False])) / 100
    s_slope = max((s_big - s_small) / (10 * (16000 - 320)), 1e-15)
    # the margin losses (hinge, logistic) of the classification experiments cost more a step
    hinge = registry.create("loss", "hinge", {})
    Xc, yc = rng.standard_normal((1000, 50)), np.sign(rng.standard_normal(1000))
    wc = [rng.standard_normal((40, 50)) / math.sqrt(50), rng.standard_normal((1, 40))]
    margin = [calibration.best_time(lambda: train(wc, Xc, yc, relu, loss, sgd, trainable=[True, False],
                                                  max_epochs=3, rng=np.random.default_rng(1)))
              for loss in (mse, hinge)]
    steady = 2 * small + 4 * s_small  # what the warm-up calls would cost once compiled
    return {**{f"epoch_s_at_np_{i}": t for i, t in enumerate(points.values())},
            **{f"epoch_np_{i}": x for i, x in enumerate(points)},
            "epoch_s": max(small - slope * small_np, 1e-7), "epoch_s_per_np": slope,
            "step_s": max(s_small - s_slope * 3200, 1e-7), "step_s_per_bp": s_slope,
            "margin_loss_factor": max(margin[1] / margin[0], 1.0),
            "setup_s": max(first - steady, 0.0)}


def training_rates() -> dict:
    return calibration.rates("training", _probe_training, version=5)  # 5: the fused training kernel


def _probe_training_float32() -> dict:
    """Full-batch Adam epochs in float32 at the three sizes of :func:`_probe_training` (data and
    weights in float32: the engine trains in the data's dtype, SGEMM products)."""
    from harness.plugin.manager import load_registry

    registry = load_registry()
    relu, mse = registry.create("activation", "relu", {}), registry.create("loss", "mse", {})
    adam = registry.create("optimizer", "adam", {"lr": 1e-4})
    rng = np.random.default_rng(0)
    out = {}
    for i, (N, d, epochs) in enumerate(EPOCH_PROBE_SIZES):
        out[f"epoch_np_{i}"] = float(N * (3 * d * d + d))
        out[f"epoch_s_at_np_{i}"] = calibration.best_time(
            _training_job(rng, N, d, [d, d, d], relu, mse, adam, epochs, dtype=np.float32)) / epochs
    return out


def training_float32_rates() -> dict:
    return calibration.rates("training_float32", _probe_training_float32, version=1)


def epoch_seconds(N: int, P: int, one_thread: bool = False, dtype: str = "float64") -> float:
    """Seconds of one full-batch epoch (gradient and optimizer step) on N samples, P weights:
    interpolated in log-log between the probe's three sizes of N P, then proportional to N P;
    with BLAS's threads (:func:`harness.plugin.calibration.speedup`), or on one thread when
    ``one_thread`` (the compiled kernel, or a member of a stack trained on parallel threads).
    ``dtype = "float32"`` uses the float32 probe's times (``training_float32``)."""
    if dtype not in ("float64", "float32"):
        raise ValueError(f"epoch_seconds: dtype must be 'float64' or 'float32', not {dtype!r}")
    r = training_rates() if dtype == "float64" else training_float32_rates()
    xs = [r[f"epoch_np_{i}"] for i in range(3)]
    ts = [r[f"epoch_s_at_np_{i}"] for i in range(3)]
    x = max(float(N) * float(P), 1.0)
    if x <= xs[0]:
        t = ts[0]  # small products: the per-step overhead dominates
    elif x >= xs[-1]:
        t = ts[-1] * x / xs[-1]
    else:
        i = 0 if x <= xs[1] else 1
        f = math.log(x / xs[i]) / math.log(xs[i + 1] / xs[i])
        t = math.exp(math.log(ts[i]) + f * math.log(ts[i + 1] / ts[i]))
    return t if one_thread else t / calibration.speedup(6.0 * N * P)


def sgd_step_seconds(batch: int, P: int, margin_loss: bool = False, one_thread: bool = False) -> float:
    """Seconds of one mini-batch step of ``batch`` samples on P weights (with the MSE, or with
    a margin loss such as hinge or logistic when ``margin_loss``); ``one_thread`` as in
    :func:`epoch_seconds`."""
    r = training_rates()
    factor = r["margin_loss_factor"] if margin_loss else 1.0
    t = factor * (r["step_s"] + r["step_s_per_bp"] * batch * P)
    return t if one_thread else t / calibration.speedup(6.0 * batch * P)


def training_setup_seconds() -> float:
    """Once per worker process: compiling (or loading) the training kernels."""
    return training_rates()["setup_s"]


# ----------------------------------------------------------------------------- NTK spectrum


def ntk_flops(N: int, sizes) -> float:
    """Flops of the NTK Gram matrices of a network with layer sizes ``[d, n_1, ..., 1]`` on N
    inputs: forward and backward products, and the Hadamard Gram products (about N^2 per
    factor column, the upper triangle of two products per layer)."""
    sizes = [int(s) for s in sizes]
    return (6.0 * N * sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))
            + 1.0 * N * N * (sum(sizes[:-1]) + sum(sizes[1:-1])))


def ntk_memory_bytes(N: int, sizes, n_kernels: int, itemsize: int = 8) -> int:
    """Peak bytes of one NTK cell (:func:`harness.engine.ntk.ntk_kernels` and its eigen-solves):
    ``n_kernels + 1`` Gram matrices ``(N, N)`` (the kernels and a solver's copy), three
    ``(N, n_l)`` arrays per layer (inputs, activations, back-propagated signals) of ``itemsize``
    bytes, and the weights ``(n_l, n_{l-1})`` twice in float64 (drawn, then cast or scaled).
    ``sizes``: ``[d, n_1, ..., n_{L-1}, 1]``. Measured within 2x on small cells
    (tests/test_memory_estimates.py)."""
    sizes = [int(n) for n in sizes]
    weights = sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))
    return int(itemsize * ((n_kernels + 1) * N * N + 3 * N * sum(sizes)) + 2 * 8 * weights)


def _probe_ntk() -> dict:
    from harness.engine.eigen import extreme_eigenvalues
    from harness.engine.ntk import ntk_kernels
    from harness.plugin.manager import load_registry

    sigmoid = load_registry().create("activation", "sigmoid", {})
    rng = np.random.default_rng(0)

    def network(N, d):
        sizes = [d, d, d, 1]
        weights = [rng.standard_normal((b, a)) / math.sqrt(a) for a, b in zip(sizes[:-1], sizes[1:])]
        return weights, rng.standard_normal((N, d)), sizes

    A, B = rng.standard_normal((800, 800)), rng.standard_normal((800, 800))
    gemm = 2 * 800 ** 3 / calibration.best_time(lambda: A @ B)
    t0 = time.process_time()
    w, X, _ = network(950, 8)  # N >= AUTO_MIN_N: the Cholesky + Krylov path of "auto"
    extreme_eigenvalues(ntk_kernels(w, X, sigmoid, {"full": None})["full"], "auto")
    first = time.process_time() - t0
    w, X, sizes = network(1000, 400)
    K = {}
    t_ntk = calibration.best_time(lambda: K.update(ntk_kernels(w, X, sigmoid, {"full": None})), repeat=3)
    extreme_eigenvalues(K["full"], "auto")  # warm-up: the first call of a path compiles kernels
    t_eig = calibration.best_time(lambda: extreme_eigenvalues(K["full"], "auto"), repeat=3)
    factor = _FACTOR_FLOPS * 1000 ** 3 / gemm
    return {"gemm_flops_per_s": gemm, "ntk_flops_per_s": ntk_flops(1000, sizes) / t_ntk,
            "eigen_s_per_n2": max(t_eig - factor, 0.2 * t_eig) / 1000 ** 2,
            "setup_s": max(first - t_eig, 0.0)}


_FACTOR_FLOPS = 0.5
"""Cholesky factorisations of extreme_eigenvalues("auto"), in units of N^3 flops: a float32
pilot and a float64 shifted one, N^3 / 3 each (the float32 one about twice as fast)."""


def ntk_rates() -> dict:
    return calibration.rates("ntk", _probe_ntk, version=3)


def ntk_seconds(N: int, sizes, n_kernels: int) -> float:
    """Seconds of one NTK spectrum cell: the Gram matrices and ``n_kernels`` eigen-solves."""
    r = ntk_rates()
    build = ntk_flops(N, sizes)
    return build / (r["ntk_flops_per_s"] * calibration.speedup(build)) + n_kernels * eigen_seconds(N) + 0.02


def eigen_seconds(N: int) -> float:
    """Seconds of one extreme-eigenvalue solve (``auto``, Cholesky + Krylov) of an N x N kernel."""
    r = ntk_rates()
    factor = _FACTOR_FLOPS * N ** 3
    # the factorisations run on every thread; the iterative steps of the eigen-solver on one
    # (see harness.engine.eigen)
    return factor / (r["gemm_flops_per_s"] * calibration.speedup(factor)) + r["eigen_s_per_n2"] * N * N


# ----------------------------------------------------------------------------- the generic path


def _probe_generic() -> dict:
    """The generic (autograd) path: its Jacobian of a tanh ``fc`` network written as a plain
    forward, per row, at two parameter counts (P = 210 and 3240, N = 64)."""
    from harness.engine.generic import generic_jacobian
    from harness.plugin.manager import load_registry

    tanh = load_registry().create("activation", "tanh", {})
    rng = np.random.default_rng(0)

    def forward(params, X, activation):
        h = X
        for W in params[:-1]:
            h = activation.phi(h @ W.T)
        return (h @ params[-1].T)[:, 0]

    out = {}
    for i, d in enumerate((10, 40)):
        sizes = [d, d, d, 1]
        params = [rng.standard_normal((b, a)) / math.sqrt(a) for a, b in zip(sizes[:-1], sizes[1:])]
        X = rng.standard_normal((64, d))
        out[f"row_s_{i}"] = calibration.best_time(lambda: generic_jacobian(forward, params, X, tanh)) / 64
        out[f"P_{i}"] = float(sum(p.size for p in params))
    return out


def generic_rates() -> dict:
    return calibration.rates("generic", _probe_generic, version=1)


def generic_jacobian_seconds(N: int, P: int) -> float:
    """Seconds of the generic path's Jacobian ``J`` (N, P) (:func:`harness.engine.generic.generic_jacobian`):
    per row, linear in P between (and beyond) the probe's two sizes; one thread (autograd traces
    in Python)."""
    r = generic_rates()
    slope = max((r["row_s_1"] - r["row_s_0"]) / (r["P_1"] - r["P_0"]), 0.0)
    return N * max(r["row_s_0"] + slope * (P - r["P_0"]), r["row_s_0"])


def generic_ntk_seconds(N: int, P: int, n_kernels: int) -> float:
    """Seconds of one NTK spectrum cell on the generic path (P parameters): the autograd Jacobian
    (:func:`generic_jacobian_seconds`), the products ``J_g J_g^T`` (2 N^2 P flops for the full K,
    as much again for blocks that sum to it) and ``n_kernels`` eigen-solves."""
    r = ntk_rates()
    gram = 2.0 * N * N * P * min(n_kernels, 2)
    return (generic_jacobian_seconds(N, P) + gram / (r["gemm_flops_per_s"] * calibration.speedup(gram))
            + n_kernels * eigen_seconds(N) + 0.02)

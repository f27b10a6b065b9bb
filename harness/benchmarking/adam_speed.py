"""One full-batch Adam epoch of the Figure-2 network: the harness engine against PyTorch (CPU).

The network is Bombari et al.'s Figure 2 model: ReLU, widths d -> d -> d -> d -> 1, no biases,
MSE without 1/2, on ``N`` Gaussian samples (default ``d = 122``, ``N = 12000``, the largest
``d`` of the paper's grid at a large ``N``). An epoch is a forward pass, the loss, the
gradient in every weight and one Adam update.

Both sides start from the same weights and first run a few epochs side by side to check that
they compute the same thing (the weights must agree to rounding). Then the harness's epochs are
timed in this process and torch's in a fresh process of its own (the same problem, threads and
number of epochs): timed in one process, each side's idle worker threads (OpenBLAS's, OpenMP's)
spin after its calls and take cores from the other, which made torch look 1.5-2.7x slower than
it is. The table gives the median time of each and their ratio. Both use the same number of
threads (the BLAS thread count of this process unless ``--threads`` says otherwise). Without
torch installed, only the harness column is printed.

Run: ``python -m harness.benchmarking.adam_speed [--d 122] [--N 12000] [--repeats 9]
[--dtypes float64,float32] [--threads T]``.
"""
from __future__ import annotations

import argparse
import statistics
import time
from typing import Sequence

import numpy as np

from ..engine.gradients import GradientEngine
from .figure2 import TorchEpoch, figure2_problem, torch_epoch_seconds


class HarnessEpoch:
    """Full-batch Adam epochs with the harness engine and the ``adam`` optimizer plugin."""

    def __init__(self, X, y, weights, lr: float) -> None:
        from harness.plugin.manager import load_registry

        registry = load_registry()
        self.activation = registry.create("activation", "relu")
        self.loss = registry.create("loss", "mse")
        self.optimizer = registry.create("optimizer", "adam", {"lr": lr})
        self.X, self.y = X, y
        self.weights = [W.copy() for W in weights]
        self.engine = GradientEngine([W.shape for W in weights], self.activation, dtype=X.dtype,
                                     max_rows=X.shape[0])
        self.state = self.optimizer.init_state(self.weights)

    def __call__(self) -> float:
        res = self.engine.loss_and_grads(self.weights, self.X, self.y, self.loss)
        self.optimizer.step(self.weights, res.grads, self.state)
        return res.loss


def _blas_threads() -> int:
    from threadpoolctl import threadpool_info

    counts = [i["num_threads"] for i in threadpool_info() if i.get("user_api") == "blas"]
    return max(counts) if counts else 1


def _time(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(d: int = 122, N: int = 12000, dtype=np.float64, repeats: int = 9,
            threads: int | None = None, check_epochs: int = 3) -> dict:
    """Median seconds per epoch of each side (``torch`` is ``None`` without PyTorch) and the
    largest weight difference after ``check_epochs`` identical epochs."""
    from threadpoolctl import threadpool_limits

    threads = threads or _blas_threads()
    X, y, weights = figure2_problem(d, N, dtype)
    lr = 1.0 / (10.0 * np.sqrt(N))
    try:
        import torch
    except ImportError:
        torch = None
    with threadpool_limits(limits=threads, user_api="blas"):
        ours = HarnessEpoch(X, y, weights, lr)
        theirs = None
        if torch is not None:
            torch.set_num_threads(threads)
            theirs = TorchEpoch(X, y, weights, lr)
        for _ in range(check_epochs):  # also warms up (Numba compilation, first-touch)
            ours()
            if theirs is not None:
                theirs()
        diff = None
        if theirs is not None:
            diff = max(float(np.max(np.abs(a - b))) for a, b in zip(ours.weights, theirs.weights()))
            del theirs
        time.sleep(0.5)  # let torch's worker threads go idle
        t_ours = [_time(ours) for _ in range(repeats)]
    t_theirs = None
    if torch is not None:
        t_theirs = torch_epoch_seconds(d, N, threads, 1, repeats, np.dtype(dtype).name)
    return {"d": d, "N": N, "dtype": np.dtype(dtype).name, "threads": threads,
            "harness": statistics.median(t_ours), "torch": t_theirs,
            "torch_version": torch.__version__ if torch is not None else None,
            "max_weight_diff": diff}


def main(argv: Sequence[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(prog="python -m harness.benchmarking.adam_speed",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--d", type=int, default=122)
    parser.add_argument("--N", type=int, default=12000)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--dtypes", default="float64,float32")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    rows = [measure(args.d, args.N, np.dtype(name), args.repeats, args.threads)
            for name in args.dtypes.split(",")]
    print(f"Full-batch Adam epoch, Figure-2 network (ReLU, d={args.d} -> {args.d} -> {args.d} "
          f"-> {args.d} -> 1), N={args.N}, {rows[0]['threads']} thread(s), median of {args.repeats}")
    if rows[0]["torch_version"] is None:
        print("PyTorch is not installed: harness timings only (pip install torch to compare)")
    header = f"{'dtype':<8} {'harness ms':>11} {'torch ms':>9} {'torch/harness':>14} {'max |dW|':>9}"
    print(header)
    print("-" * len(header))
    for r in rows:
        torch_ms = f"{1e3 * r['torch']:9.2f}" if r["torch"] is not None else f"{'-':>9}"
        ratio = f"{r['torch'] / r['harness']:14.2f}" if r["torch"] is not None else f"{'-':>14}"
        diff = f"{r['max_weight_diff']:9.1e}" if r["max_weight_diff"] is not None else f"{'-':>9}"
        print(f"{r['dtype']:<8} {1e3 * r['harness']:11.2f} {torch_ms} {ratio} {diff}")
    if rows[0]["torch_version"] is not None:
        print(f"torch {rows[0]['torch_version']}; ratio > 1 means the harness is faster")
    return rows


if __name__ == "__main__":
    main()

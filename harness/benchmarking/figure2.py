"""The Figure-2 problem of the speed benchmarks, and its full-batch Adam epoch in PyTorch timed in
a process of its own.

Bombari et al.'s Figure 2 network: ReLU, widths d -> d -> d -> d -> 1, no biases, MSE without
1/2, N Gaussian samples with N(0, 1) targets, full-batch Adam at lr 1/(10 sqrt N).
:mod:`harness.benchmarking.adam_speed` and :mod:`harness.benchmarking.train_speed` time the
harness's epochs against :class:`TorchEpoch`; :func:`torch_epoch_seconds` runs it in a fresh
process (``python -m harness.benchmarking.figure2 --torch-worker SPEC``), where no other
library's idle worker threads take cores from it.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from typing import Sequence

import numpy as np

__all__ = ["figure2_problem", "TorchEpoch", "torch_epoch_seconds"]


def figure2_problem(d: int, N: int, dtype, seed: int = 0):
    """``X (N, d)``, ``y (N,)`` and the weights ``[(d, d), (d, d), (d, d), (1, d)]`` of the
    Figure-2 network (hidden ``N(0, 1/d)``, output ``N(0, 1)``)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N, d))
    y = rng.standard_normal(N)
    shapes = [(d, d)] * 3 + [(1, d)]
    weights = [rng.standard_normal(s) / np.sqrt(d) for s in shapes[:-1]]
    weights.append(rng.standard_normal(shapes[-1]))
    return X.astype(dtype), y.astype(dtype), [W.astype(dtype) for W in weights]


class TorchEpoch:
    """The same epoch in PyTorch: ``nn.Linear(bias=False)`` layers, ``torch.optim.Adam``."""

    def __init__(self, X, y, weights, lr: float) -> None:
        import torch

        self.torch = torch
        dtype = {np.dtype(np.float64): torch.float64, np.dtype(np.float32): torch.float32}[X.dtype]
        layers: list = []
        for l, W in enumerate(weights):
            lin = torch.nn.Linear(W.shape[1], W.shape[0], bias=False, dtype=dtype)
            with torch.no_grad():
                lin.weight.copy_(torch.from_numpy(np.ascontiguousarray(W)))
            layers.append(lin)
            if l < len(weights) - 1:
                layers.append(torch.nn.ReLU())
        self.net = torch.nn.Sequential(*layers)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=lr)
        self.X = torch.from_numpy(X)
        self.y = torch.from_numpy(y)

    def __call__(self) -> float:
        self.opt.zero_grad(set_to_none=True)
        loss = ((self.net(self.X).squeeze(1) - self.y) ** 2).mean()
        loss.backward()
        self.opt.step()
        return float(loss.detach())

    def weights(self) -> list[np.ndarray]:
        return [m.weight.detach().numpy() for m in self.net if hasattr(m, "weight")]  # type: ignore[operator]


def torch_epoch_seconds(d: int, N: int, threads: int, epochs: int, repeats: int,
                        dtype: str = "float64") -> float | None:
    """Median seconds of a torch CPU epoch, timed in a fresh process (``None`` without torch)."""
    cmd = [sys.executable, "-m", "harness.benchmarking.figure2", "--torch-worker",
           json.dumps({"d": d, "N": N, "threads": threads, "epochs": epochs, "repeats": repeats,
                       "dtype": dtype})]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=True).stdout
        return json.loads(out.strip().splitlines()[-1])["seconds"]
    except Exception:
        return None


def _torch_worker(spec: dict) -> None:
    try:
        import torch
    except ImportError:
        print(json.dumps({"seconds": None}))
        return
    torch.set_num_threads(int(spec["threads"]))
    X, y, W = figure2_problem(spec["d"], spec["N"], np.dtype(spec.get("dtype", "float64")))
    epoch = TorchEpoch(X, y, W, 1.0 / (10.0 * np.sqrt(spec["N"])))
    for _ in range(3):
        epoch()
    times = []
    for _ in range(spec["repeats"]):
        t0 = time.perf_counter()
        for _ in range(spec["epochs"]):
            epoch()
        times.append((time.perf_counter() - t0) / spec["epochs"])
    print(json.dumps({"seconds": statistics.median(times)}))


def main(argv: Sequence[str] | None = None) -> None:
    """``--torch-worker SPEC``: time :class:`TorchEpoch` for the JSON ``SPEC`` (d, N, threads,
    epochs, repeats, dtype) and print ``{"seconds": median}`` (``null`` without torch)."""
    parser = argparse.ArgumentParser(prog="python -m harness.benchmarking.figure2")
    parser.add_argument("--torch-worker", required=True, help="JSON: d, N, threads, epochs, repeats, dtype")
    _torch_worker(json.loads(parser.parse_args(argv).torch_worker))


if __name__ == "__main__":
    main()

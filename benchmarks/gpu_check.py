"""GPU check: the ``torch`` backend on CUDA against the ``numba`` CPU backend, on the paper's
largest cells, with the ratio of their times.

    python benchmarks/gpu_check.py                      # on a machine with a CUDA GPU
    python benchmarks/gpu_check.py --device cpu --small # a quick run of the script on the CPU

Needs ``pip install 'harness[torch]'`` with a CUDA build of torch. Without torch, or without a
CUDA device (for ``--device cuda``), it prints why it skips and exits with status 0.

What it times (both backends in this process, on the same arrays, after one warm-up call each;
the best of ``--repeats``):

- Figure 1 (NTK smallest eigenvalue vs width, Bombari et al. 2022): the full NTK Gram matrix
  ``K = sum_l (F_{l-1} F_{l-1}^T) o (B_l B_l^T)`` over all weights of the largest cells:
  L = 3, n_1 = n_2 = d = 977 (i = 955), sigmoid, N in {1000, 2000, 3000}; hidden weights
  N(0, 1/fan_in), output weights N(0, 1), inputs N(0, I_d). Agreement: the relative difference
  of K (max-norm) and of lambda_min(K).
- Figure 2 (memorisation): a full-batch Adam training run at the largest cell: L = 4, widths
  d -> d -> d -> d -> 1 with d = 122 (i = 30), ReLU, N = 12000, targets N(0, 1), mean squared
  error, lr = 1 / (10 sqrt(N)), ``--epochs`` epochs (the figure's runs stop at 10,000 or
  earlier). Each epoch evaluates the loss and gradients on the backend and takes the Adam step
  in NumPy. Agreement: the relative difference of the final loss.

Times include the transfers between host and GPU that the harness's use of the backend makes
(weights up and gradients down every step; K down once). Float64 throughout, as in the
experiments. ``--json FILE`` also writes the numbers.
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time

import numpy as np

FIG1_D = math.floor(math.sqrt(1000 * 955))  # 977
FIG1_N = (1000, 2000, 3000)
FIG2_D = math.floor(math.sqrt(500 * 30))  # 122
FIG2_N = 400 * 30  # 12000


def _network(rng, d: int, hidden: list[int]) -> list[np.ndarray]:
    """Hidden W_l ~ N(0, 1/n_{l-1}), output ~ N(0, 1) (the paper's initialisation)."""
    sizes = [d, *hidden, 1]
    weights = [rng.standard_normal((sizes[i + 1], sizes[i])) / np.sqrt(sizes[i]) for i in range(len(hidden))]
    weights.append(rng.standard_normal((1, sizes[-2])))
    return weights


def _best(fn, repeats: int) -> tuple[float, object]:
    fn()  # warm-up: Numba compilation, CUDA context and library handles
    best, out = math.inf, None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def _rel(a, b) -> float:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    scale = float(np.max(np.abs(b))) or 1.0
    return float(np.max(np.abs(a - b))) / scale


def _lambda_min(K: np.ndarray) -> float:
    from scipy.linalg import eigh

    return float(eigh(K, eigvals_only=True, subset_by_index=[0, 0])[0])


def fig1(cpu, gpu, registry, rng, cells, repeats: int) -> list[dict]:
    act = registry.create("activation", "sigmoid")
    out = []
    for N, d in cells:
        weights, X = _network(rng, d, [d, d]), rng.standard_normal((N, d))
        t_cpu, K_cpu = _best(lambda: cpu.ntk(weights, X, act), repeats)
        t_gpu, K_gpu = _best(lambda: gpu.ntk(weights, X, act), repeats)
        lam_cpu, lam_gpu = _lambda_min(K_cpu), _lambda_min(K_gpu)
        out.append({"case": f"fig1 NTK N={N} d={d} L=3 sigmoid", "cpu_s": t_cpu, "gpu_s": t_gpu,
                    "ratio": t_cpu / t_gpu, "rel_diff_K": _rel(K_gpu, K_cpu),
                    "lambda_min": lam_cpu, "rel_diff_lambda_min": abs(lam_gpu - lam_cpu) / abs(lam_cpu)})
    return out


def fig2(cpu, gpu, registry, rng, N: int, d: int, epochs: int, repeats: int) -> dict:
    act, loss = registry.create("activation", "relu"), registry.create("loss", "mse")
    start, X, y = _network(rng, d, [d, d, d]), rng.standard_normal((N, d)), rng.standard_normal(N)
    shapes = [W.shape for W in start]

    def train(backend):
        engine = backend.gradient_engine(shapes, act, max_rows=N)
        opt = registry.create("optimizer", "adam", {"lr": 1.0 / (10.0 * math.sqrt(N))})
        weights = [W.copy() for W in start]
        state, value = opt.init_state(weights), math.nan
        for _ in range(epochs):
            res = engine.loss_and_grads(weights, X, y, loss)
            value = res.loss
            opt.step(weights, res.grads, state)
        return value

    t_cpu, loss_cpu = _best(lambda: train(cpu), repeats)
    t_gpu, loss_gpu = _best(lambda: train(gpu), repeats)
    return {"case": f"fig2 Adam N={N} d={d} L=4 relu, {epochs} epochs", "cpu_s": t_cpu, "gpu_s": t_gpu,
            "ratio": t_cpu / t_gpu, "final_loss": loss_cpu,
            "rel_diff_final_loss": abs(loss_gpu - loss_cpu) / abs(loss_cpu)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", help="torch device to time (default cuda)")
    parser.add_argument("--small", action="store_true", help="small sizes: check that the script runs")
    parser.add_argument("--epochs", type=int, default=200, help="training epochs of the Figure 2 run")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per case (the best is kept)")
    parser.add_argument("--seed", type=int, default=2022)
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = parser.parse_args(argv)

    try:
        import torch
    except ImportError:
        print("gpu_check skipped: torch is not installed (pip install 'harness[torch]', a CUDA build)")
        return 0
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(f"gpu_check skipped: no CUDA device (torch {torch.__version__}); "
              "run it on a machine with a GPU, or pass --device cpu to try the script")
        return 0

    from harness.plugin.manager import load_registry

    registry = load_registry()
    cpu = registry.create("backend", "numba")
    gpu = registry.create("backend", "torch", {"device": args.device})
    device = gpu.torch_device()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    try:
        import numba

        numba_threads = numba.get_num_threads()
    except Exception:
        numba_threads = None
    from harness.plugin.machine import cpu_model

    header = {"torch": torch.__version__, "cuda": torch.version.cuda, "device": f"{device} ({name})",
              "cpu": cpu_model() or platform.machine(), "numba_threads": numba_threads}
    print(f"gpu_check: torch backend on {header['device']} vs numba on the CPU ({header['cpu']}, "
          f"{numba_threads} threads); torch {header['torch']}, CUDA {header['cuda']}")

    rng = np.random.default_rng(args.seed)
    if args.small:
        cells, (N2, d2), epochs = [(200, 40)], (300, 20), min(args.epochs, 20)
    else:
        cells, (N2, d2), epochs = [(N, FIG1_D) for N in FIG1_N], (FIG2_N, FIG2_D), args.epochs
    results = fig1(cpu, gpu, registry, rng, cells, args.repeats)
    results.append(fig2(cpu, gpu, registry, rng, N2, d2, epochs, args.repeats))
    label = f"torch-{device.type}"
    for r in results:
        agree = ", ".join(f"{k[9:]} {v:.1e}" for k, v in r.items() if k.startswith("rel_diff_"))
        print(f"{r['case']:<44} numba {r['cpu_s']:9.4f} s   {label} {r['gpu_s']:9.4f} s   "
              f"ratio {r['ratio']:7.2f}x   rel. diff: {agree}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"environment": header, "results": results}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())

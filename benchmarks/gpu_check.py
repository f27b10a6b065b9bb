"""GPU check: the ``torch`` backend on CUDA against the ``numba`` CPU backend, on the paper's
largest cells, with the ratio of their times, and a whole Figure 2 threshold point.

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
- A whole Figure 2 threshold point (leave it out with ``--no-point``): the threshold
  search of ``benchmarks/memorization_threshold.toml`` (its levels, tolerance, start, window
  rule and epoch budget) at d = 122, run for real on the device: every axis value N the search
  visits trains ``--repetitions`` (10) networks in float32 as one stack to their stopping rule,
  and their mean log10(reported_loss) steers the search, round by round, to N* at every level.
  The CPU engine trains the same stack for ``--cpu-epochs`` epochs at each N; its time per
  network-epoch times the epochs the device's networks ran gives the CPU's time for the point.

Times include the transfers between host and GPU that the harness's use of the backend makes
(weights up and gradients down every step; K down once). Float64 for the first two cases, as in
the experiments; float32 for the threshold point, as the authors trained. ``--json FILE`` also
writes the numbers.
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

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


BENCHMARK = Path(__file__).resolve().parent / "memorization_threshold.toml"


def _members(registry, N: int, d: int, repetitions: int, seed: int, max_epochs: int, window: int | None,
             lr_rule: str, dtype=np.float32) -> list:
    """One network per repetition as :func:`harness.engine.batched_training.train_batch` takes
    it: the paper's initialisation, x ~ N(0, I_d), y ~ N(0, 1), Adam with ``lr_rule``, the
    window rule and the epoch budget; data and weights in ``dtype``, from seeds of (N, d, r)."""
    from harness.engine.batched_training import Member
    from harness.engine.stopping import WindowRule
    from harness.plugin.expressions import evaluate

    lr = float(evaluate(lr_rule, {"N": N, "d": d}))
    out = []
    for r in range(repetitions):
        rng = np.random.default_rng([seed, N, d, r])
        weights = [W.astype(dtype) for W in _network(rng, d, [d, d, d])]
        X, y = rng.standard_normal((N, d)).astype(dtype), rng.standard_normal(N).astype(dtype)
        out.append(Member(weights, X, y, registry.create("optimizer", "adam", {"lr": lr}),
                          rules=[WindowRule(window)] if window else [], max_epochs=max_epochs))
    return out


def run_point(registry, gpu, i: int = 30, repetitions: int = 10, cpu_epochs: int = 20, max_epochs: int | None = None,
              d: int | None = None, window: int | None = None, seed: int = 2022, log=print) -> dict:
    """The threshold search of ``memorization_threshold.toml`` at one grid point, run on ``gpu``
    (float32 stacks of ``repetitions`` networks trained to their stopping rule at every N the
    search visits), with the CPU engine timed for ``cpu_epochs`` epochs of the same stack at
    each N. ``d``, ``window`` and ``max_epochs`` replace the file's (small runs). Returns the
    values visited (N, seconds on the device, epochs, CPU seconds per network-epoch, the CPU's
    estimate), the thresholds per level and the totals."""
    from harness.engine.batched_training import train_batch
    from harness.runner.search import PointWalk
    from harness.spec import load_spec
    from harness.spec.search import PointSearch

    spec = load_spec(BENCHMARK, [f"experiments.threshold.grid.i=[{i}]"], registry=registry)
    (exp,) = spec.experiments
    (point,) = exp.point_searches(spec.seed)
    s = point.search
    d = int(d if d is not None else point.coords["d"])
    start = point.start if d == point.coords["d"] else s.clamp(point.start * d * d / point.coords["d"] ** 2)
    window = int(window if window is not None else exp.params["window"])
    max_epochs = int(max_epochs if max_epochs is not None else exp.params["max_epochs"])
    act, loss = registry.create("activation", "relu"), registry.create("loss", "mse")
    walk = PointWalk(s, PointSearch(point.experiment_id, s, {"d": d}, start, None).start)
    visited = []
    log(f"fig2 threshold point: d = {d}, {repetitions} repetitions, float32, levels "
        f"{', '.join(f'{v:g}' for v in s.levels)}, N from {start} ({BENCHMARK.name}; device {gpu.torch_device()})")
    while walk.todo:
        aggregates = {}
        for N in walk.todo:
            members = _members(registry, int(N), d, repetitions, seed, max_epochs, window, exp.params["lr_rule"])
            t0 = time.perf_counter()
            results = train_batch(members, act, loss, backend=gpu)
            device_s = time.perf_counter() - t0
            timing = _members(registry, int(N), d, repetitions, seed, cpu_epochs, None, exp.params["lr_rule"])
            t0 = time.perf_counter()
            train_batch(timing, act, loss)
            cpu_per_epoch = (time.perf_counter() - t0) / (cpu_epochs * repetitions)
            epochs = [res.epochs for res in results]
            rows = [{"status": "diverged" if res.diverged else "ok",
                     "metrics": {"reported_loss": res.rules.get("reported_loss")}} for res in results]
            aggregates[N] = sum(s.value_of(r) for r in rows) / len(rows)
            entry = {"N": int(N), "device_s": device_s, "epochs": epochs, "mean_log10_reported": aggregates[N],
                     "cpu_s_per_network_epoch": cpu_per_epoch, "cpu_s_estimate": cpu_per_epoch * sum(epochs),
                     "early_stopped": sum(1 for res in results if res.stop_reason == "window")}
            entry["ratio"] = entry["cpu_s_estimate"] / device_s
            visited.append(entry)
            log(f"  N = {N:>6}: mean log10 reported {aggregates[N]:7.3f}; epochs median "
                f"{float(np.median(epochs)):6.0f} ({entry['early_stopped']}/{repetitions} stopped early); "
                f"device {device_s:8.2f} s, CPU {entry['cpu_s_estimate']:9.1f} s (estimated), "
                f"ratio {entry['ratio']:6.1f}x")
        walk.record(aggregates)
    levels = [{"level": lv.level, "status": lv.status, "threshold": lv.threshold, "lower": lv.lower,
               "upper": lv.upper} for lv in walk.levels]
    device_total = sum(v["device_s"] for v in visited)
    cpu_total = sum(v["cpu_s_estimate"] for v in visited)
    for lv in levels:
        found = f"N* = {lv['threshold']:.1f} ({lv['lower']}-{lv['upper']})" if lv["threshold"] else "-"
        log(f"  level {lv['level']:g}: {lv['status']} {found}")
    log(f"  the point: {len(visited)} values of N; device {device_total:.1f} s, CPU {cpu_total:.1f} s (estimated), "
        f"ratio {cpu_total / device_total:.1f}x")
    return {"case": f"fig2 threshold point d={d} x {repetitions} float32", "d": d, "repetitions": repetitions,
            "visited": visited, "levels": levels, "device_s": device_total, "cpu_s_estimate": cpu_total,
            "ratio": cpu_total / device_total}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", help="torch device to time (default cuda)")
    parser.add_argument("--small", action="store_true", help="small sizes: check that the script runs")
    parser.add_argument("--epochs", type=int, default=200, help="training epochs of the Figure 2 run")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per case (the best is kept)")
    parser.add_argument("--seed", type=int, default=2022)
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--no-point", dest="point", action="store_false",
                        help="leave out the whole Figure 2 threshold point")
    parser.add_argument("--i", type=int, default=30, help="the threshold point's grid index: d = floor(sqrt(500 i))")
    parser.add_argument("--repetitions", type=int, default=10, help="networks trained at each N of the point")
    parser.add_argument("--cpu-epochs", type=int, default=20, help="epochs the CPU engine is timed at each N")
    parser.add_argument("--max-epochs", type=int, default=None,
                        help="the point's epoch budget (default: the benchmark file's, 10,000)")
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
    point = None
    if args.point:
        small = {"d": 16, "repetitions": 3, "max_epochs": 600, "window": 50, "cpu_epochs": 3} if args.small else {}
        point = run_point(registry, gpu, i=args.i, repetitions=small.get("repetitions", args.repetitions),
                          cpu_epochs=small.get("cpu_epochs", args.cpu_epochs),
                          max_epochs=small.get("max_epochs", args.max_epochs), d=small.get("d"),
                          window=small.get("window"), seed=args.seed, log=print)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"environment": header, "results": results, "point": point}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())

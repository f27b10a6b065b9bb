"""Training many small networks: batched training against one network at a time.

For each size (d, N) of the Figure-2 network (ReLU, d -> d -> d -> d -> 1, MSE, full-batch Adam,
lr 1/(10 sqrt N)) and each number of networks R, the milliseconds of one epoch *per network*:

- ``batched``: :func:`harness.engine.batched_training.train_batch` on R networks (each its own
  data and weights), threads over the networks as the engine chooses (this process's threads);
- ``single``: :func:`harness.engine.training.train`, one network after the other (the same
  compiled loss-and-gradient kernel on a stack of one, :mod:`harness.engine.chain_kernels`);
- ``engine``: the same ``train`` with the kernel off (a mean-squared-error component without
  ``jit_code``): the NumPy engine, one BLAS call and one element-wise kernel per layer from
  Python, which was the single path before the fused kernel (and still runs for losses and
  activations the kernel does not compute);
- ``numpy``: a plain NumPy forward / backward / Adam epoch of one network, as a user would
  write it;
- ``torch``: the same epoch in PyTorch on the CPU (``nn.Linear(bias=False)``, ``optim.Adam``),
  timed in its own process with the same number of threads, when torch is installed;
- ``floor``: the fraction of the GEMM floor the batched path reaches: the epoch's ``6 N P``
  flops at the GEMM rate of its dtype measured in this process (DGEMM for float64, SGEMM for
  float32: the best of a few 1000 x 1000 products with the same threads), divided by the
  batched time.

``--dtype float64`` (default), ``float32`` or ``float64,float32``: the precision of the
networks (data, weights, Adam's state and the products: SGEMM in float32). With both, each line
is timed in both dtypes side by side, and the column ``f64/this`` gives the float64 batched
time over this dtype's, measured round by round (its median).

The in-process columns are timed in alternation (batched, single, engine, numpy, batched, ...;
dtype by dtype within a round) so that they see the same machine load; the table gives medians
over ``--repeats`` rounds and the ratios single / batched and engine / batched measured round by
round (their medians).

Run: ``harness bench train [--sizes 22x400,38x1200,50x2500,122x12000] [--R 1,10]
[--repeats 5] [--threads T] [--seconds 1.0] [--dtype float64,float32]``. Each timing trains
about ``--seconds`` of the single path (about 100 epochs at d = 38, N = 1200; the same epochs in
every dtype): the one-off costs of a call (stacking the members, their final outputs) then weigh
as little as in the studies' runs of hundreds to thousands of epochs.

``--blocks 64,107,160`` times instead the loss-and-gradient kernel alone
(:func:`harness.engine.chain_kernels.mse_loss_and_grads`, one thread) on a stack of R networks
for each number of rows per block, in alternation: microseconds per network, best and median
over the rounds (the measurement behind ``BLOCK_BYTES``; docs/engine.md); with MKL installed
(:mod:`harness.engine.kernel_blas`), each block size with SciPy's OpenBLAS, MKL's CBLAS GEMM
and MKL's JIT GEMMs (``openblas``, ``mkl``, ``mkl-jit``); in each ``--dtype``.
"""
from __future__ import annotations

import argparse
import statistics
import time
from typing import Sequence

import numpy as np

from .figure2 import figure2_problem, torch_epoch_seconds
from .tables import Column, check_writable, markdown_table, write_markdown

SIZES = ((22, 400), (38, 1200), (50, 2500), (122, 12000))

DTYPES = ("float64", "float32")
"""The dtypes ``--dtype`` takes."""


def problem(d: int, N: int, R: int, seed: int = 0, dtype=np.float64):
    """``R`` Figure-2 problems of size (d, N) in ``dtype`` (the float64 draws rounded):
    ``[(X, y, weights)]``."""
    return [figure2_problem(d, N, dtype, seed + r) for r in range(R)]


def flops_per_epoch(d: int, N: int) -> float:
    from ..engine.evaluation_cost import engine_flops

    return engine_flops([(d, d)] * 3 + [(1, d)], N)


def numpy_epochs(X, y, weights, lr: float, epochs: int) -> list[np.ndarray]:
    """Plain NumPy full-batch Adam epochs of the ReLU network (what a user would write)."""
    W = [w.copy() for w in weights]
    m = [np.zeros_like(w) for w in W]
    v = [np.zeros_like(w) for w in W]
    b1, b2, eps = 0.9, 0.999, 1e-8
    N = X.shape[0]
    for t in range(1, epochs + 1):
        F, G = [X], []
        for w in W[:-1]:
            g = F[-1] @ w.T
            G.append(g)
            F.append(np.maximum(g, 0.0))
        out = F[-1] @ W[-1][0]
        r = 2.0 * (out - y) / N
        grads = [None] * len(W)
        grads[-1] = (r @ F[-1])[None, :]
        D = np.outer(r, W[-1][0]) * (G[-1] > 0)
        for l in range(len(W) - 2, -1, -1):
            grads[l] = D.T @ F[l]
            if l > 0:
                D = (D @ W[l]) * (G[l - 1] > 0)
        for w, g, mm, vv in zip(W, grads, m, v):
            mm *= b1
            mm += (1 - b1) * g
            vv *= b2
            vv += (1 - b2) * g * g
            w -= lr * (mm / (1 - b1 ** t)) / (np.sqrt(vv / (1 - b2 ** t)) + eps)
    return W


def _components(fused: bool = True):
    from harness.plugin.manager import load_registry

    registry = load_registry()
    loss = registry.create("loss", "mse")
    if not fused:
        loss.jit_code = None  # the training engines then call value/grad: the NumPy engine
    return registry, registry.create("activation", "relu"), loss


def _time_batched(data, lr, epochs, threads):
    from ..engine.batched_training import Member, train_batch

    registry, act, loss = _components()
    members = [Member(W, X, y, registry.create("optimizer", "adam", {"lr": lr}), max_epochs=epochs)
               for X, y, W in data]
    t0 = time.perf_counter()
    results = train_batch(members, act, loss, threads=threads)
    return (time.perf_counter() - t0) / (len(data) * epochs), results


def _time_single(data, lr, epochs, fused: bool = True):
    from ..engine.training import train

    registry, act, loss = _components(fused)
    t0 = time.perf_counter()
    results = [train(W, X, y, act, loss, registry.create("optimizer", "adam", {"lr": lr}), max_epochs=epochs)
               for X, y, W in data]
    return (time.perf_counter() - t0) / (len(data) * epochs), results


def _time_numpy(data, lr, epochs):
    X, y, W = data[0]
    t0 = time.perf_counter()
    numpy_epochs(X, y, W, lr, epochs)
    return (time.perf_counter() - t0) / epochs


SETTLE_SECONDS = 0.3
"""Pause before each timing: OpenBLAS's worker threads spin for a while after a
multi-threaded call (here, the plain NumPy column's), and a spinning thread takes a core from
whatever is timed next (measured at d = 38, N = 1200, R = 10 on 2 cores: the batched path's
two threads took 0.88 ms per network timed right after the NumPy column, 0.59 ms after the
pause)."""


def _settle() -> None:
    time.sleep(SETTLE_SECONDS)


def measure(d: int, N: int, R: int, repeats: int = 5, threads: int | None = None,
            seconds: float = 1.0, torch: bool = True, dtypes: Sequence[str] = ("float64",)) -> list[dict]:
    """The lines of the table for one size and R, one per dtype of ``dtypes``, timed in
    alternation (seconds per epoch per network; see the module docstring)."""
    from threadpoolctl import threadpool_limits

    from ..engine.threads import engine_threads
    from ..plugin.machine import dgemm_gflops

    threads = engine_threads(threads)
    dtypes = [np.dtype(t).name for t in dtypes]
    data = {t: problem(d, N, R, dtype=np.dtype(t)) for t in dtypes}
    lr = 1.0 / (10.0 * np.sqrt(N))
    rates = {t: 1e9 * dgemm_gflops(1000, 5, threads, t)["gflops"] for t in dict.fromkeys(["float64", *dtypes])}
    columns = ("batched", "single", "engine", "numpy")
    times: dict[str, dict[str, list[float]]] = {t: {c: [] for c in columns} for t in dtypes}
    same = {}
    with threadpool_limits(limits=threads, user_api="blas"):
        for t in dtypes:  # warm up (compilation) and check that both paths give the same weights
            part = data[t][:2] if R > 1 else data[t]
            _, b = _time_batched(part, lr, 2, threads)
            _, s = _time_single(part, lr, 2)
            same[t] = all(np.array_equal(u, w) for rb, rs in zip(b, s) for u, w in zip(rb.weights, rs.weights))
        guess = max(_time_single(data[dtypes[0]][:1], lr, 3)[0], 1e-5)
        epochs = max(3, int(seconds / (guess * R)))
        for _ in range(repeats):
            for t in dtypes:
                T = times[t]
                _settle()
                T["batched"].append(_time_batched(data[t], lr, epochs, threads)[0])
                _settle()
                T["single"].append(_time_single(data[t], lr, epochs)[0])
                _settle()
                T["engine"].append(_time_single(data[t], lr, epochs, fused=False)[0])
                _settle()
                T["numpy"].append(_time_numpy(data[t], lr, max(3, epochs * R // 2)))
    rows = []
    for t in dtypes:
        T = times[t]
        batched = statistics.median(T["batched"])
        tt = torch_epoch_seconds(d, N, threads, max(3, epochs * R // 2), repeats, t) if torch else None
        over = (statistics.median([a / b for a, b in zip(times["float64"]["batched"], T["batched"])])
                if "float64" in times else None)
        rows.append({
            "d": d, "N": N, "R": R, "dtype": t, "threads": threads, "epochs": epochs,
            "dgemm_gflops": rates["float64"] / 1e9, "gemm_gflops": rates[t] / 1e9,
            "batched": batched, "single": statistics.median(T["single"]),
            "engine": statistics.median(T["engine"]), "numpy": statistics.median(T["numpy"]), "torch": tt,
            "single_over_batched": statistics.median([a / b for a, b in zip(T["single"], T["batched"])]),
            "engine_over_batched": statistics.median([a / b for a, b in zip(T["engine"], T["batched"])]),
            "float64_over_this": over,
            "floor_fraction": flops_per_epoch(d, N) / rates[t] / batched, "identical": same[t]})
    return rows


def kernel_block_times(d: int, N: int, R: int, blocks: Sequence[int], repeats: int = 9,
                       dtype=np.float64) -> dict:
    """Seconds per network of one kernel evaluation on a stack of ``R`` Figure-2 networks in
    ``dtype``, for each block size and each way the kernel can call its products here (SciPy's
    OpenBLAS; when :mod:`harness.engine.kernel_blas` loaded MKL, also MKL's CBLAS GEMM and MKL's
    JIT GEMMs): ``{(library, block): (best, median)}`` over ``repeats`` alternating rounds."""
    from ..engine.chain_kernels import ACTIVATION_CODES, BlockBuffers, jit_slots, jit_table, mse_loss_and_grads
    from ..engine.kernel_blas import kernel_blas
    from ..engine.threads import blas_threads

    dtype = np.dtype(dtype)
    data = problem(d, N, R, dtype=dtype)
    X = np.stack([x for x, _, _ in data])
    y = np.stack([t for _, t, _ in data])
    W = tuple(np.stack([w[l] for _, _, w in data]) for l in range(len(data[0][2])))
    shapes = [w.shape[1:] for w in W]
    grads = tuple(np.empty_like(w) for w in W)
    flags = np.ones(len(W), dtype=np.bool_)
    out, values = np.empty((R, N), dtype=dtype), np.empty(R, dtype=dtype)
    chosen = kernel_blas()
    none = np.zeros((2, jit_slots(len(shapes)), 2), np.int64)
    # library -> (gemm address, JIT table per block size, owners of the JIT kernels)
    libraries: dict[str, tuple[int, dict, list]] = {"openblas": (0, {b: none for b in blocks}, [])}
    if chosen.name == "mkl":
        libraries["mkl"] = (chosen.address(dtype), {b: none for b in blocks}, [])
        tables = {b: jit_table(shapes, b, N, dtype, chosen) for b in blocks}
        libraries["mkl-jit"] = (chosen.address(dtype), {b: t[0] for b, t in tables.items()},
                                [t[1] for t in tables.values()])
    buffers = {b: BlockBuffers(shapes, dtype, rows=b) for b in blocks}
    times: dict[tuple[str, int], list[float]] = {(lib, b): [] for b in blocks for lib in libraries}
    with blas_threads(1):
        for rnd in range(repeats + 1):
            for lib, b in times:
                bb = buffers[b]
                gemm, jits, _ = libraries[lib]
                t0 = time.perf_counter()
                mse_loss_and_grads(W, X, y, grads, flags, 0, ACTIVATION_CODES["relu"], bb.F, bb.P,
                                   bb.Da, bb.Db, bb.s, bb.T, bb.U, out, values, R, gemm, jits[b])
                if rnd:  # the first round compiles and warms up
                    times[(lib, b)].append((time.perf_counter() - t0) / R)
    return {key: (min(v), statistics.median(v)) for key, v in times.items()}


def _kernel_products(d: int, dtype) -> str:
    """Which library the training kernel's products use here (:mod:`harness.engine.kernel_blas`)
    for a d x d layer in ``dtype``: MKL compiles JIT GEMMs on Intel processors only."""
    from ..engine.kernel_blas import kernel_blas

    chosen = kernel_blas()
    if chosen.name != "mkl":
        return "SciPy's OpenBLAS"
    return "MKL (JIT GEMMs)" if chosen.jit_gemm(64, d, d, False, dtype) is not None else \
        "MKL (CBLAS GEMM; no JIT GEMM on this processor)"


def _dtypes(parser: argparse.ArgumentParser, text: str) -> list[str]:
    names = [t.strip() for t in text.split(",") if t.strip()]
    bad = [t for t in names if t not in DTYPES]
    if bad or not names:
        parser.error(f"--dtype {text!r}: allowed values are {', '.join(DTYPES)}, or both comma-separated")
    return list(dict.fromkeys(names))


def main(argv: Sequence[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(prog="harness bench train", description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=",".join(f"{d}x{N}" for d, N in SIZES))
    parser.add_argument("--R", default="1,10", help="numbers of networks trained together")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seconds", type=float, default=1.0, help="target seconds of one timing")
    parser.add_argument("--dtype", default="float64",
                        help="float64 (default), float32, or float64,float32 to time both side by side")
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument("--blocks", default=None,
                        help="time the kernel alone for these rows per block (e.g. 64,107,160)")
    parser.add_argument("--markdown", metavar="FILE", default=None,
                        help="also write the table as Markdown to FILE (for generated results pages)")
    args = parser.parse_args(argv)
    if args.markdown and check_writable(args.markdown):
        parser.error(check_writable(args.markdown))
    dtypes = _dtypes(parser, args.dtype)
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    Rs = [int(r) for r in args.R.split(",")]
    if args.blocks:
        from ..engine.chain_kernels import block_rows

        blocks = [int(b) for b in args.blocks.split(",")]
        print("us per network of one loss-and-gradient kernel call (best / median), one thread, "
              "by rows per block")
        for d, N in sizes:
            for t in dtypes:
                default = block_rows([(d, d)] * 3 + [(1, d)], np.dtype(t))
                times = kernel_block_times(d, N, max(Rs), blocks, max(3, args.repeats), np.dtype(t))
                cells = "  ".join(f"{b} ({lib}): {1e6 * v[0]:.0f} / {1e6 * v[1]:.0f}"
                                  for (lib, b), v in times.items())
                print(f"d = {d}, N = {N}, R = {max(Rs)}, {t} (default block {default}): {cells}", flush=True)
        return []
    rows = []
    header = (f"{'d':>4} {'N':>6} {'R':>3} {'dtype':>7} {'batched ms':>10} {'single ms':>9} {'engine ms':>9} "
              f"{'single/batched':>14} {'engine/batched':>14} {'f64/this':>8} "
              f"{'numpy ms':>8} {'torch ms':>8} {'GEMM floor':>10} {'same':>5}")
    printed = False
    for d, N in sizes:
        for R in Rs:
            for r in measure(d, N, R, args.repeats, args.threads, args.seconds, torch=not args.no_torch,
                             dtypes=dtypes):
                rows.append(r)
                if not printed:
                    print(table_title(r, dtypes, args.repeats))
                    print(header)
                    print("-" * len(header))
                    printed = True
                torch_ms = f"{1e3 * r['torch']:8.3f}" if r["torch"] is not None else f"{'-':>8}"
                over = f"{r['float64_over_this']:8.2f}" if r["float64_over_this"] is not None else f"{'-':>8}"
                print(f"{d:>4} {N:>6} {R:>3} {r['dtype']:>7} {1e3 * r['batched']:10.3f} {1e3 * r['single']:9.3f} "
                      f"{1e3 * r['engine']:9.3f} {r['single_over_batched']:14.2f} "
                      f"{r['engine_over_batched']:14.2f} {over} {1e3 * r['numpy']:8.3f} {torch_ms} "
                      f"{r['floor_fraction']:10.2f} {str(r['identical']):>5}", flush=True)
    if args.markdown and rows:
        write_markdown(args.markdown, markdown_table(rows, MARKDOWN_COLUMNS,
                                                     [table_title(rows[0], dtypes, args.repeats)]),
                       title="harness bench train")
    return rows


def _ms(seconds: float) -> str:
    return f"{1e3 * seconds:.3f}"


MARKDOWN_COLUMNS = (Column("d", "d"), Column("N", "N"), Column("R", "R"), Column("dtype", "dtype"),
                    Column("batched", "batched ms", _ms), Column("single", "single ms", _ms),
                    Column("engine", "engine ms", _ms),
                    Column("single_over_batched", "single/batched", "{:.2f}"),
                    Column("engine_over_batched", "engine/batched", "{:.2f}"),
                    Column("float64_over_this", "f64/this", "{:.2f}"), Column("numpy", "numpy ms", _ms),
                    Column("torch", "torch ms", _ms), Column("floor_fraction", "GEMM floor", "{:.2f}"),
                    Column("identical", "same"))
"""The columns of the printed table, for ``--markdown``."""


def table_title(row: dict, dtypes: Sequence[str], repeats: int) -> str:
    """The line above the table: what one cell means and how it was measured (the GEMM rates
    of this machine, DGEMM and, with float32, SGEMM; which library the kernel's products use)."""
    rates = ", ".join(f"{'DGEMM' if t == 'float64' else 'SGEMM'} "
                      f"{(row['dgemm_gflops'] if t == 'float64' else row['gemm_gflops']):.0f} GFLOP/s"
                      for t in dict.fromkeys(["float64", *dtypes]))
    products = "; ".join(f"{t}: {_kernel_products(row['d'], np.dtype(t))}" for t in dtypes)
    return (f"ms per epoch per network, full-batch Adam, Figure-2 network (ReLU, d -> d -> d -> d -> 1), "
            f"{row['threads']} thread(s), {rates}, median of {repeats}; the kernel's products: {products}")


if __name__ == "__main__":
    main()

"""Speed of the NTK Gram matrix and of its smallest eigenvalue against what a user would write.

For a 3-layer sigmoid network d -> d -> d -> 1 (Figure 1 of Bombari et al.; hidden weights
N(0, 1/d), output N(0, 1)) on N Gaussian inputs, at each size ``(d, N)``, two pairs:

- the NTK Gram matrix K = J J^T: ours, :func:`harness.engine.ntk.ntk_gram`, against the plain
  formula of :mod:`harness.benchmarking.plain_ntk` (NumPy only: forward pass, back-propagated
  signals, ``K = sum_l (F_{l-1} F_{l-1}^T) * (B_l B_l^T)``);
- lambda_min(K): ours, :func:`harness.engine.eigen.extreme_eigenvalues` with the defaults the
  studies use (solver ``auto``, tol 1e-9; it also returns lambda_max), against
  ``scipy.linalg.eigvalsh(K, subset_by_index=[0, 0])`` (LAPACK dsyevr, lambda_min alone).

Each pair runs interleaved: ours, baseline, ours, baseline, ... (``repeats`` of each), each run
after a short pause (:data:`SETTLE_S`), so that both sides see the same machine load. Columns:

- ``ntk_s`` / ``plain_s``: median seconds; ``ntk_vs_plain``: the median of the per-pair ratios
  baseline / ours; ``ntk_floor``: the fraction of the DGEMM floor reached (the structured
  flops :func:`structured_flops` at the DGEMM rate, over ``ntk_s``);
- ``lmin_s`` / ``eigvalsh_s`` / ``lmin_vs_eigvalsh``: the same for lambda_min;
  ``lmin_solver``: the solver that produced our number (``solver:method`` as recorded in a
  result row); ``lmin_x_floor``: ``lmin_s`` over the float64 Cholesky floor, N^3/3 flops at
  the DGEMM rate; ``lmin_rel_diff``: |ours - dsyevr| / dsyevr.

The DGEMM rate in the header is measured here with a plain ``np.dot`` of 2048 x 2048 float64
matrices with the same threads, the best of 5 before and 5 after the sizes (the floors use it).

Run: ``harness bench ntk [--sizes 234x500,504x1000,...] [--threads T] [--repeats R]
[--markdown FILE]`` (``--markdown``: also write the header and the table as Markdown to FILE,
for generated results pages; progress goes to stderr).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Callable, Sequence

import numpy as np

from . import plain_ntk
from .tables import Column, check_writable, markdown_table, text_table, write_markdown

DEFAULT_SIZES = ((234, 500), (504, 1000), (680, 2000), (977, 3000), (512, 4096))
"""(d, N): d from the Figure-1 grid d = floor(sqrt(1000 i)); N from 500 to 4096."""

COLUMNS = (Column("d", "d", "{:d}"), Column("N", "N", "{:d}"),
           Column("ntk_s", "ntk_s", "{:.4f}"), Column("plain_s", "plain_s", "{:.4f}"),
           Column("ntk_vs_plain", "ntk_vs_plain", "{:.2f}x"), Column("ntk_floor", "ntk_floor", "{:.2f}"),
           Column("lmin_s", "lmin_s", "{:.4f}"), Column("eigvalsh_s", "eigvalsh_s", "{:.4f}"),
           Column("lmin_vs_eigvalsh", "lmin_vs_eigvalsh", "{:.2f}x"),
           Column("lmin_solver", "lmin_solver", "{}"), Column("lmin_x_floor", "lmin_x_floor", "{:.1f}"),
           Column("lmin_rel_diff", "lmin_rel_diff", "{:.1e}"))

SETTLE_S = 0.15
"""Pause before each timed run: after a multi-threaded call, OpenBLAS's worker threads keep
spinning for about 0.1 s and would take a core from whatever runs next."""


def structured_flops(sizes: Sequence[int], N: int) -> float:
    """Flops of the structured NTK for layer sizes [n_0, ..., n_L = 1]: forward and backward
    products (2 N n_l n_{l-1} each) and one symmetric Gram (N^2 n) per factor."""
    L = len(sizes) - 1
    forward = sum(2.0 * N * sizes[l] * sizes[l - 1] for l in range(1, L))
    backward = sum(2.0 * N * sizes[l] * sizes[l - 1] for l in range(2, L))
    grams = float(N) * N * (sum(sizes[:L]) + sum(sizes[1:L]))
    return forward + backward + grams


def cholesky_floor_s(N: int, dgemm_gflops: float) -> float:
    """Seconds of N^3/3 flops (a float64 Cholesky factorisation) at the DGEMM rate."""
    return N ** 3 / 3.0 / (dgemm_gflops * 1e9)


def paired_times(ours: Callable[[], object], baseline: Callable[[], object], repeats: int,
                 settle: float = SETTLE_S) -> dict:
    """Run ``ours`` and ``baseline`` alternately, ``repeats`` times each (ours first), each after
    a pause of ``settle`` seconds. ``{"ours": median s, "baseline": median s, "ratio": median of
    the per-pair ratios baseline / ours, "ratios": [...]}``."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    t_ours: list[float] = []
    t_base: list[float] = []
    for _ in range(repeats):
        for fn, out in ((ours, t_ours), (baseline, t_base)):
            time.sleep(settle)
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
    ratios = [b / a for a, b in zip(t_ours, t_base)]
    return {"ours": statistics.median(t_ours), "baseline": statistics.median(t_base),
            "ratio": statistics.median(ratios), "ratios": ratios}


def solver_label(result) -> str:
    """``solver`` or ``solver:method`` of a :class:`harness.engine.eigen.SpectrumResult`."""
    method = result.extra.get("method")
    return f"{result.solver}:{method}" if method else result.solver


def bench_size(d: int, N: int, *, repeats: int, dgemm: float, seed: int = 0) -> dict:
    """One row of the table (see the module docstring for the keys)."""
    from harness.engine.eigen import extreme_eigenvalues
    from harness.engine.ntk import ntk_gram
    from harness.plugin.manager import load_registry

    weights, X = plain_ntk.figure1_problem(d, N, seed)
    sigmoid = load_registry().create("activation", "sigmoid")
    K = ntk_gram(weights, X, sigmoid)  # warm-up: compiled kernels load from the cache
    ref = plain_ntk.plain_ntk(weights, X)
    ntk_diff = float(np.abs(K - ref).max() / np.abs(ref).max())
    del ref
    ntk = paired_times(lambda: ntk_gram(weights, X, sigmoid), lambda: plain_ntk.plain_ntk(weights, X),
                       repeats)
    box: dict = {"ours": extreme_eigenvalues(K)}  # warm-up

    def ours():
        box["ours"] = extreme_eigenvalues(K)

    def baseline():
        box["baseline"] = plain_ntk.plain_lambda_min(K)

    eig = paired_times(ours, baseline, repeats)
    res, lo = box["ours"], box["baseline"]
    row = {"d": d, "N": N, "ntk_s": ntk["ours"], "plain_s": ntk["baseline"], "ntk_vs_plain": ntk["ratio"],
           "ntk_rel_diff": ntk_diff, "lmin_s": eig["ours"], "eigvalsh_s": eig["baseline"],
           "lmin_vs_eigvalsh": eig["ratio"], "lmin_solver": solver_label(res),
           "lmin_rel_diff": abs(res.lambda_min - lo) / abs(lo), "lambda_min": lo,
           "lambda_max": res.lambda_max, "ntk_ratios": ntk["ratios"], "lmin_ratios": eig["ratios"]}
    rescale_floors(row, dgemm)
    return row


def rescale_floors(row: dict, dgemm: float) -> None:
    """Recompute the row's floor columns for the DGEMM rate ``dgemm`` (GFLOP/s)."""
    sizes = [row["d"], row["d"], row["d"], 1]
    row["ntk_floor"] = structured_flops(sizes, row["N"]) / (dgemm * 1e9) / row["ntk_s"]
    row["cholesky_floor_s"] = cholesky_floor_s(row["N"], dgemm)
    row["lmin_x_floor"] = row["lmin_s"] / row["cholesky_floor_s"]


def notes(threads: int, dgemm: float, repeats: int, cpu: str | None) -> list[str]:
    """The header: what was measured, how, and on what machine."""
    return [
        "NTK Gram matrix K = J J^T of a 3-layer sigmoid network d -> d -> d -> 1 (Figure 1 of "
        "Bombari et al., 2022) on N Gaussian inputs, and its smallest eigenvalue.",
        f"Machine: {cpu or 'unknown CPU'}; {threads} BLAS and Numba thread(s); DGEMM "
        f"{dgemm:.1f} GFLOP/s (np.matmul of two 2048 x 2048 float64 matrices, the best of 5 before "
        "and 5 after the benchmark).",
        "Baselines, NumPy and SciPy only (harness/benchmarking/plain_ntk.py): the plain formula "
        "(forward pass, back-propagated signals, K = sum_l (F_{l-1} F_{l-1}^T) * (B_l B_l^T)) and "
        "scipy.linalg.eigvalsh(K, subset_by_index=[0, 0]) (LAPACK dsyevr). Ours: "
        "harness.engine.ntk.ntk_gram and harness.engine.eigen.extreme_eigenvalues with the "
        "studies' defaults (solver auto, tol 1e-9); lmin_solver names the solver that ran.",
        f"Times in seconds: medians of {repeats} runs, ours and the baseline alternating; ratios "
        "(baseline / ours): medians of the per-pair ratios. ntk_floor: the fraction of the DGEMM "
        "floor reached; lmin_x_floor: lmin_s over the float64 Cholesky floor (N^3/3 flops at the "
        "DGEMM rate).",
    ]


def main(sizes: Sequence[tuple[int, int]] | None = None, threads: int | None = None,
         repeats: int = 5, markdown: str | None = None, verbose: bool = True) -> list[dict]:
    """Run the benchmark at ``sizes`` (pairs ``(d, N)``) with ``threads`` BLAS and Numba
    threads; print the table if ``verbose``, write it as Markdown to the file ``markdown`` if
    given; return its rows."""
    import numba
    from threadpoolctl import threadpool_info, threadpool_limits

    from harness.plugin.machine import dgemm_gflops
    from harness.runner.envinfo import cpu_model

    if threads is None:
        counts = [i["num_threads"] for i in threadpool_info() if i.get("user_api") == "blas"]
        threads = max(counts, default=1)
    threads = max(1, int(threads))
    saved = numba.get_num_threads()
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))  # type: ignore[attr-defined]
    rows = []
    try:
        with threadpool_limits(limits=threads, user_api="blas"):
            dgemm = dgemm_gflops(2048, 5, threads)["gflops"]
            for d, N in (sizes or DEFAULT_SIZES):
                rows.append(bench_size(int(d), int(N), repeats=repeats, dgemm=dgemm))
                if verbose:
                    print(f"  done d={d} N={N}", file=sys.stderr, flush=True)
            # the rate of a quiet moment: measured again at the end, the better one is kept
            # (the floors are computed with it, so they are never flattered by a busy start)
            dgemm_end = dgemm_gflops(2048, 5, threads)["gflops"]
            if dgemm_end > dgemm:
                dgemm = dgemm_end
                for row in rows:
                    rescale_floors(row, dgemm)
    finally:
        numba.set_num_threads(saved)
    head = notes(threads, dgemm, repeats, cpu_model())
    if verbose:
        print("\n".join(head))
        print(text_table(rows, COLUMNS))
    if markdown:
        write_markdown(markdown, markdown_table(rows, COLUMNS, head), title="harness bench ntk")
    return rows


def parse_sizes(text: str) -> list[tuple[int, int]]:
    """``"234x500,504x1000"`` -> ``[(234, 500), (504, 1000)]``; ValueError names a bad item."""
    out = []
    for item in filter(None, (s.strip() for s in text.split(","))):
        try:
            d, N = (int(v) for v in item.lower().split("x"))
        except ValueError:
            raise ValueError(f"--sizes: {item!r} is not dxN (two positive integers, e.g. 512x2048)") from None
        if d < 1 or N < 2:
            raise ValueError(f"--sizes: {item!r} needs d >= 1 and N >= 2")
        out.append((d, N))
    if not out:
        raise ValueError("--sizes: no size given")
    return out


def cli(argv: Sequence[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(prog="harness bench ntk", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default=",".join(f"{d}x{N}" for d, N in DEFAULT_SIZES),
                        help="comma-separated dxN pairs (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=None, help="BLAS and Numba threads")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per side (medians are kept)")
    parser.add_argument("--markdown", metavar="FILE", default=None,
                        help="also write the table as Markdown to FILE (for generated results pages)")
    args = parser.parse_args(argv)
    if args.markdown and check_writable(args.markdown):
        parser.error(check_writable(args.markdown))
    try:
        sizes = parse_sizes(args.sizes)
    except ValueError as exc:
        parser.error(str(exc))
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1, got {args.repeats}")
    return main(sizes, args.threads, args.repeats, args.markdown)


if __name__ == "__main__":
    cli()

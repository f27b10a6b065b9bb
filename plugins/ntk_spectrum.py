"""NTK spectrum at initialisation: Bombari, Amani and Mondelli (NeurIPS 2022), Figure 1.

``ntk_spectrum`` draws ``N`` inputs from the dataset slot (stream ``"data"``) and a network
from the architecture and initializer slots (stream ``"init"``), computes the empirical NTK
Gram matrices named in ``kernels`` on the backend slot (``numba``, the default, is
:func:`harness.engine.ntk.ntk_kernels`; ``torch`` runs the same formula on a torch device) and their
extreme eigenvalues with :func:`harness.engine.eigen.extreme_eigenvalues`.

Kernels: ``"full"`` is ``K = J J^T`` over every trainable weight matrix (the paper's figure);
``"W1"``, ``"W2"``, ... is the block ``K_l`` of one weight matrix (1-based; ``"W2"`` is what the
script published with the paper computes, about 30 times smaller than the full K at the
paper's sizes). Metrics per kernel ``k``: ``lambda_min_k``, ``lambda_max_k``, ``trace_k``,
``floor_k`` (``eps * N * lambda_max``), ``below_floor_k`` (lambda_min below the round-off floor:
numerically singular), ``condition_k``, ``solver_k`` (the solver that produced the numbers),
``fallback_k`` (why ``auto`` fell back to eigvalsh, if it did), ``steps_k``, ``solver_seconds_k``;
plus ``N``, ``d``, ``d2``, ``P`` (trainable parameters), ``L`` and ``ntk_seconds``.

All kernels of a cell come from one engine pass (:func:`harness.engine.ntk.ntk_kernels`: one
forward and backward pass, each layer's Gram block computed once and summed into every kernel
that contains it), so ``kernels = ["full", "W1", "W2", "W3"]`` costs one pass plus one
eigen-solve per kernel; ``full`` is, to round-off, the sum of the blocks (``trace_full`` is
the sum of the blocks' traces, and by Weyl's inequality ``lambda_min_full`` is at least the sum
of the blocks' ``lambda_min``).

Figures: for each kernel, lambda_min against d^2 with one line per N (mean +- 1 std over
repetitions) and a least-squares line through all repetitions per N, whose slope and 95%
bootstrap confidence interval are in the legend (Theorem 3.1: lambda_min grows linearly in
d^2 = n_{L-2} n_{L-1} once N polylog N = o(d^2)). With two or more kernels, also
``lambda_min_per_layer``: one column per N; top, one line per kernel (the full K and each
block, mean +- 1 std) with its least-squares slope per unit d^2; bottom, each block's share
lambda_min(K_block) / lambda_min(K) (a flat share next to a linearly growing full K: the block
grows like d^2 too). Rows below the round-off floor are not drawn but counted in the legend
(K_W3 = F_2 F_2^T has rank <= n_2, singular whenever n_2 < N). Kernels are ordered naturally:
full, W1, W2, ..., W10.
"""
from __future__ import annotations

import re
from collections import defaultdict
from typing import Any, Mapping, Sequence

import numpy as np

from harness import Experiment, Param, hookimpl

_KERNEL = re.compile(r"^(full|W[1-9][0-9]*)$")
DTYPES = ("float64", "float32")


def _check_kernels(values) -> str | None:
    for i, v in enumerate(values):
        if not isinstance(v, str) or not _KERNEL.match(v):
            return f"item {i}: {v!r} is not 'full' or 'W<layer>' (W1, W2, ...)"
    if len(set(values)) != len(values):
        return "kernels are repeated"
    return None


def kernel_layers(kernels: Sequence[str], trainable: Sequence[bool]) -> dict[str, list[int]]:
    """The 1-based layers summed by each kernel name: ``full`` = every trainable layer,
    ``W<l>`` = layer ``l``. Raises ValueError for a layer the network does not have."""
    L = len(trainable)
    out = {}
    for k in kernels:
        if k == "full":
            layers = [l for l in range(1, L + 1) if trainable[l - 1]]
            if not layers:
                raise ValueError("the network has no trainable layer")
        else:
            l = int(k[1:])
            if not 1 <= l <= L:
                raise ValueError(f"kernel {k!r}: the network has layers W1..W{L}")
            layers = [l]
        out[k] = layers
    return out


class NTKSpectrum(Experiment):
    name = "ntk_spectrum"
    help = "extreme eigenvalues of the empirical NTK Gram matrix (full and per-layer) at initialisation"
    slots = {"activation": ("activation", "sigmoid"), "architecture": ("architecture", "fc"),
             "initializer": ("initializer", "fan_in_gaussian"), "dataset": ("dataset", "gaussian"),
             "backend": ("backend", "numba")}
    params = (
        Param("N", int, help="number of samples", min=1),
        Param("d", int, help="input dimension", min=1),
        Param("kernels", list, ["full"], "kernels to compute: 'full' (all trainable weights) and/or "
              "per-layer blocks 'W1', 'W2', ... (1-based)", item_type=str, min_length=1,
              check=_check_kernels),
        Param("solver", str, "auto", "eigen-solver: 'auto' (Cholesky + block Krylov, falls back to "
              "eigvalsh), 'cholesky_krylov' or the reference 'eigvalsh'",
              choices=("auto", "eigvalsh", "cholesky_krylov")),
        Param("dtype", str, "float64", "floating type of data, weights and kernels", choices=DTYPES),
        Param("krylov_block", int, 8, "block size of the Krylov iteration", min=1),
        Param("tol", float, 1e-9, "relative tolerance of the Krylov iteration on lambda_min",
              min=1e-15, max=1e-2),
    )
    example = {"params": {"N": 300, "d": 12, "kernels": ["full", "W2"]},
               "components": {"architecture": {"name": "fc", "params": {"widths": [24, 16]}},
                              "dataset": {"name": "gaussian", "params": {"targets": "zero"}}}}

    def run(self, cell) -> dict:
        import time

        from harness.engine.eigen import extreme_eigenvalues
        N, d, dtype = self.N, self.d, np.dtype(self.dtype)
        arch = cell.architecture
        shapes, trainable = arch.layer_shapes(d), arch.trainable(d)
        groups = kernel_layers(self.kernels, trainable)
        X, _ = cell.dataset.sample(N, d, cell.rng("data"), dtype=dtype)
        weights = cell.initializer.initialize(shapes, cell.rng("init"), dtype=dtype)
        t0 = time.perf_counter()
        kernels = cell.backend.ntk_kernels(weights, X, cell.activation, groups, dtype)
        out: dict[str, Any] = {"N": N, "d": d, "d2": d * d, "P": arch.param_count(d), "L": len(shapes),
                               "ntk_seconds": time.perf_counter() - t0}
        for name in list(kernels):
            K = kernels.pop(name)
            # K = J J^T over the kernel's layers: its rank is at most their parameter count
            rank_bound = sum(int(np.prod(shapes[l - 1])) for l in groups[name])
            res = extreme_eigenvalues(K, self.solver, block=self.krylov_block, tol=self.tol,
                                      rank_bound=rank_bound)
            del K
            out.update(res.metrics("_" + name))
        return out

    def estimate(self, cell_params: Mapping[str, Any], components) -> dict:
        p = {prm.name: prm.default for prm in self.params}
        p.update(cell_params)
        N, d = int(p["N"]), int(p["d"])
        widths = _widths(components, d)
        sizes = [d] + widths + [1]
        n_kernels = len(p["kernels"])
        from harness.engine import costs  # rates calibrated on this machine

        seconds = costs.ntk_seconds(N, sizes, n_kernels)
        if p["solver"] == "eigvalsh" or (p["solver"] == "auto" and N < 900):
            seconds += n_kernels * 4.0 * N ** 3 / costs.ntk_rates()["gemm_flops_per_s"]
        if p["dtype"] == "float32":
            seconds *= 0.6
        return {"memory_bytes": int(8 * ((n_kernels + 1) * N * N + 3 * N * sum(sizes))),
                "seconds": float(seconds), "setup_key": "ntk_kernels",
                "setup_seconds": costs.ntk_rates()["setup_s"]}

    def figures(self, rows: Sequence[Mapping[str, Any]], context) -> dict:
        ok = [r for r in rows if r.get("status") == "ok" and r.get("metrics")]
        kernels = kernel_order({k[len("lambda_min_"):] for r in ok for k in r["metrics"]
                                if k.startswith("lambda_min_")})
        out = {f"lambda_min_{k}": _lambda_min_figure(ok, k, context) for k in kernels}
        if len(kernels) >= 2:
            out["lambda_min_per_layer"] = _per_layer_figure(ok, kernels, context)
        return out


def kernel_order(kernels) -> list[str]:
    """Natural order of kernel names: ``full`` first, then ``W1, W2, ..., W10`` by layer number
    (anything else after them, alphabetically)."""
    def key(k: str):
        if k == "full":
            return (0, 0, k)
        if _KERNEL.match(k):
            return (1, int(k[1:]), k)
        return (2, 0, k)

    return sorted(kernels, key=key)


def _widths(components, d: int) -> list[int]:
    """Hidden widths of the architecture slot (``fc`` default ``[d, d]``), for estimates."""
    arch = (components or {}).get("architecture") or {}
    widths = (arch.get("params") or {}).get("widths", ["d", "d"])
    out = []
    for w in widths:
        if isinstance(w, int):
            out.append(w)
        else:
            from harness.expressions import evaluate

            try:
                out.append(int(evaluate(str(w), {"d": d})))
            except Exception:
                out.append(d)
    return out


def _per_layer_figure(rows, kernels: Sequence[str], context):
    """Top row, one panel per N: lambda_min of each kernel against d^2 (mean +- 1 std, linear
    axes) with its least-squares slope per unit d^2 in the legend. Bottom row (when the full K
    is among the kernels): each block's share lambda_min(K_block) / lambda_min(K) per row, mean
    +- 1 std: a share that stays flat while the full K grows linearly means the block grows
    like d^2 too. Rows whose lambda_min is below the round-off floor are not drawn (counted in
    the legend; e.g. K_W3 = F_2 F_2^T has rank <= n_2 < N)."""
    from matplotlib.figure import Figure

    from harness.fits import fit_slope

    data: dict = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))  # N -> kernel -> d2 -> values
    share: dict = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))  # N -> block -> d2 -> shares
    hidden: dict = defaultdict(int)  # (N, kernel) -> rows below the round-off floor (not drawn)
    for r in rows:
        m = r["metrics"]
        N, d2 = int(m["N"]), int(m["d"]) ** 2
        full = m.get("lambda_min_full")
        full_ok = full is not None and np.isfinite(full) and full > 0 and not m.get("below_floor_full")
        for k in kernels:
            v = m.get(f"lambda_min_{k}")
            if v is None or not np.isfinite(v):
                continue
            data[N].setdefault(k, defaultdict(list))
            if m.get(f"below_floor_{k}") or v <= 0:
                hidden[(N, k)] += 1
                continue
            data[N][k][d2].append(float(v))
            if k != "full" and full_ok:
                share[N][k][d2].append(float(v) / float(full))
    Ns = sorted(data)
    blocks = [k for k in kernels if k != "full"]
    two_rows = "full" in kernels and bool(blocks)
    ncol = max(len(Ns), 1)
    fig = Figure(figsize=(4.3 * ncol + 0.4, 7.6 if two_rows else 4.4))
    grid = fig.subplots(2 if two_rows else 1, ncol, squeeze=False)
    colors = {k: ("black" if k == "full" else f"C{i}") for i, k in enumerate(kernels)}

    def band(ax, series, color, label, lw=1.2):
        d2 = np.array(sorted(series), dtype=float)
        vals = [np.asarray(series[int(x)]) for x in d2]
        mean = np.array([v.mean() for v in vals])
        std = np.array([v.std(ddof=1) if v.size > 1 else 0.0 for v in vals])
        ax.plot(d2, mean, "o-", color=color, ms=3, lw=lw, label=label)
        ax.fill_between(d2, mean - std, mean + std, color=color, alpha=0.18, linewidth=0)
        return [x for x, v in zip(d2, vals) for _ in v], [y for v in vals for y in v]

    for col, N in enumerate(Ns):
        ax = grid[0][col]
        for k in kernels:
            series = data[N].get(k)
            label = "full K" if k == "full" else f"K_{k}"
            if not series:
                if hidden[(N, k)]:
                    ax.plot([], [], " ", label=f"{label}: λ_min below the round-off floor in all "
                                               f"{hidden[(N, k)]} rows (not drawn)")
                continue
            xs = sorted(series)
            if len(xs) >= 2:
                fit = fit_slope([x for x in xs for _ in series[x]], [y for x in xs for y in series[x]])
                if np.isfinite(fit.slope):
                    ci = (f" [{fit.ci_low:.3g}, {fit.ci_high:.3g}]"
                          if np.isfinite(fit.ci_low) and np.isfinite(fit.ci_high) else "")
                    label += f": slope {fit.slope:.3g}{ci} per d²"
            if hidden[(N, k)]:
                label += f" ({hidden[(N, k)]} row(s) below the floor not drawn)"
            band(ax, series, colors[k], label, lw=1.6 if k == "full" else 1.2)
        ax.set_title(f"N = {N}", fontsize=9)
        ax.set_xlabel("d² (= n_{L-2} n_{L-1})")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, loc="upper left")
        if two_rows:
            ax2 = grid[1][col]
            for k in blocks:
                if share[N].get(k):
                    band(ax2, share[N][k], colors[k], f"K_{k}")
            ax2.set_xlabel("d² (= n_{L-2} n_{L-1})")
            ax2.set_ylim(-0.03, 1.03)
            ax2.grid(alpha=0.3)
            ax2.legend(fontsize=6.5, loc="center right")
    grid[0][0].set_ylabel("λ_min: full NTK and per-layer blocks")
    if two_rows:
        grid[1][0].set_ylabel("share λ_min(K_block) / λ_min(K)")
    fig.text(0.5, 0.005, context.caption("bands: mean ± 1 std over repetitions; top: least-squares "
                                         "slope through all repetitions with 95% bootstrap CI; bottom: "
                                         "each block's λ_min over the full K's, per row"),
             ha="center", va="bottom", fontsize=6.5, wrap=True)
    fig.tight_layout(rect=(0, 0.05 if two_rows else 0.08, 1, 1))
    return fig


def _lambda_min_figure(rows, kernel: str, context):
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    from harness.fits import fit_slope, plot_fit

    key = f"lambda_min_{kernel}"
    by_n: dict[int, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    flagged = 0
    for r in rows:
        m = r["metrics"]
        if m.get(key) is None:
            continue
        by_n[int(m["N"])][int(m["d"]) ** 2].append(float(m[key]))
        flagged += bool(m.get(f"below_floor_{kernel}"))
    fig = Figure(figsize=(6.4, 4.6))
    ax = fig.subplots()
    cmap = colormaps["viridis"]
    Ns = sorted(by_n)
    for i, N in enumerate(Ns):
        color = cmap(0.85 * i / max(len(Ns) - 1, 1))
        d2 = np.array(sorted(by_n[N]), dtype=float)
        vals = [np.asarray(by_n[N][int(x)]) for x in d2]
        mean = np.array([v.mean() for v in vals])
        std = np.array([v.std(ddof=1) if v.size > 1 else 0.0 for v in vals])
        ax.plot(d2, mean, "o-", color=color, ms=3, lw=1.4, label=f"N = {N}")
        ax.fill_between(d2, mean - std, mean + std, color=color, alpha=0.2, linewidth=0)
        xs = [x for x, v in zip(d2, vals) for _ in v]
        ys = [y for v in vals for y in v]
        if len(set(xs)) >= 2:
            fit = fit_slope(xs, ys)
            plot_fit(ax, fit, label=f"fit N = {N}", color=color, band=False, lw=1.0)
    ax.set_xlabel("d² (= n_{L-2} n_{L-1})")
    what = "full NTK (all weights)" if kernel == "full" else f"NTK block of {kernel}"
    ax.set_ylabel(f"λ_min, {what}")
    ax.legend(fontsize=6.5, loc="upper left")
    ax.grid(alpha=0.3)
    note = (f"; {flagged} row(s) with λ_min below the round-off floor eps·N·λ_max"
            if flagged else "")
    fig.text(0.5, 0.005, context.caption("bands: mean ± 1 std over repetitions; dashed: least-squares "
                                         "line through all repetitions, slope with 95% bootstrap CI"
                                         + note),
             ha="center", va="bottom", fontsize=6.5, wrap=True)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return fig


@hookimpl
def harness_register_experiments(registry):
    registry.add(NTKSpectrum)

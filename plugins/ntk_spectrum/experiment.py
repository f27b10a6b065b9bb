# Length: about 480 lines in one module because one experiment and its figures, estimates and
# saved arrays.
"""NTK spectrum at initialisation: Bombari, Amani and Mondelli (NeurIPS 2022), Figure 1.

``ntk_spectrum`` draws ``N`` inputs from the dataset slot (stream ``"data"``) and a network
from the architecture and initializer slots (stream ``"init"``), computes the empirical NTK
Gram matrices named in ``kernels`` on the backend slot (``numba``, the default, is
:func:`harness.engine.ntk.ntk_kernels`; ``torch`` runs the same formula on a torch device) and their
extreme eigenvalues with :func:`harness.engine.eigen.extreme_eigenvalues`.

Kernels: ``"full"`` is ``K = J J^T`` over every trainable parameter (the paper's figure);
``"W1"``, ``"W2"``, ... is the block ``K_l`` of one weight matrix (1-based; ``"W2"`` is what the
script published with the paper computes, about 30 times smaller than the full K at the
paper's sizes); ``"b1"``, ``"b2"``, ... the block of a bias (networks with biases). Any
architecture works: the structured engine for networks it describes (biases, residual blocks,
:mod:`harness.engine.network`), the generic autograd path for any other forward; the metric
``ntk_path`` says which. With ``save_arrays = true`` the cell writes ``arrays/<cell_id>.npz``
in the run directory: ``X``, the full ``K`` and the parameters ``W1, b1, W2, ...`` in forward
order (the output layer last, ``(1, n)``). Metrics per kernel ``k``: ``lambda_min_k``, ``lambda_max_k``, ``trace_k``,
``floor_k`` (``eps * N * lambda_max``), ``below_floor_k`` (lambda_min below the round-off floor:
numerically singular), ``condition_k``, ``solver_k`` (the solver that produced the numbers),
``fallback_k`` (why ``auto`` fell back to eigvalsh, if it did), ``steps_k``; plus ``N``, ``d``,
``d2``, ``P`` (trainable parameters) and ``L``. Wall-clock times go to the row's ``timings``
(``ntk_seconds``, ``solver_seconds_k``; the engine's kernels are compiled once per process
before the clock starts, ``warmup_seconds``), never to its metrics. The row's ``resolved``
holds the hidden widths (``architecture.widths``, also written into the row's components) and
the layers each kernel sums (``kernel_layers``). ``krylov_block`` is unset by default: the
solver then uses its own tuned block (what the speed table in the README measures).

Kernels are checked against the network when the file is loaded (``kernels = ["W9"]`` on a
three-layer network is refused then, as is a width expression below 1 at some ``d``).

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
full, W1, W2, ..., W10. Any other grid axis (architecture, activation, ...) is never pooled:
lines get one colour per value (:func:`harness.plugin.series.split_rows`; line style: N) and the
per-layer figure is drawn once per value.
"""
from __future__ import annotations

import re
from collections import defaultdict
from typing import Any, Mapping, Sequence

import numpy as np

from harness.plugin import Experiment, Param, dataset_problem, hidden_widths_resolved, hookimpl, save_arrays

_KERNEL = re.compile(r"^(full|[Wb][1-9][0-9]*)$")
DTYPES = ("float64", "float32")


def _check_kernels(values) -> str | None:
    for i, v in enumerate(values):
        if not isinstance(v, str) or not _KERNEL.match(v):
            return f"item {i}: {v!r} is not 'full', 'W<layer>' (W1, W2, ...) or 'b<layer>' (b1, ...)"
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


def kernel_params(kernels: Sequence[str], model) -> dict[str, list[int]]:
    """The 0-based parameter indices summed by each kernel name of ``model`` (an
    ``Architecture.model(d)``): ``full`` = every trainable parameter (weights and biases),
    ``W<l>`` = the weight of layer ``l``, ``b<l>`` = its bias. Raises ValueError for a
    parameter the network does not have."""
    names = model.parameter_names()
    trainable = model.parameter_trainable()
    out = {}
    for k in kernels:
        if k == "full":
            ps = [p for p, t in enumerate(trainable) if t]
            if not ps:
                raise ValueError("the network has no trainable parameter")
        elif k in names:
            ps = [names.index(k)]
        else:
            L = len([n for n in names if n.startswith("W")])
            what = f"the network has layers W1..W{L}"
            if len(names) > L or k.startswith("b"):
                what += f" (parameters: {', '.join(names)})"
            raise ValueError(f"kernel {k!r}: {what}")
        out[k] = ps
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
        Param("krylov_block", int, None, "block size of the Krylov iteration (unset: the solver's own, "
              "tuned default)", min=1),
        Param("tol", float, 1e-9, "relative tolerance of the Krylov iteration on lambda_min",
              min=1e-15, max=1e-2),
        Param("save_arrays", bool, False, "write arrays/<cell_id>.npz in the run directory: X, the "
              "full K and every parameter (W1, b1, W2, ... in forward order)"),
    )
    example = {"params": {"N": 300, "d": 12, "kernels": ["full", "W2"]},
               "components": {"architecture": {"name": "fc", "params": {"widths": [24, 16]}},
                              "dataset": {"name": "gaussian", "params": {"targets": "zero"}}}}

    def check(self, params, components):
        """The kernels name layers the network has; widths and the dataset work at this d."""
        arch = components["architecture"]
        arch.layer_shapes(self.d)  # a width below 1 at this d: SpecError
        problem = arch.problem(self.d)
        if problem:
            return "architecture", problem
        model = arch.model(self.d)
        try:
            kernel_params(self.kernels, model)
        except ValueError as exc:
            return "kernels", str(exc)
        backend = components.get("backend")
        if backend is not None and not backend.supports_model(model):
            return "backend", (f"backend {backend.name!r} cannot compute this network "
                               f"({arch.ntk_path(self.d)} path); use backend 'numba'")
        return dataset_problem(components.get("dataset"), self.d)

    def run(self, cell) -> dict:
        import time

        from harness.engine.eigen import extreme_eigenvalues
        N, d, dtype = self.N, self.d, np.dtype(self.dtype)
        arch = cell.architecture
        model = arch.model(d)
        shapes = arch.layer_shapes(d)
        pshapes = model.parameter_shapes()
        groups = kernel_params(self.kernels, model)
        save = self.save_arrays and "full" not in groups
        if save:  # the saved K is always the full one
            groups["full"] = kernel_params(["full"], model)["full"]
        X, _ = cell.dataset.sample(N, d, cell.rng("data"), dtype=dtype)
        params = arch.init_parameters(d, cell.initializer, cell.rng("init"), dtype=dtype)
        warmup = _warm_up_kernels(cell.backend, cell.activation, shapes, dtype)
        t0 = time.perf_counter()
        kernels, path = cell.backend.model_kernels(model, params, X, cell.activation, groups, dtype)
        timings = {"ntk_seconds": time.perf_counter() - t0}
        if warmup:
            timings["warmup_seconds"] = warmup
        if self.save_arrays:
            save_arrays(cell, X=X, K=kernels["full"], params=params, names=model.parameter_names())
        if save:
            del kernels["full"], groups["full"]
        out: dict[str, Any] = {"N": N, "d": d, "d2": d * d, "P": arch.param_count(d), "L": len(shapes),
                               "ntk_path": path}
        for name in list(kernels):
            K = kernels.pop(name)
            # K = J J^T over the kernel's parameters: its rank is at most their number
            rank_bound = sum(int(np.prod(pshapes[p])) for p in groups[name])
            res = extreme_eigenvalues(K, self.solver, block=self.krylov_block, tol=self.tol,
                                      rank_bound=rank_bound)
            del K
            metrics = res.metrics("_" + name)
            timings[f"solver_seconds_{name}"] = metrics.pop(f"solver_seconds_{name}")
            out.update(metrics)
        out["timings"] = timings
        names, layer_of = model.parameter_names(), _parameter_layers(model)
        out["resolved"] = {**hidden_widths_resolved(arch, shapes),
                           "kernel_layers": {k: sorted({layer_of[p] for p in v}) for k, v in groups.items()}}
        if len(names) != len(shapes):  # biases: name the parameters each kernel sums
            out["resolved"]["kernel_params"] = {k: [names[p] for p in v] for k, v in groups.items()}
        return out

    def estimate(self, cell_params: Mapping[str, Any], components) -> dict:
        p = {prm.name: prm.default for prm in self.params}
        p.update(cell_params)
        N, d = int(p["N"]), int(p["d"])
        try:  # the cell's configured architecture when bound (any architecture), else the fc widths
            widths = [n for n, _ in self.context.components["architecture"].layer_shapes(d)[:-1]]
        except Exception:
            widths = _widths(components, d)
        sizes = [d] + widths + [1]
        n_kernels = len(p["kernels"])
        from harness.plugin import costs  # rates calibrated on this machine

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
        from harness.plugin.series import slug, split_rows

        # any grid axis besides N and d (architecture, activation, ...) gets its own lines
        groups = split_rows(ok, lambda r: (int(r["metrics"]["N"]), int(r["metrics"]["d"])))
        out = {f"lambda_min_{k}": _lambda_min_figure(ok, k, context, groups) for k in kernels}
        if len(kernels) >= 2:
            for i, (label, part) in enumerate(groups):
                suffix = f"-{slug(label, i + 1)}" if label else ""
                part_kernels = [k for k in kernels if any(f"lambda_min_{k}" in r["metrics"] for r in part)]
                out["lambda_min_per_layer" + suffix] = _per_layer_figure(part, part_kernels, context, label)
        return out


def _warm_up_kernels(backend, activation, shapes, dtype) -> float:
    """Compile the backend's NTK kernels for this activation, depth and dtype once per process
    (on a tiny bias-free chain: the structured engine's kernels are the same for every network),
    so that compilation stays out of ``ntk_seconds``; returns the seconds spent (0.0 when
    already done)."""
    from harness import warm_up

    key = ("ntk_kernels", type(backend).__name__, repr(backend), type(activation).__name__, repr(activation),
           len(shapes), str(np.dtype(dtype)))

    def run():
        rng = np.random.default_rng(0)
        sizes = [3] + [3] * (len(shapes) - 1) + [1]
        tiny = [rng.standard_normal((sizes[l + 1], sizes[l])).astype(dtype) for l in range(len(shapes))]
        L = len(tiny)
        backend.ntk_kernels(tiny, rng.standard_normal((4, 3)).astype(dtype), activation,
                            {"full": None, **{f"W{l}": [l] for l in range(1, L + 1)}}, dtype)

    return warm_up(key, run)


def _parameter_layers(model) -> list[int]:
    """The 1-based layer of each parameter (a generic model: parameter i is 'layer' i + 1)."""
    layers = getattr(model, "parameter_layers", None)
    return layers() if layers is not None else list(range(1, model.n_params + 1))


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
            from harness.plugin.expressions import evaluate

            try:
                out.append(int(evaluate(str(w), {"d": d})))
            except Exception:
                out.append(d)
    return out


def _per_layer_figure(rows, kernels: Sequence[str], context, series: str = ""):
    """Top row, one panel per N: lambda_min of each kernel against d^2 (mean +- 1 std, linear
    axes) with its least-squares slope per unit d^2 in the legend. Bottom row (when the full K
    is among the kernels): each block's share lambda_min(K_block) / lambda_min(K) per row, mean
    +- 1 std: a share that stays flat while the full K grows linearly means the block grows
    like d^2 too. Rows whose lambda_min is below the round-off floor are not drawn (counted in
    the legend; e.g. K_W3 = F_2 F_2^T has rank <= n_2 < N)."""
    from matplotlib.figure import Figure

    from harness.plugin.fitting import fit_slope

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
        ax.set_title(f"N = {N}" + (f"\n{series}" if series else ""), fontsize=9 if not series else 7)
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
            if ax2.get_legend_handles_labels()[0]:
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


def _lambda_min_figure(rows, kernel: str, context, groups=None):
    """lambda_min of ``kernel`` against d^2: one line per N and per group of rows that differ in
    another grid axis (``groups`` from :func:`harness.plugin.series.split_rows`; colours by group, then
    by N; line styles by N)."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    from harness.plugin.fitting import fit_slope, plot_fit

    key = f"lambda_min_{kernel}"
    groups = groups or [("", rows)]
    by_n: dict = defaultdict(lambda: defaultdict(list))  # (group, N) -> d2 -> values
    flagged = 0
    for g, (_, part) in enumerate(groups):
        for r in part:
            m = r["metrics"]
            if m.get(key) is None:
                continue
            by_n[(g, int(m["N"]))][int(m["d"]) ** 2].append(float(m[key]))
            flagged += bool(m.get(f"below_floor_{kernel}"))
    several = len(groups) > 1
    fig = Figure(figsize=(7.4, 5.0) if several else (6.4, 4.6))
    ax = fig.subplots()
    cmap = colormaps["viridis"]
    Ns = sorted({N for _, N in by_n})
    styles = ["-", "--", ":", "-."]
    for g, N in sorted(by_n):
        i = Ns.index(N)
        if several:
            color, ls = f"C{g}", styles[i % len(styles)]
            label = f"{groups[g][0]}, N = {N}"
        else:
            color, ls = cmap(0.85 * i / max(len(Ns) - 1, 1)), "-"
            label = f"N = {N}"
        series = by_n[(g, N)]
        d2 = np.array(sorted(series), dtype=float)
        vals = [np.asarray(series[int(x)]) for x in d2]
        mean = np.array([v.mean() for v in vals])
        std = np.array([v.std(ddof=1) if v.size > 1 else 0.0 for v in vals])
        ax.plot(d2, mean, "o", ls=ls, color=color, ms=3, lw=1.4, label=label)
        ax.fill_between(d2, mean - std, mean + std, color=color, alpha=0.2, linewidth=0)
        xs = [x for x, v in zip(d2, vals) for _ in v]
        ys = [y for v in vals for y in v]
        if len(set(xs)) >= 2 and not several:
            fit = fit_slope(xs, ys)
            plot_fit(ax, fit, label=f"fit N = {N}", color=color, band=False, lw=1.0)
    ax.set_xlabel("d² (= n_{L-2} n_{L-1})")
    what = "full NTK (all weights)" if kernel == "full" else f"NTK block of {kernel}"
    ax.set_ylabel(f"λ_min, {what}")
    ax.legend(fontsize=6.5, loc="upper left")
    ax.grid(alpha=0.3)
    note = (f"; {flagged} row(s) with λ_min below the round-off floor eps·N·λ_max"
            if flagged else "")
    lines = ("colour: the other grid axes, line style: N (solid, dashed, dotted, ...)" if several else
             "dashed: least-squares line through all repetitions, slope with 95% bootstrap CI")
    fig.text(0.5, 0.005, context.caption("bands: mean ± 1 std over repetitions; " + lines + note),
             ha="center", va="bottom", fontsize=6.5, wrap=True)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return fig


@hookimpl
def harness_register_experiments(registry):
    registry.add(NTKSpectrum)

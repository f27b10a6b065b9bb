"""Figures of the ``ntk_spectrum`` experiment: lambda_min of each kernel against d^2 (one line
per N), and the per-layer figure (every kernel, and each block's share of the full K). A y axis
is logarithmic when the means it draws span more than two decades
(:func:`harness.plugin.figures.wants_log_axis`).
"""
from __future__ import annotations

from collections import defaultdict
from typing import Sequence

import numpy as np

from harness.plugin.figures import wants_log_axis

RANK_ZERO = "0 (rank <= d < N)"
"""How a kernel whose lambda_min is 0 by its rank bound is shown (solver ``rank_bound``: a block
over fewer parameters than N, such as K_W3 = F_2 F_2^T with rank <= n_2 = d < N): a value known
exactly, never measured, never fitted."""


def rank_zero(metrics, kernel: str) -> bool:
    """Whether a row's lambda_min of ``kernel`` is 0 by the kernel's rank bound (not measured)."""
    return metrics.get(f"solver_{kernel}") == "rank_bound"


def _per_layer_figure(rows, kernels: Sequence[str], context, series: str = ""):
    """Top row, one panel per N: lambda_min of each kernel against d^2 (mean +- 1 std; a log y
    axis when the means span more than two decades) with its least-squares slope per unit d^2 in
    the legend. Bottom row (when the full K
    is among the kernels): each block's share lambda_min(K_block) / lambda_min(K) per row, mean
    +- 1 std: a share that stays flat while the full K grows linearly means the block grows
    like d^2 too. A kernel whose lambda_min is 0 by its rank bound (K_W3 = F_2 F_2^T has rank
    <= n_2 = d < N) is drawn at 0 and labelled :data:`RANK_ZERO`, with no line fitted; other rows
    whose lambda_min is below the round-off floor are not drawn (counted in the legend)."""
    from matplotlib.figure import Figure

    from harness.plugin.fitting import fit_slope

    data: dict = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))  # N -> kernel -> d2 -> values
    share: dict = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))  # N -> block -> d2 -> shares
    hidden: dict = defaultdict(int)  # (N, kernel) -> rows below the round-off floor (not drawn)
    zeros: dict = defaultdict(set)  # (N, kernel) -> d2 of rows whose lambda_min is 0 by the rank bound
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
            if rank_zero(m, k):
                zeros[(N, k)].add(d2)
                continue
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
        at_zero = []  # lines drawn at 0 (a log axis cannot show them: their legend entry says it)
        for k in kernels:
            series = data[N].get(k)
            label = "full K" if k == "full" else f"K_{k}"
            if zeros[(N, k)] and not series:
                xs0 = sorted(zeros[(N, k)])
                at_zero += ax.plot(xs0, [0.0] * len(xs0), "s:", color=colors[k], ms=3, lw=1.0,
                                   label=f"{label}: λ_min = {RANK_ZERO}, by the rank bound (not fitted)")
                continue
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
        top = [float(np.mean(v)) for k in kernels for v in (data[N].get(k) or {}).values()]
        ax.set_yscale("log" if wants_log_axis(top) else "linear")  # blocks may lie decades apart
        if ax.get_yscale() == "log":
            for line in at_zero:
                line.set_data([], [])
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
    flagged = zero = 0
    for g, (_, part) in enumerate(groups):
        for r in part:
            m = r["metrics"]
            if m.get(key) is None:
                continue
            by_n[(g, int(m["N"]))][int(m["d"]) ** 2].append(float(m[key]))
            if rank_zero(m, kernel):
                zero += 1
            else:
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
        if zero and not any(ys):  # 0 by the rank bound: a known value, no line through it
            ax.lines[-1].set_label(f"{label}: λ_min = {RANK_ZERO}")
        elif len(set(xs)) >= 2 and not several:
            fit = fit_slope(xs, ys)
            plot_fit(ax, fit, label=f"fit N = {N}", color=color, band=False, lw=1.0)
    ax.set_xlabel("d² (= n_{L-2} n_{L-1})")
    what = "full NTK (all weights)" if kernel == "full" else f"NTK block of {kernel}"
    ax.set_ylabel(f"λ_min, {what}")
    ax.legend(fontsize=6.5, loc="upper left")
    ax.grid(alpha=0.3)
    note = (f"; {flagged} row(s) with λ_min below the round-off floor eps·N·λ_max"
            if flagged else "")
    if zero:
        note += (f"; λ_min = {RANK_ZERO} in {zero} row(s): the block's rank is at most its number of "
                 "parameters, fewer than N (solver rank_bound), so no line is fitted")
    lines = ("colour: the other grid axes, line style: N (solid, dashed, dotted, ...)" if several else
             "dashed: least-squares line through all repetitions, slope with 95% bootstrap CI")
    if wants_log_axis([float(np.mean(v)) for s in by_n.values() for v in s.values()]):  # else small ones sit on 0
        ax.set_yscale("log")
        lines += "; log y axis (the means span more than two decades)"
    fig.text(0.5, 0.005, context.caption("bands: mean ± 1 std over repetitions; " + lines + note),
             ha="center", va="bottom", fontsize=6.5, wrap=True)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return fig

"""Figures of the ``quadratic_flow`` experiment: risk curves, time to recovery against m/m* and
against log d, finite-sample gradient descent against the population flow, and the recovery
table; every caption states the conventions (:data:`CONVENTIONS`).
"""
from __future__ import annotations

import math
from collections import defaultdict

import numpy as np


def _key(row) -> tuple[int, float]:
    p = row["params"]
    return int(p["d"]), p["m"] / p["m_star"]


def _colors(values):
    from matplotlib import colormaps

    cmap = colormaps["viridis"]
    values = sorted(values)
    n = max(len(values) - 1, 1)
    return {v: cmap(0.9 * i / n) for i, v in enumerate(values)}


CONVENTIONS = ("f_W(x) = (1/m) sum_j (w_j.x)^2, R = 1/4 E[(f_W - f*)^2] = 1/4 [(tr D)^2 + 2 ||D||_F^2]; "
               "mean-field time: dw_j/dt = -(tr D I + 2 D) w_j (= -m grad_wj R); recovery: R(t) <= threshold R(0)")
"""The conventions every quadratic-flow figure states in its caption."""


def _table_figure(lines, context):
    from harness.plugin.figures import table_figure

    fig = table_figure(lines, list(lines[0]), width=10.0, base_height=1.0)
    return _finish(fig, context, "recovered: fraction of repetitions; t_rec: time to recovery over the "
                                 "recovered repetitions (std: sample std); final_rel_risk: R(t_max)/R(0)")


def _answer_table_figure(table, context):
    """An answer :class:`~harness.plugin.tables.Table` drawn as a figure (its cells as the page
    shows them)."""
    from harness.plugin.figures import table_figure

    lines = [dict(zip(table.columns, cells)) for cells in table.cells()]
    fig = table_figure(lines, list(table.columns), width=12.0, base_height=1.0)
    return _finish(fig, context, table.notes[0].rstrip(".") if table.notes else table.title)


def _finish(fig, context, bands: str):
    """Add the caption below the axes (about 0.45 inch, wrapped to the figure's width)."""
    fig.text(0.5, 0.005, context.caption(f"{bands}. {CONVENTIONS}"), ha="center", va="bottom", fontsize=7,
             wrap=True)
    fig.tight_layout(rect=(0, min(0.5, 0.5 / fig.get_figheight()), 1, 1))
    return fig


def _floor_axis(ax, rows):
    """Cut the risk axis at 1e-10 R(0): the overlap formula loses R below ~1e-15 to round-off."""
    r0 = np.median([r["metrics"]["initial_risk"] for r in rows])
    ax.set_ylim(bottom=1e-10 * r0)


def _risk_curves_figure(ok, context):
    from matplotlib.figure import Figure

    ds = sorted({_key(r)[0] for r in ok})
    ratios = sorted({_key(r)[1] for r in ok})
    colors = _colors(ratios)
    fig = Figure(figsize=(4.2 * len(ds), 3.8))
    axes = np.atleast_1d(fig.subplots(1, len(ds), sharey=True, squeeze=False)[0])
    for ax, d in zip(axes, ds):
        for ratio in ratios:
            group = [r for r in ok if _key(r) == (d, ratio)]
            if not group:
                continue
            t = np.asarray(group[0]["curves"]["t"], float)
            curves = np.array([r["curves"]["risk"] for r in group], float)
            for c in curves:
                ax.plot(t, c, color=colors[ratio], lw=0.6, alpha=0.35)
            ax.plot(t, _geometric_mean(curves), color=colors[ratio], lw=1.8, label=f"m/m* = {ratio:g}")
        ax.set_yscale("log")
        _floor_axis(ax, ok)
        ax.set_xlabel("time t")
        ax.set_title(f"d = {d}")
    axes[0].set_ylabel("population risk R(t)")
    axes[0].legend(fontsize=7)
    return _finish(fig, context, "population gradient flow; thin lines: repetitions; "
                                 "thick: geometric mean over repetitions; axis cut at 1e-10 R(0)")


def _geometric_mean(curves) -> np.ndarray:
    curves = np.asarray(curves, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.exp(np.nanmean(np.log(np.clip(curves, 1e-300, None)), axis=0))


def _finite_sample_figure(ok, context):
    """R(t)/R(0) against t, one panel per (d, m/m*): the population flow (black), and for each n
    the population risk of gradient descent on n samples (solid) and its training loss (dotted),
    each curve over its own row's R(0), geometric mean over repetitions."""
    from matplotlib.figure import Figure

    gd_rows = [r for r in ok if "gd_risk" in r["curves"]]
    panels = sorted({_key(r) for r in gd_rows})
    ns = sorted({int(r["params"]["n_train"]) for r in gd_rows})
    colors = _colors(ns)
    fig = Figure(figsize=(4.2 * len(panels), 3.8))
    axes = fig.subplots(1, len(panels), sharey=True, squeeze=False)[0]

    def relative(rows, curve):
        return _geometric_mean([np.asarray(r["curves"][curve], float) / r["metrics"]["initial_risk"] for r in rows])

    for ax, (d, ratio) in zip(axes, panels):
        group = [r for r in gd_rows if _key(r) == (d, ratio)]
        ax.plot(group[0]["curves"]["t"], relative(group, "risk"), color="black", lw=1.8, label="population flow")
        for n in ns:
            sub = [r for r in group if int(r["params"]["n_train"]) == n]
            if not sub:
                continue
            ax.plot(sub[0]["curves"]["gd_t"], relative(sub, "gd_risk"), color=colors[n], lw=1.4,
                    label=f"GD, n = {n}: population risk")
            ax.plot(sub[0]["curves"]["gd_t"], relative(sub, "gd_train_loss"), color=colors[n], lw=0.9, ls=":",
                    label=f"GD, n = {n}: training loss")
        threshold = float(group[0]["params"].get("threshold", 1e-2))
        ax.axhline(threshold, color="gray", lw=0.8, ls="--", label=f"recovery: R(t)/R(0) = {threshold:g}")
        ax.set_yscale("log")
        ax.set_ylim(bottom=1e-10)
        ax.set_xlabel("time t")
        ax.set_title(f"d = {d}, m/m* = {ratio:g}")
    axes[0].set_ylabel("R(t) / R(0)")
    axes[0].legend(fontsize=6)
    return _finish(fig, context, "gradient descent on n_train samples against the population flow from the same "
                                 "start; each curve over its row's R(0), geometric mean over repetitions; axis "
                                 "cut at 1e-10")


def _recovery_times(rows, key="time_to_recovery"):
    """{(d, ratio): (times of the recovered repetitions, number of repetitions)}."""
    out: dict = defaultdict(lambda: ([], 0))
    for r in rows:
        times, n = out[_key(r)]
        value = (r.get("metrics") or {}).get(key)
        if value is not None and np.isfinite(value):
            times = times + [float(value)]
        out[_key(r)] = (times, n + 1)
    return dict(out)


def _recovery_vs_ratio_figure(ok, rows, context):
    from matplotlib.figure import Figure

    times = _recovery_times(ok)
    ds = sorted({k[0] for k in times})
    colors = _colors(ds)
    fig = Figure(figsize=(5.6, 4.0))
    ax = fig.subplots()
    top = max([max(v[0]) for v in times.values() if v[0]] or [1.0]) * 1.15
    for d in ds:
        keys = sorted(k for k in times if k[0] == d)
        xs = [k[1] for k in keys if times[k][0]]
        mean = [np.mean(times[k][0]) for k in keys if times[k][0]]
        std = [np.std(times[k][0], ddof=1) if len(times[k][0]) > 1 else 0.0 for k in keys if times[k][0]]
        ax.errorbar(xs, mean, yerr=std, color=colors[d], marker="o", capsize=3, label=f"d = {d}")
        missed = [k[1] for k in keys if len(times[k][0]) < times[k][1]]
        for x in missed:
            k = (d, x)
            ax.plot([x], [top], marker="x", color=colors[d], ls="none")
            ax.annotate(f"not recovered: {times[k][1] - len(times[k][0])}/{times[k][1]}", (x, top), fontsize=6,
                        color=colors[d], textcoords="offset points", xytext=(4, -8 - 7 * ds.index(d)))
    ax.set_xscale("log", base=2)
    ax.set_xlabel("m / m*")
    ax.set_ylabel("time to recovery")
    ax.set_title("time to recovery (mean-field time) against m/m*, per d\n"
                 "(x: repetitions that did not recover by t_max)", fontsize=9)
    ax.legend(fontsize=7)
    failed = sum(1 for r in rows if r.get("status") != "ok")
    bands = "error bars: mean +- 1 std over the repetitions that recovered"
    if failed:
        bands += f"; {failed} row(s) not ok left out"
    return _finish(fig, context, bands)


def _recovery_vs_log_d_figure(ok, context):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.6, 4.0))
    ax = fig.subplots()
    for key, style, label in (("time_to_recovery", "-", "recovery"), ("escape_time", ":", "escape")):
        times = _recovery_times(ok, key)
        ratios = sorted({k[1] for k in times})
        colors = _colors(ratios)
        for ratio in ratios:
            pts = sorted((math.log(k[0]), times[k][0]) for k in times if k[1] == ratio and times[k][0])
            if not pts:
                continue
            x = np.array([p[0] for p in pts])
            mean = np.array([np.mean(p[1]) for p in pts])
            std = np.array([np.std(p[1], ddof=1) if len(p[1]) > 1 else 0.0 for p in pts])
            text = f"{label}, m/m* = {ratio:g}"
            if len(x) >= 2:
                slope = np.polyfit(x, mean, 1)[0]
                text += f" (slope {slope:.2f})"
            ax.errorbar(x, mean, yerr=std, color=colors[ratio], ls=style, marker="o", ms=3, capsize=2,
                        label=text)
    ax.set_xlabel("log d")
    ax.set_ylabel("time")
    ax.set_title("time to recovery (solid) and escape time (dotted) against log d")
    ax.legend(fontsize=6)
    return _finish(fig, context, "error bars: mean +- 1 std over the repetitions that reached the level; "
                                 "slope: least-squares fit of the means against log d")

"""Figures and table of the memorisation threshold search (``memorization`` with
``[experiments.search]`` over N): N*(d) at every level with its bracket, bootstrap band and the
fit N* = c d^2 per level; how the runs at each threshold stopped; the searched cells over
(d^2, N) with the threshold lines.
"""
from __future__ import annotations

import math

import numpy as np

from .figures import _finish, _metric

STOP_NOTE = ("early: the share of the runs at the threshold's bracket that the window rule "
             "stopped early (their reported value is an early-stopped window, not a converged one); "
             "epoch: their median stop epoch")


def threshold_lines(thresholds, rows) -> list[dict]:
    """Per searched d and level: N* (the search's threshold), its bracket and bootstrap interval,
    N*/d^2 and N*/P (P of the network at that d, from the rows), and how the runs at the
    bracket stopped (``early_stop_fraction``, ``median_stop_epoch``)."""
    P_of_d = {}
    for r in rows:
        if _metric(r, "P") is not None:
            P_of_d[int(r["params"]["d"])] = int(_metric(r, "P"))
    out = []
    for t in thresholds:
        if "d" not in t:
            continue
        d = int(t["d"])
        d2, P = d * d, P_of_d.get(d)
        n_star = t["threshold"]
        out.append({"d": d, "d2": d2, "P": P, "level": t.get("level"), "status": t["status"], "N_star": n_star,
                    "lower": t["lower"], "upper": t["upper"], "ci_low": t.get("ci_low"),
                    "ci_high": t.get("ci_high"), "n_cells": t["n_cells"],
                    "N_star_over_d2": n_star / d2 if n_star is not None else None,
                    "N_star_over_P": n_star / P if n_star is not None and P else None,
                    "early_stop_fraction": t.get("early_stop_fraction"),
                    "median_stop_epoch": t.get("median_stop_epoch")})
    return out


def levels_of(lines) -> list:
    """The levels of ``lines`` in their order (``[None]`` for lines without one)."""
    return list(dict.fromkeys(t.get("level") for t in lines))


def threshold_fit(lines) -> dict | None:
    """N* = c d^2 through the origin over the d with a found threshold (bootstrap CI over d);
    give the lines of one level."""
    from harness.plugin.fitting import fit_proportional

    found = [t for t in lines if t["N_star"] is not None]
    if not found:
        return None
    return fit_proportional([t["d2"] for t in found], [t["N_star"] for t in found])


def _level_label(level) -> str:
    return "" if level is None else f"level {level:g}"


def threshold_figure(lines, context):
    """N*(d) against d^2, one colour per level: the bracket as error bars, the bootstrap
    interval over repetitions as a band, the fit N* = c d^2 with its interval; the lines P = N
    and d^2 = N. Below: the share of the runs at each threshold that stopped early, and their
    median stop epoch."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.6, 8.0))
    ax, ax_early, ax_epoch = fig.subplots(3, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1, 1]})
    d2_all = np.array(sorted({t["d2"] for t in lines}), float)
    grid = np.linspace(0, d2_all.max() * 1.05, 50) if d2_all.size else np.array([])
    for n, level in enumerate(levels_of(lines)):
        color = f"C{n % 10}"
        own = sorted((t for t in lines if t.get("level") == level), key=lambda t: t["d2"])
        found = [t for t in own if t["N_star"] is not None]
        name = _level_label(level)
        if found:
            x = np.array([t["d2"] for t in found], float)
            y = np.array([t["N_star"] for t in found], float)
            ax.errorbar(x, y, yerr=[y - [t["lower"] for t in found], np.array([t["upper"] for t in found]) - y],
                        fmt="o-", color=color, capsize=3, ms=4, lw=1, label=f"N* {name}".rstrip())
            ci = [(t["ci_low"], t["ci_high"]) for t in found]
            if all(a is not None and b is not None for a, b in ci):
                ax.fill_between(x, [a for a, _ in ci], [b for _, b in ci], color=color, alpha=0.18, lw=0)
            fit = threshold_fit(found)
            if fit is not None and grid.size:
                band = (f" [{fit['ci_low']:.3g}, {fit['ci_high']:.3g}]" if math.isfinite(fit["ci_low"]) else "")
                ax.plot(grid, fit["c"] * grid, color=color, ls="-.", lw=0.8,
                        label=f"fit N* = {fit['c']:.3g}{band} d^2" + (f" ({name})" if name else ""))
        for status, marker in (("above_upper", "^"), ("below_lower", "v")):
            pts = [t for t in own if t["status"] == status]
            if pts:
                ax.scatter([t["d2"] for t in pts], [t["lower"] if status == "above_upper" else t["upper"]
                                                    for t in pts], marker=marker, color=color)
        stops = [t for t in own if t.get("early_stop_fraction") is not None]
        if stops:
            ax_early.plot([t["d2"] for t in stops], [t["early_stop_fraction"] for t in stops], "o-", color=color,
                          ms=4, lw=1, label=name or None)
            ax_epoch.plot([t["d2"] for t in stops], [t["median_stop_epoch"] for t in stops], "s-", color=color,
                          ms=4, lw=1, label=name or None)
    if grid.size:
        ax.plot(grid, grid, "k:", label="d^2 = N")
        withP = sorted({(t["d2"], t["P"]) for t in lines if t["P"]})
        if withP:
            ax.plot([a for a, _ in withP], [b for _, b in withP], "k--", label="P = N")
    ax.set_ylabel("N* (mean log10 reported_loss crosses the level)")
    ax.legend(fontsize=6)
    ax.set_title(f"{context.experiment_id}: memorisation threshold N*(d)", fontsize=10)
    ax_early.set_ylabel("stopped early", fontsize=8)
    ax_early.set_ylim(-0.05, 1.05)
    ax_epoch.set_ylabel("median stop epoch", fontsize=8)
    ax_epoch.set_xlabel("d^2")
    for a in (ax_early, ax_epoch):
        a.tick_params(labelsize=7)
    return _finish(fig, context, "error bars: the search's final bracket; band: 95% bootstrap interval of N* "
                                 "over repetitions; fits through the origin with a 95% bootstrap interval over d; "
                                 + STOP_NOTE)


TABLE_COLUMNS = ["d", "d2", "P", "level", "status", "N_star", "lower", "upper", "ci_low", "ci_high",
                 "N_star_over_d2", "N_star_over_P", "early_stop_fraction", "median_stop_epoch", "n_cells"]
"""The columns of the threshold table figure."""


def search_map(rows, lines, context):
    """The searched cells over (d^2, N), coloured by the mean over repetitions of
    log10(reported_loss) (the quantity of the Fig. 2 heat map, here only where the search
    looked), with N*(d) of every level drawn over them."""
    from matplotlib.figure import Figure

    from ._common import LOG10_FLOOR

    cells: dict = {}
    for r in rows:
        v = _metric(r, "reported_loss")
        ok = r.get("status") == "ok" and isinstance(v, (int, float)) and math.isfinite(v) and v > 0
        key = (int(r["params"]["d"]), int(r["params"]["N"]))
        cells.setdefault(key, []).append(max(math.log10(v), LOG10_FLOOR) if ok else math.inf)
    fig = Figure(figsize=(6.4, 4.8))
    ax = fig.subplots()
    keys = sorted(cells)
    means = np.array([np.mean(cells[k]) for k in keys], float)
    finite = np.isfinite(means)
    if finite.any():
        dots = ax.scatter([k[0] ** 2 for k, f in zip(keys, finite) if f], [k[1] for k, f in zip(keys, finite) if f],
                          c=means[finite], cmap="viridis", s=36, marker="s", edgecolors="none")
        fig.colorbar(dots, ax=ax, label="mean log10 reported_loss")
    if (~finite).any():
        ax.scatter([k[0] ** 2 for k, f in zip(keys, finite) if not f], [k[1] for k, f in zip(keys, finite) if not f],
                   marker="x", color="red", s=20, label="a repetition without a value")
    for n, level in enumerate(levels_of(lines)):
        own = sorted((t for t in lines if t.get("level") == level and t["N_star"] is not None), key=lambda t: t["d2"])
        if own:
            ax.plot([t["d2"] for t in own], [t["N_star"] for t in own], "-", color=f"C{(n + 1) % 10}", lw=1.5,
                    label=f"N* {_level_label(level)}".rstrip())
    ax.set_xlabel("d^2")
    ax.set_ylabel("N")
    ax.set_yscale("log")
    ax.legend(fontsize=6, loc="upper left")
    ax.set_title(f"{context.experiment_id}: the cells the search ran", fontsize=10)
    return _finish(fig, context, f"one square per (d, N) the search evaluated, colour: mean over repetitions of "
                                 f"log10(reported_loss) (clipped at 1e{LOG10_FLOOR} for the colour only; the search "
                                 f"averages unclipped logs); lines: N*(d) per level")

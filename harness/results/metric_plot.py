"""``harness plot RUN --metric M --x AXIS [--hue KEY] [--log]``: any metric of a run against
any axis, one line per value of ``KEY``, never pooling another axis.

Values of a row are looked up by key (:func:`row_value`): a metric, a grid coordinate (key
path, ``architecture.widths``), an experiment parameter, a slot (its component name, with its
parameters when they differ: ``residual(blocks=1)``), ``slot.param``, ``experiment_id``,
``experiment`` or ``repetition``. Rows that differ in any grid axis besides ``x`` and ``hue``
go to separate panels (:func:`harness.plugin.series.split_rows`); each line is the mean over
repetitions with a +- 1 std band.
"""
from __future__ import annotations

import json
from collections import defaultdict
from typing import Any, Mapping, Sequence

import numpy as np

from harness.plugin.series import short_value, slug, split_rows
from harness.results.stats import finite_float, mean_std, mean_std_arrays

__all__ = ["row_value", "metric_figure"]

_MISSING = object()


def row_value(row: Mapping[str, Any], key: str) -> Any:
    """The value ``key`` names in ``row`` (``None`` when the row has none)."""
    if key in ("experiment_id", "experiment", "repetition", "status"):
        return row.get(key)
    for table in ("metrics", "coords", "params"):
        t = row.get(table) or {}
        if key in t:
            return t[key]
    components = row.get("components") or {}
    if key in components:
        c = components[key]
        return short_value({"name": c.get("name"), **(c.get("params") or {})}) if isinstance(c, Mapping) else c
    if "." in key:
        slot, _, param = key.partition(".")
        c = components.get(slot)
        if isinstance(c, Mapping) and param in (c.get("params") or {}):
            return c["params"][param]
    return (row.get("resolved") or {}).get(key)


def _number(v: Any) -> float | None:
    return None if isinstance(v, bool) else finite_float(v)


def metric_figure(rows: Sequence[Mapping[str, Any]], metric: str, x: str, hue: str | None = None,
                  log: bool | None = None, title: str = ""):
    """A matplotlib Figure: ``metric`` against ``x``, one line per ``hue`` value, one panel per
    combination of the other grid axes. ``log``: a logarithmic y axis (``None``: when the means
    drawn are positive and span more than two decades, :func:`harness.plugin.figures.wants_log_axis`).
    Raises ValueError when no row has both numbers."""
    from matplotlib.figure import Figure

    from harness.plugin.figures import wants_log_axis

    usable = [r for r in rows if r.get("status") in ("ok", "diverged")
              and _number(row_value(r, metric)) is not None and _number(row_value(r, x)) is not None]
    if not usable:
        raise ValueError(f"no row has numeric values of both {metric!r} and {x!r}")

    def drawn(r):
        return [row_value(r, x), short_value(row_value(r, hue)) if hue else None]

    panels = split_rows(usable, drawn)
    if log is None:
        cells: dict = defaultdict(list)  # (panel, x, hue) -> values: one mean per point drawn
        for label, part in panels:
            for r in part:
                cells[(label, _key(drawn(r)))].append(_number(row_value(r, metric)))
        log = wants_log_axis([m for m in (finite_float(mean_std(v)[0]) for v in cells.values())
                               if m is not None])
    hues = sorted({short_value(row_value(r, hue)) if hue else "" for r in usable})  # one colour each
    ncol = min(3, len(panels))
    nrow = -(-len(panels) // ncol)
    fig = Figure(figsize=(5.2 * ncol + 0.4, 4.0 * nrow + 0.5))
    axes = np.atleast_1d(fig.subplots(nrow, ncol, squeeze=False)).ravel()
    for ax, (label, part) in zip(axes, panels):
        lines: dict = defaultdict(lambda: defaultdict(list))
        for r in part:
            h = short_value(row_value(r, hue)) if hue else ""
            lines[h][_number(row_value(r, x))].append(_number(row_value(r, metric)))
        for h, series in sorted(lines.items()):
            i = hues.index(h)
            xs = np.array(sorted(series))
            mean, std = mean_std_arrays([series[v] for v in xs])
            ax.plot(xs, mean, "o-", color=f"C{i}", ms=3, lw=1.3, label=f"{hue} = {h}" if hue else metric)
            ax.fill_between(xs, mean - std, mean + std, color=f"C{i}", alpha=0.18, linewidth=0)
        if log:
            ax.set_yscale("log")
        ax.set_xlabel(x)
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6.5)
        if label:
            ax.set_title(label, fontsize=7)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    n_rep = len({r.get("repetition") for r in usable})
    scale = "log y axis; " if log else ""
    fig.text(0.5, 0.005, (title + "; " if title else "") + scale + f"lines: mean ± 1 std over repetitions "
             f"({n_rep} repetition index(es)); panels: one per value of the other grid axes",
             ha="center", va="bottom", fontsize=6.5, wrap=True)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return fig


def _key(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def figure_stem(metric: str, x: str, hue: str | None, log: bool | None) -> str:
    return slug(f"plot_{metric}_vs_{x}" + (f"_by_{hue}" if hue else "") + ("_log" if log else ""))

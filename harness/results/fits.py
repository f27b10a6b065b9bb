"""Scaling-law fits: a straight line through ``(x, y)``, or through ``(log x, log y)``.

:func:`harness.plugin.fitting.fit_slope` fits ``y = intercept + slope * x`` by least squares (with ``log=True``,
``log y = intercept + slope * log x``, natural logarithms, i.e. the power law
``y = exp(intercept) * x ** slope``) and gives a percentile bootstrap confidence interval on the
slope: the ``(x, y)`` pairs are resampled with replacement ``n_boot`` times and the line refitted.
:func:`harness.plugin.fitting.plot_fit` overlays a fit on a matplotlib axes (experiment figures call it);
:func:`fit_rows` fits a metric against a grid axis for every experiment block of a run (and for
every value of the block's other grid axes), which is what ``harness fit`` prints.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from harness.errors import UserError, suggest
from harness.plugin.fitting import DEFAULT_SEED, FitResult, fit_proportional, fit_slope, generator_of, plot_fit  # noqa: F401
from harness.results.stats import finite_float, mean_std_arrays

# ----------------------------------------------------------------------------------------------
# fits over a run's rows


@dataclass
class GroupFit:
    """One fit of ``harness fit``: the experiment block, the other grid values held fixed, and
    the fit (``None`` with ``problem`` when the group cannot be fitted)."""

    experiment_id: str
    fixed: dict[str, Any]
    fit: FitResult | None
    problem: str = ""
    x: list[float] = field(default_factory=list, repr=False)
    y: list[float] = field(default_factory=list, repr=False)

    @property
    def label(self) -> str:
        if not self.fixed:
            return self.experiment_id
        return self.experiment_id + " [" + ", ".join(f"{k}={v}" for k, v in self.fixed.items()) + "]"


def row_value(row: Mapping[str, Any], key: str) -> Any:
    """The value of ``key`` for a row: a grid coordinate, an experiment parameter, a slot's
    component name (``architecture``) or a slot's parameter (``architecture.q``); ``None`` when
    the row has none."""
    coords = row.get("coords") or {}
    if key in coords:
        return coords[key]
    if key in ("experiment_id", "experiment", "repetition", "status"):
        return row.get(key)
    params = row.get("params") or {}
    if key in params:
        return params[key]
    components = row.get("components") or {}
    if key in components:
        return (components[key] or {}).get("name")
    slot, _, pname = key.partition(".")
    if pname and slot in components:
        return ((components[slot] or {}).get("params") or {}).get(pname)
    return None


def available_keys(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    """Every key :func:`row_value` understands for these rows (coordinates first)."""
    keys: dict[str, None] = {}
    rows = list(rows)
    for row in rows:
        for k in row.get("coords") or {}:
            keys.setdefault(k, None)
    for row in rows:
        for k in row.get("params") or {}:
            keys.setdefault(k, None)
        for slot, comp in (row.get("components") or {}).items():
            keys.setdefault(slot, None)
            for p in (comp or {}).get("params") or {}:
                keys.setdefault(f"{slot}.{p}", None)
    return list(keys)


def metric_names(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    """Every numeric metric in the rows (booleans count, as 0 and 1), in first-seen order."""
    names: dict[str, None] = {}
    for row in rows:
        for k, v in (row.get("metrics") or {}).items():
            if isinstance(v, (int, float)):
                names.setdefault(k, None)
    return list(names)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _hashable(v: Any) -> Any:
    if isinstance(v, list):
        return tuple(_hashable(x) for x in v)
    if isinstance(v, dict):
        return tuple(sorted((k, _hashable(x)) for k, x in v.items()))
    return v


def _grouping_keys(rows: Sequence[Mapping[str, Any]], axis: str, grid_keys: Sequence[str]) -> list[str]:
    """The grid axes to hold fixed: every other axis that varies independently of ``axis``.

    An axis whose value determines ``axis`` (a tied partner, or the free variable a derived
    ``axis`` is computed from) is not held fixed, else each group would have one x value.
    """
    out = []
    for key in grid_keys:
        if key == axis:
            continue
        values: dict[Any, set] = {}
        for row in rows:
            values.setdefault(_hashable(row_value(row, key)), set()).add(_hashable(row_value(row, axis)))
        if len(values) > 1 and all(len(xs) == 1 for xs in values.values()):
            continue  # this key determines the axis
        out.append(key)
    return out


def fit_rows(rows: Sequence[Mapping[str, Any]], metric: str, axis: str, log: bool = False,
             grid_keys: Mapping[str, Sequence[str]] | None = None, n_boot: int = 1000,
             rng: np.random.Generator | int | None = None, level: float = 0.95) -> list[GroupFit]:
    """Fit ``metric`` against ``axis`` for each experiment block, and within a block for each
    combination of its other grid axes (``grid_keys``: experiment id -> grid axis keys; by
    default every coordinate). Only ``ok`` rows with a finite numeric metric enter.

    A :class:`UserError` names an unknown metric or axis, listing the known ones.
    """
    rows = list(rows)
    if not rows:
        raise UserError("the run has no result rows to fit")
    known_metrics = metric_names(rows)
    if metric not in known_metrics:
        raise UserError(f"--metric {metric!r}: no such numeric metric in the run{suggest(metric, known_metrics)}; "
                        f"metrics: {', '.join(known_metrics) or 'none'}")
    keys = available_keys(rows)
    if axis not in keys:
        raise UserError(f"--axis {axis!r}: not a grid axis or parameter of the run{suggest(axis, keys)}; "
                        f"axes: {', '.join(keys) or 'none'}")
    gen = generator_of(rng)
    blocks: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        blocks.setdefault(str(row.get("experiment_id")), []).append(row)
    out: list[GroupFit] = []
    for exp_id, members in blocks.items():
        if grid_keys is not None and exp_id in grid_keys:
            candidates = list(grid_keys[exp_id])
        else:
            candidates = list(dict.fromkeys(k for r in members for k in (r.get("coords") or {})))
        fixed_keys = _grouping_keys(members, axis, candidates)
        groups: dict[tuple, list[Mapping[str, Any]]] = {}
        for row in members:
            key = tuple(_hashable(row_value(row, k)) for k in fixed_keys)
            groups.setdefault(key, []).append(row)
        for key, group in groups.items():
            fixed = {k: row_value(group[0], k) for k in fixed_keys}
            xs, ys, non_numeric = [], [], 0
            for row in group:
                if row.get("status") != "ok":
                    continue
                xv, yv = row_value(row, axis), (row.get("metrics") or {}).get(metric)
                if not _is_number(xv):
                    non_numeric += xv is not None
                    continue
                xf, yf = finite_float(xv), finite_float(yv)
                if xf is not None and yf is not None:
                    xs.append(xf)
                    ys.append(yf)
            if non_numeric:
                out.append(GroupFit(exp_id, fixed, None, f"axis {axis!r} is not numeric"))
                continue
            try:
                with np.errstate(over="ignore", invalid="ignore"):  # values near the float range
                    fit = fit_slope(xs, ys, log=log, n_boot=n_boot, rng=gen, level=level)
            except ValueError as exc:
                out.append(GroupFit(exp_id, fixed, None, str(exc), xs, ys))
            else:
                out.append(GroupFit(exp_id, fixed, fit, "", xs, ys))
    return out


def grid_keys(run) -> dict[str, list[str]] | None:
    """Experiment id -> its grid axis keys (tied axes split), from a loaded run's spec
    (:class:`harness.results.runs.Run`); ``None`` when the spec did not load."""
    if run.spec is None:
        return None
    return {e.id: [k for axis in e.axes for k in axis.keys] for e in run.spec.experiments}


def plot_fits(fits: Sequence[GroupFit], metric: str, axis: str, log: bool = False, caption: str = "") -> Any:
    """A figure of ``metric`` against ``axis``: per group, the mean ± std over the rows at each
    x value, and the fit with its bootstrap band (:func:`plot_fit`). ``caption`` goes under the
    title (say what was run). Returns the matplotlib Figure."""
    import matplotlib

    if "matplotlib.pyplot" not in __import__("sys").modules:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 5))
    for g in fits:
        if not g.x:
            continue
        by_x: dict[float, list[float]] = {}
        for xv, yv in zip(g.x, g.y):
            by_x.setdefault(xv, []).append(yv)
        xs = sorted(by_x)
        means, stds = mean_std_arrays([by_x[v] for v in xs])
        points = ax.errorbar(xs, means, yerr=stds, fmt="o", capsize=3, label=f"{g.label} (mean ± std)")
        if g.fit is not None:
            plot_fit(ax, g.fit, label=g.label, color=points[0].get_color())
    if log:
        ax.set_xscale("log")
        ax.set_yscale("log")
    ax.set_xlabel(axis)
    ax.set_ylabel(metric)
    band = "" if not fits or fits[0].fit is None else f"; bands: {fits[0].fit.level:.0%} bootstrap CI of the line"
    ax.set_title(f"{metric} vs {axis}" + (" (log-log fit)" if log else " (linear fit)")
                 + (f"\n{caption}" if caption else "") + f"\nerror bars: std over repetitions{band}",
                 fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


PLOT_FORMATS = (".png", ".svg", ".pdf")


def run_caption(run, experiment_ids: Iterable[str] | None = None) -> str:
    """What was run, one line per experiment block (:meth:`FigureContext.caption`), from a
    loaded run's spec (:class:`harness.results.runs.Run`); ``""`` when the spec did not load."""
    from harness.plugin.context import FigureContext

    if run.spec is None:
        return ""
    wanted = set(experiment_ids) if experiment_ids is not None else None
    lines = []
    for e in run.spec.experiments:
        if wanted is not None and e.id not in wanted:
            continue
        context = FigureContext(benchmark=run.spec.name, experiment_id=e.id, experiment=e.experiment,
                                grid={axis.label: axis.values for axis in e.axes}, repetitions=e.repetitions)
        lines.append(context.caption())
    return "\n".join(lines)


def _json_safe(value: Any) -> Any:
    """``value`` with NaN and infinities as ``None`` and NumPy scalars as Python numbers."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def fits_json(fits: Sequence[GroupFit]) -> str:
    """``harness fit --json``: strict JSON (a NaN or infinite number is ``null``)."""
    data = [{"experiment_id": g.experiment_id, "fixed": g.fixed, "fit": g.fit.as_dict() if g.fit else None,
             "problem": g.problem or None} for g in fits]
    return json.dumps(_json_safe(data), indent=2, allow_nan=False)


def check_plot_path(path: str | Path) -> Path:
    """``path`` as a Path, or a :class:`UserError` when its suffix is not a figure format."""
    target = Path(path)
    if target.suffix.lower() not in PLOT_FORMATS:
        raise UserError(f"--plot {str(path)!r}: use a file name ending in {', '.join(PLOT_FORMATS)}")
    return target


def save_fit_plot(fits: Sequence[GroupFit], metric: str, axis: str, log: bool, run,
                  path: str | Path) -> Path:
    """Draw :func:`plot_fits` with the loaded run's caption into ``path`` (its suffix picks the
    format)."""
    target = check_plot_path(path)
    caption = run_caption(run, [g.experiment_id for g in fits])
    fig = plot_fits(fits, metric, axis, log, caption)
    try:
        fig.savefig(target, bbox_inches="tight")
    except OSError as exc:
        raise UserError(f"--plot {str(path)!r}: cannot write: {exc.strerror or exc}") from None
    finally:
        import matplotlib.pyplot as plt

        plt.close(fig)
    return target


def format_fits(fits: Sequence[GroupFit], metric: str, axis: str) -> str:
    """One line per fit: block, fixed grid values, slope with its interval, R² and n."""
    lines = []
    for g in fits:
        where = g.label
        if g.fit is None:
            lines.append(f"{where}: {metric} vs {axis}: no fit ({g.problem})")
        else:
            f = g.fit
            what = f"log {metric} vs log {axis}" if f.log else f"{metric} vs {axis}"
            extra = f", {f.dropped} point(s) dropped" if f.dropped else ""
            lines.append(f"{where}: {what}: {f.describe()}, intercept {f.intercept:.3g}{extra}")
    return "\n".join(lines)



"""What a ``memorization`` run answers (Bombari et al., Figure 2), from its rows:

- with a threshold search over N: per d, N* with its 95% bootstrap interval over repetitions, and
  as over-parameterisation N*/d^2 and N*/P; the fit N* = c d^2 through the origin with its
  bootstrap interval over d, set beside the paper's statement (the loss reaches ~0 once d^2 exceeds
  about N: c of order 1);
- on a grid: per d (and any other grid axis), the largest N up to which every grid point is
  memorised (mean log10(reported_loss) <= -3), and per grid point the mean log10(reported_loss)
  with its bootstrap interval over repetitions and the fraction of runs stopped early by the
  window rule (a grid of at most :data:`MAX_POINTS` points; larger grids give the first table only).
"""
from __future__ import annotations

import math
from collections import defaultdict
from typing import Any, Mapping, Sequence

import numpy as np

from harness.plugin.tables import Interval, Table, format_value, mean_interval

from ._common import LOG10_FLOOR, MEMORISED_LOG10, finished_rows
from .figures import _grid_means, memorisation_threshold
from .threshold_figures import threshold_fit, threshold_lines

MAX_POINTS = 60
"""A grid with more points than this gets no per-point table (its heat map shows them)."""


def search_table(thresholds: Sequence[Mapping[str, Any]], rows, context) -> list[Table]:
    """N*(d) as over-parameterisation, and the fit N* = c d^2 per level: one table, a line per d
    (and level, with a ``level`` column when the search has several), a fit note per level."""
    levels = list(dict.fromkeys(t.get("level") for t in thresholds))
    several = len(levels) > 1
    body: list[list[Any]] = []
    fits: list[str] = []
    for level in levels:
        lines = threshold_lines([t for t in thresholds if t.get("level") == level], rows)
        if not lines:
            continue
        body += [[*([level] if several else []), t["d"], t["P"],
                  Interval(t["N_star"], t["ci_low"], t["ci_high"], "95% bootstrap"), t["N_star_over_d2"],
                  t["N_star_over_P"], t["status"], t.get("early_stop_fraction"), t.get("median_stop_epoch")]
                 for t in lines]
        fit = threshold_fit(lines)
        if fit is not None:
            ci = (f" [{format_value(fit['ci_low'])}, {format_value(fit['ci_high'])}]"
                  if math.isfinite(fit["ci_low"]) else " (no interval: fewer than 3 d)")
            where = "" if level is None else f"level {format_value(level)}: "
            fits.append(f"{where}N* = {format_value(fit['c'])}{ci} d^2 ({fit['n']} d)")
    if not body:
        return []
    level_text = ", ".join(format_value(v) for v in levels if v is not None)
    notes = [f"N*: where the mean over repetitions of log10(reported_loss) crosses the level ({level_text}), with "
             "its 95% bootstrap interval over repetitions; P: the network's trainable parameters at d",
             "Fit through the origin over the d with a threshold, with its 95% bootstrap interval over d: "
             + "; ".join(fits) + ". The paper: the loss reaches ~0 once d^2 (about P/3) exceeds about N, "
             "i.e. c of order 1" if fits else "No fit: no d with a threshold",
             "Early stops: the share of the runs at the two bracket values that the window rule stopped, and their "
             "median stop epoch (an early-stopped run's reported_loss is the window before a loss spike, not a "
             "converged loss)"]
    columns = [*(["level"] if several else []), "d", "P", "N* [95% bootstrap]", "N*/d^2", "N*/P", "status",
               "early stops", "median stop epoch"]
    return [Table(f"{context.experiment_id}: memorisation threshold N*(d)", columns, body, notes, headline=True)]


def grid_tables(rows, context) -> list[Table]:
    """The memorisation threshold read off the grid, and the grid's points (see the module docstring)."""
    from harness.plugin.series import split_rows

    done = finished_rows(rows)
    if not done:
        return []
    groups = split_rows(done, lambda r: (int(r["params"]["d"]), int(r["params"]["N"])))
    lines, points = [], []
    for label, part in groups:
        cells, P_of_d = _grid_means(part, "reported_loss")
        found = memorisation_threshold(cells)
        for d in sorted({k[0] for k in cells}):
            Ns = sorted(N for dd, N in cells if dd == d)
            n_star = found.get(d)
            lines.append([label or "-", d, P_of_d.get(d), n_star if n_star is not None else f"< {Ns[0]}",
                          n_star / P_of_d[d] if n_star is not None and P_of_d.get(d) else None, f"{Ns[0]}..{Ns[-1]}"])
        stops: dict = defaultdict(list)
        for r in part:
            stops[(int(r["params"]["d"]), int(r["params"]["N"]))].append((r.get("metrics") or {}).get("stop_reason"))
        for (d, N) in sorted(cells):
            finite = [v for v in cells[(d, N)] if math.isfinite(v)]
            mean = mean_interval(finite) if len(finite) == len(cells[(d, N)]) else Interval(math.inf)
            early = sum(s == "window" for s in stops[(d, N)])
            points.append([label or "-", d, N, P_of_d.get(d) / N if P_of_d.get(d) else None, mean,
                           "yes" if float(np.mean(cells[(d, N)])) <= MEMORISED_LOG10 else "no",
                           f"{early}/{len(stops[(d, N)])}"])
    out = [Table(f"{context.experiment_id}: memorisation threshold from the grid", [
        "series", "d", "P", "largest N memorised", "N*/P", "N on the grid"], lines, [
        f"Largest N memorised: the largest N of the grid up to which every N has mean log10(reported_loss) <= "
        f"{format_value(MEMORISED_LOG10)} (a repetition that diverged or has no value counts as not memorised); "
        "'< N' when the smallest N of the grid is not memorised"])]
    if len(points) <= MAX_POINTS:
        out.append(Table(f"{context.experiment_id}: mean log10(reported_loss) per grid point", [
            "series", "d", "N", "P/N", "mean log10(reported_loss) [95% bootstrap]", "memorised", "stopped early"],
            points, ["Mean over repetitions of log10(reported_loss) (the paper averages the logs; each log clipped "
                     f"below at {format_value(LOG10_FLOOR)}, as the heat map reads them), with its 95% bootstrap "
                     "interval over repetitions (none with fewer than 3); inf: a repetition without a value; stopped "
                     "early: runs stopped by the window rule"]))
    return out


def two_layer_tables(rows, context) -> list[Table]:
    """Daniely's two-layer network on a grid: per (d, m) and q d / m, the mean training accuracy
    with its bootstrap interval and the fraction of seeds at 100% with its Wilson interval, and per
    (d, m) the smallest q d / m from which every seed memorises at every larger grid value."""
    from harness.plugin.tables import fraction

    done = finished_rows(rows)
    groups: dict = defaultdict(lambda: defaultdict(list))
    for r in done:
        m = r["metrics"]
        if m.get("train_accuracy") is not None and m.get("qd_over_m") is not None:
            groups[(int(r["params"]["d"]), int(r["params"]["m"]))][round(float(m["qd_over_m"]), 6)].append(
                float(m["train_accuracy"]))
    if not groups:
        return []
    lines = []
    for (d, m) in sorted(groups):
        by_r = groups[(d, m)]
        xs = sorted(by_r)
        from_ = next((x for x in xs if all(all(a >= 1.0 for a in by_r[y]) for y in xs if y >= x)), None)
        for x in xs:
            accs = by_r[x]
            lines.append([d, m, x, mean_interval(accs), fraction(sum(a >= 1.0 for a in accs), len(accs)),
                          (from_ if from_ is not None else "none") if x == xs[0] else ""])
    return [Table(f"{context.experiment_id}: training accuracy against q d / m", [
        "d", "m", "q d / m", "mean training accuracy [95% bootstrap]", "seeds at 100% [95% Wilson]",
        "every seed at 100% from q d / m"], lines, [
        "q d / m: trainable parameters per point (q hidden units, the even number closest to r m / d); the "
        "last column, on each (d, m)'s first line: the smallest q d / m of the grid from which every seed "
        "reaches 100% at every larger value. Daniely: q = O~(m / d) suffices, i.e. q d / m of "
        "order 1 up to log factors"])]


def dtype_speed_table(rows, context) -> Table | None:
    """With a ``dtype`` grid axis holding float64 and float32: the epoch time per network of each
    (``timings.train_seconds / stop_epoch``, the run's own clock) and their paired ratio, float32
    over float64, per grid point: the geometric mean over the repetitions of the per-repetition
    ratios, with a bootstrap interval. ``None`` without such an axis."""
    pairs: dict = defaultdict(dict)  # (point without dtype, repetition) -> dtype -> seconds per epoch
    params_of: dict = {}  # point without dtype -> the params of its first row
    for r in rows:
        coords = r.get("coords") or {}
        m, t = r.get("metrics") or {}, r.get("timings") or {}
        if r.get("status") != "ok" or "dtype" not in coords or not m.get("stop_epoch") or not t.get("train_seconds"):
            continue
        point = tuple(sorted((k, v) for k, v in coords.items() if k != "dtype"))
        params_of.setdefault(point, r["params"])
        pairs[(point, r.get("repetition"))][coords["dtype"]] = float(t["train_seconds"]) / float(m["stop_epoch"])
    by_point: dict = defaultdict(list)
    for (point, _), times in pairs.items():
        if {"float64", "float32"} <= set(times):
            by_point[point].append((times["float64"], times["float32"]))
    if not by_point:
        return None
    lines = []
    for point, values in sorted(by_point.items()):
        logs = mean_interval([math.log(b / a) for a, b in values])
        ratio = Interval(math.exp(logs.value), *(math.exp(x) if x is not None else None for x in (logs.low, logs.high)))
        params = params_of[point]
        lines.append([", ".join(f"{k} = {format_value(v)}" for k, v in point) or "-", params.get("N"), params.get("d"),
                      len(values), 1e3 * float(np.median([a for a, _ in values])),
                      1e3 * float(np.median([b for _, b in values])), ratio])
    return Table(f"{context.experiment_id}: float32 against float64 epoch time", [
        "grid point", "N", "d", "pairs", "float64 ms per epoch (median)", "float32 ms per epoch (median)",
        "float32 / float64 [95% bootstrap]"], lines, [
        "Epoch time per network: the row's timings.train_seconds over its stop_epoch (a member of a stack is "
        "charged its share of each epoch), the run's own clock on the machine below; the ratio: the geometric "
        "mean over the repetitions of float32 / float64 of the same repetition, with a bootstrap interval"])

"""What a ``quadratic_flow`` run answers, from its rows:

- recovery of the population flow per (init, d, m/m*): the recovered fraction with its Wilson
  interval, the time to recovery (mean, sample std, min-max over the recovered repetitions), the
  escape time and R(t_max)/R(0);
- the trend in d: per (init, m/m*) with recoveries at two d or more, the least-squares slope of
  the time to recovery against log d through every recovered repetition, with its bootstrap
  interval and R^2, and whether the interval lies above 0 (the paper's "grows like log d");
- gradient descent on n samples against the flow from the same start, per (d, m/m*, n): GD's
  recovered fraction, its time to recovery next to the flow's, R(t_max)/R(0) and the final
  training loss (both in units of R(0): the training loss is the empirical risk with the same 1/4).
"""
from __future__ import annotations

import math
from collections import defaultdict
from typing import Any, Mapping, Sequence

import numpy as np

from harness.plugin.tables import Interval, Table, format_value, fraction, plus_minus

from .figures import _key


def _spread(values: Sequence[float]) -> str | None:
    """``mean ± std (min-max)`` of the values (``None`` when there are none)."""
    if not values:
        return None
    mean = float(np.mean(values))
    if len(values) == 1:
        return format_value(mean)
    return (plus_minus(mean, float(np.std(values, ddof=1)))
            + f" ({format_value(float(min(values)))}-{format_value(float(max(values)))})")


def _values(ms: Sequence[Mapping[str, Any]], key: str) -> list:
    """``m[key]`` of the metrics ``ms`` that have one (not ``None``), in order."""
    return [m[key] for m in ms if m.get(key) is not None]


def _range(values: Sequence[float]) -> str | None:
    if not values:
        return None
    lo, hi = float(min(values)), float(max(values))
    return format_value(lo) if lo == hi else f"{format_value(lo)}-{format_value(hi)}"


def flow_tables(rows: Sequence[Mapping[str, Any]], context) -> list[Table]:
    """The population flow's recovery table and its trend in log d (see the module docstring)."""
    groups: dict = defaultdict(list)
    for r in rows:
        if r.get("status") == "ok" and r.get("metrics") and not int(r["params"].get("n_train") or 0):
            groups[(r["params"]["init"], *_key(r))].append(r["metrics"])
    if not groups:
        return []
    lines = []
    for (init, d, ratio) in sorted(groups):
        ms = groups[(init, d, ratio)]
        t, esc = _values(ms, "time_to_recovery"), _values(ms, "escape_time")
        lines.append([init, d, ratio, fraction(sum(bool(m.get("recovered")) for m in ms), len(ms)), _spread(t),
                      float(np.mean(esc)) if esc else None,
                      float(np.median([m["final_relative_risk"] for m in ms]))])
    out = [Table(f"{context.experiment_id}: recovery of the population flow", [
        "init", "d", "m/m*", "recovered [95% Wilson]", "time to recovery: mean ± std (min-max)",
        "escape time (mean)", "R(t_max)/R(0) (median)"], lines, [
        "Recovery: R(t) <= threshold R(0); the time to recovery is over the recovered repetitions (std: sample "
        "standard deviation); escape: R(t) <= escape_fraction R(0); time in mean-field units"])]
    trend = _log_d_trend(groups, context)
    if trend is not None:
        out.append(trend)
    return out


def _log_d_trend(groups, context) -> Table | None:
    from harness.plugin.fitting import fit_slope

    lines, notes = [], []
    for init, ratio in sorted({(k[0], k[2]) for k in groups}):
        times = {d: _values(ms, "time_to_recovery") for (i, d, r), ms in groups.items() if (i, r) == (init, ratio)}
        pts = [(math.log(d), t) for d, ts in times.items() for t in ts]
        if len({x for x, _ in pts}) < 2:
            continue
        fit = fit_slope([x for x, _ in pts], [t for _, t in pts])
        stds = {d: float(np.std(ts, ddof=1)) for d, ts in times.items() if len(ts) > 1}
        widest = max(stds, key=stds.get) if stds else None
        shown = math.isfinite(fit.ci_low) and fit.ci_low > 0
        verdict = ("grows with log d (interval above 0)" if shown else
                   "no growth in log d shown (interval reaches 0, or too few points for one)")
        lines.append([init, ratio, Interval(fit.slope, fit.ci_low, fit.ci_high, "95% bootstrap"), fit.r2, fit.n,
                      f"{format_value(stds[widest])} at d = {widest}" if widest is not None else None, verdict])
    if not lines:
        return None
    notes.append("Slope: least-squares slope of the time to recovery against log d through every recovered "
                 "repetition, with its 95% bootstrap interval over repetitions; the paper expects growth like "
                 "log d for m >= m*, and the largest spread says where one mean would mislead")
    columns = ["init", "m/m*", "slope per unit log d [95% bootstrap]", "R^2", "recovered repetitions",
               "largest std of the time", "verdict"]
    return Table(f"{context.experiment_id}: time to recovery against log d", columns, lines, notes)


def finite_sample_table(rows: Sequence[Mapping[str, Any]], context) -> Table | None:
    """GD on n samples against the flow from the same start (see the module docstring)."""
    groups: dict = defaultdict(list)
    for r in rows:
        m = r.get("metrics") or {}
        if r.get("status") == "ok" and int(r["params"].get("n_train") or 0) and "gd_final_risk" in m:
            groups[(*_key(r), int(r["params"]["n_train"]))].append(m)
    if not groups:
        return None
    lines = []
    for (d, ratio, n) in sorted(groups):
        ms = groups[(d, ratio, n)]
        gd_t, flow_t = _values(ms, "gd_time_to_recovery"), _values(ms, "time_to_recovery")
        rel = [m["gd_final_risk"] / m["initial_risk"] for m in ms if m.get("initial_risk")]
        train = [m["gd_final_train_loss"] / m["initial_risk"] for m in ms if m.get("initial_risk")]
        lines.append([d, ratio, n, fraction(sum(bool(m.get("gd_recovered")) for m in ms), len(ms)), _range(gd_t),
                      _range(flow_t), _range(rel), float(np.median(train)) if train else None])
    return Table(f"{context.experiment_id}: gradient descent on n samples against the population flow", [
        "d", "m/m*", "n", "GD recovered [95% Wilson]", "GD time to recovery (min-max)",
        "flow time to recovery (min-max)", "GD R(t_max)/R(0) (min-max)", "GD training loss / R(0) (median)"], lines, [
        "Each row trains by gradient descent on n samples and integrates the population flow from the same start; "
        "R: the population risk of the GD weights, the training loss: the empirical risk on the n samples (with "
        "the same 1/4), both over R(0). A small training loss next to a large R(t_max)/R(0) is a fit of the "
        "samples that does not recover the teacher"])

"""What an ``ntk_spectrum`` run answers (Bombari et al., Figure 1): per N and kernel, the
least-squares slope of lambda_min against d^2 with its 95% bootstrap interval and R^2, and
lambda_min at the largest d (mean and standard deviation over repetitions) with its share of the
full K's. A kernel whose lambda_min is 0 by its rank bound (K_W3) is shown as "0 (rank <= d < N)"
and never fitted. The note states the paper's claim (linear growth in d^2) with the numbers that
support or contradict it.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Any, Mapping, Sequence

import numpy as np

from harness.plugin.tables import Interval, Table, format_value, plus_minus

from .figures import RANK_ZERO, rank_zero
from .kernels import kernel_order


def spectrum_tables(rows: Sequence[Mapping[str, Any]], context) -> list[Table]:
    """One table per group of rows that differ in a grid axis other than N and d (see
    :func:`harness.plugin.series.split_rows`); see the module docstring."""
    from harness.plugin.series import split_rows

    ok = [r for r in rows if r.get("status") == "ok" and r.get("metrics")]
    if not ok:
        return []
    groups = split_rows(ok, lambda r: (int(r["metrics"]["N"]), int(r["metrics"]["d"])))
    return [_table(part, label, context) for label, part in groups]


def _table(rows, series: str, context) -> Table:
    from harness.plugin.fitting import fit_slope

    kernels = kernel_order({k[len("lambda_min_"):] for r in rows for k in r["metrics"] if k.startswith("lambda_min_")})
    by: dict = defaultdict(lambda: defaultdict(list))  # (N, kernel) -> d -> [(value, row)]
    for r in rows:
        m = r["metrics"]
        for k in kernels:
            if m.get(f"lambda_min_{k}") is not None:
                by[(int(m["N"]), k)][int(m["d"])].append(m)
    lines, linear = [], []
    for N in sorted({N for N, _ in by}):
        for k in kernels:
            series_k = by.get((N, k))
            if not series_k:
                continue
            d_max = max(series_k)
            at_max = series_k[d_max]
            if all(rank_zero(m, k) for d in series_k for m in series_k[d]):
                lines.append([N, _name(k), "- (not fitted)", None, RANK_ZERO, d_max, len(at_max), "0"])
                continue
            values = [float(m[f"lambda_min_{k}"]) for m in at_max]
            shares = [float(m[f"lambda_min_{k}"]) / float(m["lambda_min_full"]) for m in at_max
                      if k != "full" and m.get("lambda_min_full")]
            xs = [d * d for d in series_k for _ in series_k[d]]
            ys = [float(m[f"lambda_min_{k}"]) for d in series_k for m in series_k[d]]
            slope, r2 = "-", None
            if len(set(xs)) >= 2:
                fit = fit_slope(xs, ys)
                slope = Interval(fit.slope, fit.ci_low, fit.ci_high, "95% bootstrap")
                r2 = fit.r2
                if k == "full":
                    linear.append((N, fit))
            mean = float(np.mean(values))
            std = float(np.std(values, ddof=1)) if len(values) > 1 else None
            lines.append([N, _name(k), slope, r2, plus_minus(mean, std), d_max, len(values),
                          format_value(float(np.mean(shares))) if shares else ("1" if k == "full" else "-")])
    title = f"{context.experiment_id}: lambda_min against d^2" + (f" ({series})" if series else "")
    notes = ["Slope: least-squares slope of lambda_min per unit d^2 through every repetition, with its 95% "
             "bootstrap interval over rows; at the largest d: mean ± sample standard deviation over "
             "repetitions; share: lambda_min(K_block) / lambda_min(K) at the largest d, mean over repetitions"]
    if any(line[4] == RANK_ZERO for line in lines):
        notes.append(f"{RANK_ZERO}: the block's Gram matrix has rank at most its number of parameters, fewer than "
                     "N, so its lambda_min is exactly 0 (solver rank_bound): not measured, not fitted")
    if linear:
        r2s = [f.r2 for _, f in linear]
        positive = all(f.ci_low > 0 for _, f in linear if np.isfinite(f.ci_low))
        notes.append("The paper's claim, lambda_min(K) linear in d^2 (Theorem 3.1): the full K's slope is "
                     + ("positive at every N (every 95% interval above 0)" if positive else
                        "not positive at every N (a 95% interval reaches 0)")
                     + f", R^2 of the line from {format_value(min(r2s))} to {format_value(max(r2s))} over "
                     f"N = {', '.join(str(N) for N, _ in linear)}")
    return Table(title, ["N", "kernel", "slope per unit d^2 [95% bootstrap]", "R^2", "lambda_min at the largest d",
                         "largest d", "repetitions", "share of full K"], lines, notes)


def _name(kernel: str) -> str:
    return "full K" if kernel == "full" else f"K_{kernel}"

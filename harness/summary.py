"""Summaries of result rows: one line per grid point (``point_id``).

Each line holds the experiment block, the grid coordinates, ``n_rows``, the count of each
status (``n_ok``, ``n_diverged``, ...), and for every numeric metric ``<m>_mean``, ``<m>_std``
(sample standard deviation, ddof=1; empty when fewer than two values) and ``<m>_n`` (how many
values entered). Metric values come from the ``ok`` and ``diverged`` rows; NaN and infinite
values are left out (the status counts say how many rows diverged). Booleans count as 0/1, so
their mean is a fraction.
"""
from __future__ import annotations

import csv
import io
import json
import math
from typing import Any, Iterable, Mapping, Sequence

from .execute import STATUSES

METRIC_STATUSES = ("ok", "diverged")


def summarize(rows: Iterable[Mapping[str, Any]], order: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """One dict per grid point, in ``order`` (point ids; others follow in first-seen order)."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for pid in order or ():
        groups.setdefault(pid, [])
    for row in rows:
        groups.setdefault(row["point_id"], []).append(row)
    out = []
    for pid, members in groups.items():
        if not members:
            continue
        first = members[0]
        line: dict[str, Any] = {"experiment_id": first.get("experiment_id"),
                                "experiment": first.get("experiment"), "point_id": pid}
        for key, value in (first.get("coords") or {}).items():
            line[key] = value
        line["n_rows"] = len(members)
        for status in STATUSES:
            line[f"n_{status}"] = sum(1 for r in members if r.get("status") == status)
        values: dict[str, list[float]] = {}
        for r in members:
            if r.get("status") not in METRIC_STATUSES:
                continue
            for name, value in (r.get("metrics") or {}).items():
                if isinstance(value, (int, float)):
                    values.setdefault(name, [])
                    if math.isfinite(value):
                        values[name].append(float(value))
        for name, xs in values.items():
            mean, std = mean_std(xs)
            line[f"{name}_mean"] = mean
            line[f"{name}_std"] = std
            line[f"{name}_n"] = len(xs)
        out.append(line)
    return out


def mean_std(xs: Sequence[float]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (``None`` where undefined)."""
    n = len(xs)
    if n == 0:
        return None, None
    mean = math.fsum(xs) / n
    if n < 2:
        return mean, None
    var = math.fsum((x - mean) ** 2 for x in xs) / (n - 1)
    return mean, math.sqrt(var)


def columns(lines: Sequence[Mapping[str, Any]]) -> list[str]:
    """Every column, in first-seen order."""
    cols: dict[str, None] = {}
    for line in lines:
        for key in line:
            cols.setdefault(key, None)
    return list(cols)


def _cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    if isinstance(value, float):
        return repr(value)
    return str(value)


def to_csv(lines: Sequence[Mapping[str, Any]]) -> str:
    """CSV text of the summary lines (lists as JSON, missing values empty)."""
    cols = columns(lines)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(cols)
    for line in lines:
        writer.writerow([_cell_text(line.get(c)) for c in cols])
    return buf.getvalue()


def read_csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def _fmt_number(x: Any) -> str:
    if x is None:
        return ""
    if isinstance(x, float):
        if x == 0 or 1e-3 <= abs(x) < 1e5:
            return f"{x:.4g}"
        return f"{x:.3e}"
    return str(x)


def format_table(lines: Sequence[Mapping[str, Any]], max_width: int | None = None) -> str:
    """A plain-text table: block, coordinates, counts, and ``mean ± std`` per metric."""
    if not lines:
        return "(no rows)"
    cols = columns(lines)
    fixed = {"experiment_id", "experiment", "point_id", "n_rows"} | {f"n_{s}" for s in STATUSES}
    metric_names = [c[: -len("_mean")] for c in cols if c.endswith("_mean")]
    derived = {f"{m}_{s}" for m in metric_names for s in ("mean", "std", "n")}
    coord_cols = [c for c in cols if c not in fixed and c not in derived]
    statuses = [s for s in STATUSES if s != "ok" and any(line.get(f"n_{s}") for line in lines)]
    several = len({line.get("experiment_id") for line in lines}) > 1
    header = (["experiment"] if several else []) + coord_cols + ["rows", "ok"] + statuses + metric_names
    table = []
    for line in lines:
        cells = [str(line.get("experiment_id", ""))] if several else []
        for c in coord_cols:
            v = line.get(c)
            cells.append(_fmt_number(v) if isinstance(v, (int, float)) else _cell_text(v))
        cells += [str(line.get("n_rows", 0)), str(line.get("n_ok", 0))]
        cells += [str(line.get(f"n_{s}", 0)) for s in statuses]
        for m in metric_names:
            mean, std = line.get(f"{m}_mean"), line.get(f"{m}_std")
            if mean is None:
                cells.append("")
            elif std is None:
                cells.append(_fmt_number(mean))
            else:
                cells.append(f"{_fmt_number(mean)} ± {_fmt_number(std)}")
        table.append(cells)
    widths = [max(len(r[i]) for r in [header] + table) for i in range(len(header))]
    text_lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip(),
                  "  ".join("-" * w for w in widths)]
    for r in table:
        text_lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    if max_width:
        text_lines = [t if len(t) <= max_width else t[: max_width - 1] + "…" for t in text_lines]
    return "\n".join(text_lines)

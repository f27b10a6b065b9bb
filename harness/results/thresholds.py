"""The threshold searches' results as text: ``thresholds.csv`` and the table ``harness show``
prints (one line per grid point and level, :func:`harness.runner.search.thresholds`)."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from harness.results.summary import to_csv


def thresholds_csv(lines: Sequence[Mapping[str, Any]]) -> str:
    """``thresholds.csv`` text (blank cells for missing values)."""
    return to_csv(lines)


def block_condition(lines: Sequence[Mapping[str, Any]]) -> str:
    """The condition of one searched block's lines in words: the one condition, or with
    several levels the condition at ``LEVEL`` and the levels."""
    conditions = list(dict.fromkeys(t["condition"] for t in lines))
    levels = list(dict.fromkeys(t.get("level") for t in lines))
    if len(conditions) == 1 or any(not isinstance(v, (int, float)) for v in levels):
        return "; ".join(conditions)
    generic = conditions[0].replace(f" {levels[0]:g} ", " LEVEL ", 1)
    return f"{generic}, LEVEL = {', '.join(f'{v:g}' for v in levels)}"


def format_thresholds(lines: Sequence[Mapping[str, Any]], max_width: int | None = 100) -> str:
    """A plain-text table of threshold lines (numbers to 4 significant digits; the condition
    and the evaluations are left to thresholds.csv); columns that do not fit are dropped from
    the right and counted."""
    skip = ("experiment_id", "condition", "evaluations")
    cols = [k for k in dict.fromkeys(k for t in lines for k in t) if k not in skip]

    def text(v: Any) -> str:
        if v is None:
            return "-"
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v)

    cells = [[text(t.get(c)) for c in cols] for t in lines]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(cols)]
    keep: list[int] = []
    used = 0
    for i, w in enumerate(widths):
        if max_width and keep and used + w + 2 > max_width:
            break
        keep.append(i)
        used += w + 2
    out = ["  ".join(cols[i].ljust(widths[i]) for i in keep)]
    out += ["  ".join(r[i].ljust(widths[i]) for i in keep) for r in cells]
    if len(keep) < len(cols):
        out.append(f"({len(cols) - len(keep)} more columns in thresholds.csv: "
                   + ", ".join(cols[i] for i in range(len(keep), len(cols))) + ")")
    return "\n".join(line.rstrip() for line in out)

# Length: about 420 lines in one module because one algorithm (the threshold search): bracketing,
# its replay from rows on resume, and its report share the search state.
"""Threshold search: bracket and bisect one axis of an experiment block instead of gridding it.

A benchmark block may declare, next to (or instead of) its grid::

    [experiments.search]
    axis = "N"                 # the key path searched (an experiment parameter, a slot
                               # parameter "architecture.q", or a free variable of `derived`)
    lower = 100                # bounds of the search (inclusive)
    upper = 40000
    scale = "log"              # "log": bisect log(axis) (default); "linear"
    integer = true             # default: true when the axis is an int parameter
    start = "2 * d**2"         # first value: an expression in the grid point's values
                               # (default: the middle of the bounds)
    growth = 2.0               # until both sides are seen, step by this factor (log) or by
                               # this amount (linear) from the last value
    tolerance = 0.05           # stop when upper / lower <= 1 + tolerance (log) or
                               # upper - lower <= tolerance (linear); adjacent integers stop
    max_steps = 24             # at most this many axis values per grid point
    metric = "reported_loss"   # a metric of the experiment's rows
    transform = "log10"        # "log10" or "none": averaged over the repetitions
    below = -3                 # the condition: mean(transform(metric)) <= -3 ...
    # above = 0.999            # ... or >= a level
    holds = "low"              # the condition holds at low axis values ("high": at high ones)

For every point of the rest of the grid, the runner evaluates the block at one axis value at a
time (all repetitions of it: ordinary cells, rows and seeds, exactly as a grid over the axis
would make them), steps by ``growth`` until it has seen the condition hold and fail, then
bisects the bracket. The search is a pure function of the rows: replaying it over a run's rows
gives the cells still to run (:func:`pending_cells`) or, once all are there, the threshold
(:func:`thresholds`), so resume, ``-j``, dask and a killed run need nothing special.

Aggregation. At one axis value the repetitions' ``transform(metric)`` values are averaged (the
mean of log10 for ``transform = "log10"``, as Bombari et al. average their heat map). A row with
status ``diverged`` or a missing, non-finite or (for log10) non-positive metric counts as failing
the condition (+inf below a ``below`` level, -inf for ``above``); a ``failed`` or ``timeout`` row
stops that grid point's search with status ``failed`` (its cells stay in rows.jsonl).

The result per grid point (one line of ``thresholds.csv``): ``axis``; ``lower`` and ``upper``,
the bracket (the largest evaluated value on the low side of the threshold and the smallest on
the high side); ``threshold``, where the aggregated metric crosses the level, interpolated
linearly in log(axis) (``scale = "log"``) or in the axis (``"linear"``) between the two bracket
values; ``n_cells``; ``status``: ``found``, ``above_upper`` (the low side reaches the upper bound:
the threshold is above the searched range), ``below_lower``, ``max_steps``, ``failed`` or
``incomplete`` (rows still missing: an interrupted run); ``ci_low``, ``ci_high``: a 95% percentile
bootstrap interval of the threshold over the repetitions (:func:`bootstrap_interval`; the
bracket says how finely the axis was searched, this interval how much the threshold would move
with other seeds).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

from harness.errors import UserError
from harness.plugin.seeds import canonical
from harness.spec.cells import Cell

STATUSES = ("found", "above_upper", "below_lower", "max_steps", "failed", "incomplete")
TRANSFORMS = ("log10", "none")
_STOP_STATUSES = ("failed", "timeout")


@dataclass(frozen=True)
class Search:
    """A validated ``[experiments.search]`` table (see the module docstring)."""

    axis: str
    lower: float
    upper: float
    metric: str
    level: float
    condition: str  # "below" or "above"
    holds: str = "low"  # "low" or "high"
    scale: str = "log"
    integer: bool = False
    start: str | None = None
    growth: float = 2.0
    tolerance: float = 0.05
    max_steps: int = 24
    transform: str = "log10"

    def to_table(self) -> dict[str, Any]:
        """The TOML table that declares this search (every default written out)."""
        table: dict[str, Any] = {"axis": self.axis, "lower": self.lower, "upper": self.upper,
                                 "scale": self.scale, "integer": self.integer}
        if self.start is not None:
            table["start"] = self.start
        table.update({"growth": self.growth, "tolerance": self.tolerance, "max_steps": self.max_steps,
                      "metric": self.metric, "transform": self.transform, self.condition: self.level,
                      "holds": self.holds})
        return table

    # -- values on the axis --------------------------------------------------------------------

    def clamp(self, x: float) -> float | int:
        """``x`` inside the bounds, as an int on an integer axis (floats to 10 significant digits,
        so that coordinates and cell ids stay readable and stable)."""
        x = min(max(float(x), self.lower), self.upper)
        if self.integer:
            return int(round(x))
        return float(f"{x:.10g}")

    def middle(self, lo: float, hi: float) -> float:
        if self.scale == "log":
            return math.sqrt(lo * hi)
        return 0.5 * (lo + hi)

    def converged(self, lo: float, hi: float) -> bool:
        if self.integer and hi - lo <= 1:
            return True
        if self.scale == "log":
            return hi / lo <= 1.0 + self.tolerance
        return hi - lo <= self.tolerance

    def step_up(self, x: float) -> float:
        return x * self.growth if self.scale == "log" else x + self.growth

    def step_down(self, x: float) -> float:
        return x / self.growth if self.scale == "log" else x - self.growth

    # -- the condition -------------------------------------------------------------------------

    def value_of(self, row: Mapping[str, Any]) -> float:
        """One repetition's transformed metric (a failing infinity where it has none)."""
        bad = math.inf if self.condition == "below" else -math.inf
        if row.get("status") != "ok":
            return bad
        value = (row.get("metrics") or {}).get(self.metric)
        if isinstance(value, bool):
            value = float(value)
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            return bad
        if self.transform == "log10":
            return math.log10(value) if value > 0 else bad
        return float(value)

    def satisfied(self, aggregate: float) -> bool:
        if self.condition == "below":
            return aggregate <= self.level
        return aggregate >= self.level

    def low_side(self, aggregate: float) -> bool:
        """Whether an axis value with this aggregate lies below the threshold."""
        return self.satisfied(aggregate) == (self.holds == "low")

    def interpolate(self, lo: float, m_lo: float, hi: float, m_hi: float) -> float:
        """Where the aggregate crosses the level between the bracket values (log or linear axis)."""
        if self.scale == "log":
            a, b = math.log(lo), math.log(hi)
        else:
            a, b = float(lo), float(hi)
        if math.isfinite(m_lo) and math.isfinite(m_hi) and m_hi != m_lo:
            t = min(1.0, max(0.0, (self.level - m_lo) / (m_hi - m_lo)))
        else:
            t = 0.5
        x = a + t * (b - a)
        return math.exp(x) if self.scale == "log" else x


# ----------------------------------------------------------------------------------------------
# one grid point


@dataclass
class PointSearch:
    """The search at one grid point of a block: ``make_cells(x)`` gives the cells (all
    repetitions) at axis value ``x``; ``start`` is the resolved first value."""

    experiment_id: str
    search: Search
    coords: dict[str, Any]
    """The grid point's coordinates without the searched axis (axes and axis-free derived values)."""
    start: float
    make_cells: Callable[[Any], list[Cell]]


@dataclass
class Outcome:
    """Where a point's search stands after replaying the rows."""

    status: str | None  # None: still running (``need`` holds the cells to run next)
    need: list[Cell]
    evaluated: dict[Any, float]  # axis value -> aggregate
    n_cells: int
    lower: Any = None
    upper: Any = None
    threshold: float | None = None
    samples: dict[Any, list[float]] = field(default_factory=dict)  # axis value -> per repetition
    error: str | None = None  # why a search stopped as failed before its cells ran


def row_key(experiment_id: str, coords: Mapping[str, Any], repetition: int) -> str:
    """How a search finds its rows: the block, the coordinates and the repetition. Within one
    run directory these determine a cell (its spec cannot change, see ``--resume``), and unlike
    the cell id they do not change when a later version of the harness adds a parameter, so a
    run made by an older version still replays (``harness show``, ``plot``, ``report``)."""
    return canonical([experiment_id, dict(coords), int(repetition)])


def rows_by_key(rows: Iterable[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    """The rows of ``rows`` by :func:`row_key` (a later row for the same cell wins)."""
    out = {}
    for r in rows:
        if isinstance(r, Mapping) and "coords" in r and "experiment_id" in r:
            out[row_key(r["experiment_id"], r["coords"] or {}, r.get("repetition", 0))] = r
    return out


def replay(point: PointSearch, rows_by_id: Mapping[str, Mapping[str, Any]]) -> Outcome:
    """Walk the search over the rows that exist; stop at the first axis value with missing rows."""
    s = point.search
    evaluated: dict[Any, float] = {}
    samples: dict[Any, list[float]] = {}
    n_cells = 0
    x = s.clamp(point.start)
    for _ in range(s.max_steps):
        try:
            cells = point.make_cells(x)
        except UserError as exc:  # a value between the bounds the experiment refuses
            outcome = _finish(s, "failed", evaluated, n_cells, samples)
            outcome.error = f"{s.axis} = {x}: {exc}"
            return outcome
        rows = [rows_by_id.get(row_key(c.experiment_id, c.coords, c.repetition)) for c in cells]
        missing = [c for c, r in zip(cells, rows) if r is None]
        n_cells += len(cells) - len(missing)
        if missing:
            return Outcome(None, missing, evaluated, n_cells, samples=samples)
        if any(r.get("status") in _STOP_STATUSES for r in rows):
            return _finish(s, "failed", evaluated, n_cells, samples)
        samples[x] = [s.value_of(r) for r in rows]
        evaluated[x] = sum(samples[x]) / len(rows)
        nxt, status = _next_value(s, evaluated)
        if status is not None:
            return _finish(s, status, evaluated, n_cells, samples)
        x = nxt
    return _finish(s, "max_steps", evaluated, n_cells, samples)


def _bracket(s: Search, evaluated: Mapping[Any, float]) -> tuple[Any, Any]:
    """(largest value on the low side, smallest value on the high side above it)."""
    low = [x for x, m in evaluated.items() if s.low_side(m)]
    high = [x for x, m in evaluated.items() if not s.low_side(m)]
    hi = min(high) if high else None
    if hi is not None:
        low = [x for x in low if x < hi]
    lo = max(low) if low else None
    return lo, hi


def _next_value(s: Search, evaluated: Mapping[Any, float]) -> tuple[Any, str | None]:
    lo, hi = _bracket(s, evaluated)
    if hi is None:  # only the low side seen: go up
        if lo >= s.upper:
            return None, "above_upper"
        x = s.clamp(s.step_up(lo))
    elif lo is None:  # only the high side seen: go down
        if hi <= s.lower:
            return None, "below_lower"
        x = s.clamp(s.step_down(hi))
    else:
        if s.converged(lo, hi):
            return None, "found"
        x = s.clamp(s.middle(lo, hi))
        if not lo < x < hi:
            return None, "found"
    if x in evaluated:  # cannot happen with a monotone metric; stop rather than loop
        return None, "found" if lo is not None and hi is not None else "max_steps"
    return x, None


def _finish(s: Search, status: str, evaluated: Mapping[Any, float], n_cells: int,
            samples: Mapping[Any, list[float]]) -> Outcome:
    lo, hi = _bracket(s, evaluated)
    threshold = None
    if status == "found" and lo is not None and hi is not None:
        threshold = s.interpolate(lo, evaluated[lo], hi, evaluated[hi])
    return Outcome(status, [], dict(evaluated), n_cells, lower=lo, upper=hi, threshold=threshold,
                   samples=dict(samples))


def bootstrap_interval(s: Search, samples: Mapping[Any, Sequence[float]], resamples: int = 1000,
                       level: float = 0.95, seed: int = 0) -> tuple[float | None, float | None]:
    """A percentile bootstrap interval of the threshold over the repetitions.

    Each resample draws, at every evaluated axis value independently (each value has its own
    seeds), the repetitions with replacement, recomputes the aggregates and the crossing the
    same way as the threshold (the bracket from all evaluated values, interpolated); a resample
    whose crossing falls outside the evaluated values counts at the end of that range. The
    generator is seeded, so the interval is the same on every executor. ``(None, None)`` with
    fewer than two evaluated values or a single repetition.
    """
    import numpy as np

    xs = sorted(samples)
    if len(xs) < 2 or min(len(samples[x]) for x in xs) < 2:
        return None, None
    rng = np.random.default_rng(seed)
    means = []
    for x in xs:
        v = np.asarray(samples[x], dtype=float)
        idx = rng.integers(0, len(v), size=(resamples, len(v)))
        with np.errstate(invalid="ignore"):
            means.append(v[idx].mean(axis=1))
    means = np.array(means).T  # (resamples, len(xs))
    out = []
    for row in means:
        agg = dict(zip(xs, row.tolist()))
        lo, hi = _bracket(s, agg)
        if lo is None:
            out.append(float(xs[0]))
        elif hi is None:
            out.append(float(xs[-1]))
        else:
            out.append(s.interpolate(lo, agg[lo], hi, agg[hi]))
    tail = (1.0 - level) / 2 * 100
    low, high = np.percentile(out, [tail, 100 - tail])
    return float(low), float(high)


# ----------------------------------------------------------------------------------------------
# a whole spec


def point_searches(spec) -> list[PointSearch]:
    """Every grid point of every searched block of ``spec``, in file and grid order."""
    out = []
    for exp in spec.experiments:
        if exp.search is not None:
            out.extend(exp.point_searches(spec.seed))
    return out


_rows_by_id = rows_by_key


def pending_cells(spec, rows: Iterable[Mapping[str, Any]]) -> list[Cell]:
    """The cells every unfinished search needs next (none once all searches are done)."""
    by_id = _rows_by_id(rows)
    out: list[Cell] = []
    for point in point_searches(spec):
        out.extend(replay(point, by_id).need)
    return out


def searched_cell_ids(spec, rows: Iterable[Mapping[str, Any]]) -> tuple[set[str], int]:
    """(ids of the search cells the replay visits with rows present, count of cells pending)."""
    by_id = _rows_by_id(rows)
    visited: set[str] = set()
    pending = 0
    for point in point_searches(spec):
        outcome = replay(point, by_id)
        for x in outcome.evaluated:
            visited.update(c.cell_id for c in point.make_cells(x))
        pending += len(outcome.need)
    return visited, pending


def thresholds(spec, rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One line per searched grid point: ``experiment_id``, its coordinates, ``axis``,
    ``threshold``, ``lower``, ``upper``, ``n_cells``, ``status``, the condition and the values
    evaluated (``evaluations``: ``x:aggregate`` pairs in axis order)."""
    by_id = _rows_by_id(rows)
    lines = []
    for point in point_searches(spec):
        s = point.search
        outcome = replay(point, by_id)
        ci = bootstrap_interval(s, outcome.samples) if outcome.status == "found" else (None, None)
        line: dict[str, Any] = {"experiment_id": point.experiment_id, **point.coords, "axis": s.axis,
                                "threshold": outcome.threshold, "lower": outcome.lower,
                                "upper": outcome.upper, "n_cells": outcome.n_cells,
                                "ci_low": ci[0], "ci_high": ci[1],
                                "status": outcome.status or "incomplete",
                                "condition": f"mean {_aggregated(s)} "
                                             f"{'<=' if s.condition == 'below' else '>='} {s.level:g}"
                                             f" holds at {s.holds} {s.axis}",
                                "evaluations": ";".join(f"{x}:{m:.4g}" for x, m in sorted(outcome.evaluated.items()))}
        if outcome.error:
            line["error"] = outcome.error[:300]
        lines.append(line)
    return lines


def _aggregated(s: Search) -> str:
    return s.metric if s.transform == "none" else f"{s.transform}({s.metric})"


def thresholds_csv(lines: Sequence[Mapping[str, Any]]) -> str:
    """``thresholds.csv`` text (blank cells for missing values)."""
    from harness.results.summary import to_csv

    return to_csv(lines)


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
    keep, used = [], 0
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


def expected_path(s: Search, start: float) -> list[Any]:
    """The axis values a search visits when its threshold lies just below ``start x growth``
    (the start holds, one step out fails, every midpoint holds): what ``--dry-run`` plans with.
    Real searches visit about as many values, at other places."""
    lo = s.clamp(start)
    xs = [lo]
    hi = s.clamp(s.step_up(lo) if s.holds == "low" else s.step_down(lo))
    if hi == lo:
        return xs
    xs.append(hi)
    lo, hi = min(lo, hi), max(lo, hi)
    while len(xs) < s.max_steps and not s.converged(lo, hi):
        m = s.clamp(s.middle(lo, hi))
        if not lo < m < hi:
            break
        xs.append(m)
        lo = m
    return xs
